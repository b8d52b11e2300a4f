"""Write-back: only Pixel Data changes, the transfer syntax stays, the pixels round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, write_ct_series
from medforensics.tamper import simulate
from medforensics.tamper.dicom_out import WriteBackError, replace_pixel_data, write_tampered


def _series(folder: Path, syntax: str | None = None) -> ImageVolume:
    hu = chest_ct_phantom(4, 96, np.random.default_rng(7))
    paths = write_ct_series(hu, folder, spacing=(2.5, 1.6, 1.6))
    if syntax is not None:
        for path in paths:
            ds = pydicom.dcmread(path)
            ds.compress(syntax, generate_instance_uid=False)
            ds.save_as(path)
    volumes = [v for v in load_paths([str(folder)]) if isinstance(v, ImageVolume)]
    assert len(volumes) == 1
    return volumes[0]


def _pixel_data_span(raw: bytes, ds: pydicom.Dataset) -> tuple[int, int]:
    element = ds.get_item(0x7FE00010)
    end = element.value_tell + len(element.value)
    if element.length == 0xFFFFFFFF:
        end += 8  # sequence delimiter
    return element.value_tell, end


@pytest.mark.parametrize("syntax", [None, RLELossless], ids=["explicit-vr-le", "rle-lossless"])
def test_write_back_changes_only_pixel_data(tmp_path: Path, syntax: str | None) -> None:
    volume = _series(tmp_path / "in", syntax)
    result = simulate(volume, "inject", 1, diameter_mm=12.0)
    written = write_tampered(volume, result.pixels, tmp_path / "out")
    assert len(written) == volume.shape[0]

    for source, target in zip(volume.source_files, written, strict=True):
        old_raw, new_raw = source.read_bytes(), target.read_bytes()
        old, new = pydicom.dcmread(source), pydicom.dcmread(target)
        old_start, old_end = _pixel_data_span(old_raw, old)
        new_start, new_end = _pixel_data_span(new_raw, new)
        assert old_start == new_start
        assert old_raw[:old_start] == new_raw[:new_start]  # preamble, meta, every element before
        assert old_raw[old_end:] == new_raw[new_end:]  # and every element after
        assert new.file_meta.TransferSyntaxUID == old.file_meta.TransferSyntaxUID
        assert [e.tag for e in old] == [e.tag for e in new]

    back = next(v for v in load_paths([str(tmp_path / "out")]) if isinstance(v, ImageVolume))
    # stored values are integers: the round trip is exact up to rounding to whole HU
    np.testing.assert_allclose(back.pixels, np.rint(result.pixels), atol=0.51)
    assert not np.array_equal(back.pixels, volume.pixels)


def test_originals_are_never_overwritten(tmp_path: Path) -> None:
    volume = _series(tmp_path / "in")
    with pytest.raises(WriteBackError, match="original"):
        write_tampered(volume, volume.pixels, tmp_path / "in")
    with pytest.raises(WriteBackError, match="refusing to overwrite"):
        path = volume.source_files[0]
        replace_pixel_data(path, path, pydicom.dcmread(path).pixel_array)


def test_values_are_clipped_to_the_stored_range(tmp_path: Path) -> None:
    volume = _series(tmp_path / "in")
    pixels = volume.pixels.copy()
    pixels[0, 0, 0] = 1e6
    write_tampered(volume, pixels, tmp_path / "out")
    out = pydicom.dcmread(tmp_path / "out" / volume.source_files[0].name)
    assert out.pixel_array[0, 0] == np.iinfo(np.int16).max


def test_a_syntax_that_cannot_be_re_encoded_is_refused(tmp_path: Path) -> None:
    from medforensics.tamper.dicom_out import _encode

    volume = _series(tmp_path / "in")
    ds = pydicom.dcmread(volume.source_files[0])
    with pytest.raises(WriteBackError, match="cannot be re-encoded here"):
        _encode(ds, ds.pixel_array, JPEGBaseline8Bit, volume.source_files[0], 1000)


def test_non_dicom_volumes_are_refused() -> None:
    volume = ImageVolume("x.nii", "nifti", "MR", np.zeros((2, 8, 8), np.float32))
    with pytest.raises(WriteBackError, match="not read from DICOM"):
        write_tampered(volume, volume.pixels, "unused")
