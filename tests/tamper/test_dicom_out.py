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


# ---------------------------------------------------------------- big endian, deflated, 1-bit

#: pydicom's bundled files (read from its folder: never a download)
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
UNUSUAL = {
    "MR_small_bigendian.dcm": "explicit VR big endian, 16-bit signed, OW",
    "image_dfl.dcm": "deflated explicit VR little endian, 8-bit",
    "liver_1frame.dcm": "1-bit segmentation, little endian",
    "liver_expb_1frame.dcm": "1-bit segmentation, big endian",
    "SC_rgb_small_odd_big_endian.dcm": "8-bit RGB in big endian OW (byte-swapped words), odd size",
    "ExplVR_BigEnd.dcm": "8-bit RGB by plane (PlanarConfiguration 1), big endian",
}


def _bundled(name: str) -> Path:
    path = PYDICOM_FILES / name
    if not path.is_file():
        pytest.skip(f"{name} is not bundled with this pydicom")
    return path


def _tampered_copy(original: np.ndarray) -> np.ndarray:
    stored = original.copy()
    flat = stored.reshape(-1)
    if original.max() <= 1:  # a 1-bit image: flip a run of pixels that crosses byte boundaries
        flat[3:30] = 1 - flat[3:30]
    else:
        flat[: flat.size // 3] = flat[: flat.size // 3] // 2 + 1
    return stored


def _inflated(raw: bytes) -> bytes:
    import zlib

    end = 144 + int.from_bytes(raw[140:144], "little")
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw[end:])


@pytest.mark.parametrize("name", sorted(UNUSUAL), ids=lambda n: n.removesuffix(".dcm"))
def test_unusual_encodings_round_trip_with_everything_else_byte_exact(
    tmp_path: Path, name: str
) -> None:
    source = _bundled(name)
    old_raw = source.read_bytes()
    original = pydicom.dcmread(source).pixel_array
    # writing the untouched pixels back reproduces the file bit for bit (deflate level included)
    same = replace_pixel_data(source, tmp_path / "same.dcm", original)
    assert same.read_bytes() == old_raw

    stored = _tampered_copy(original)
    target = replace_pixel_data(source, tmp_path / "tampered.dcm", stored)
    new_raw = target.read_bytes()
    back = pydicom.dcmread(target)
    np.testing.assert_array_equal(back.pixel_array, stored)
    assert back.file_meta.TransferSyntaxUID == pydicom.dcmread(source).file_meta.TransferSyntaxUID
    if "dfl" in name:  # the meta group is kept; inside the deflate stream only Pixel Data differs
        meta_end = 144 + int.from_bytes(old_raw[140:144], "little")
        assert new_raw[:meta_end] == old_raw[:meta_end]
        old_raw, new_raw = _inflated(old_raw), _inflated(new_raw)
        old = pydicom.dcmread(source)
        start = old.get_item(0x7FE00010).value_tell
        end = start + len(old.get_item(0x7FE00010).value)
        assert old_raw[:start] == new_raw[:start] and old_raw[end:] == new_raw[end:]
    else:
        old_start, old_end = _pixel_data_span(old_raw, pydicom.dcmread(source))
        new_start, new_end = _pixel_data_span(new_raw, pydicom.dcmread(target))
        assert old_raw[:old_start] == new_raw[:new_start]
        assert old_raw[old_end:] == new_raw[new_end:]
    assert new_raw != old_raw


def test_multiframe_one_bit_frames_are_packed_bit_after_bit(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import pack_bits
    from pydicom.uid import ExplicitVRLittleEndian, SegmentationStorage, generate_uid

    # 3 frames of 5x7 = 35 bits each: frames 2 and 3 start inside a byte
    frames = np.random.default_rng(1).integers(0, 2, (3, 5, 7)).astype(np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SegmentationStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SegmentationStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.NumberOfFrames = "SEG", 5, 7, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.PixelData = pack_bits(frames)
    source = tmp_path / "seg.dcm"
    ds.save_as(source, enforce_file_format=True)

    stored = frames.copy()
    stored[1:, 2, :] = 1 - stored[1:, 2, :]
    target = replace_pixel_data(source, tmp_path / "out.dcm", stored)
    np.testing.assert_array_equal(pydicom.dcmread(target).pixel_array, stored)
    old_raw, new_raw = source.read_bytes(), target.read_bytes()
    start, end = _pixel_data_span(old_raw, pydicom.dcmread(source))
    assert (
        old_raw[:start] == new_raw[:start]
        and old_raw[end:] == new_raw[len(new_raw) - (len(old_raw) - end) :]
    )


def test_big_endian_mr_and_one_bit_seg_through_the_loader(tmp_path: Path) -> None:
    mr = next(v for v in load_paths([str(_bundled("MR_small_bigendian.dcm"))]))
    assert isinstance(mr, ImageVolume)
    result = simulate(mr, "inject", 2, diameter_mm=20.0)
    (written,) = write_tampered(mr, result.pixels, tmp_path / "mr")
    back = next(v for v in load_paths([str(written)]))
    assert isinstance(back, ImageVolume)
    np.testing.assert_array_equal(back.pixels, np.clip(np.rint(result.pixels), -32768, 32767))

    seg = next(v for v in load_paths([str(_bundled("liver_1frame.dcm"))]))
    assert isinstance(seg, ImageVolume)
    pixels = seg.pixels.copy()
    pixels[0, 100:140, 200:260] = 1.0
    pixels[0, 0, 0] = 7.0  # out of a 1-bit range: clipped to 1, not wrapped
    (written,) = write_tampered(seg, pixels, tmp_path / "seg")
    expected = np.clip(pixels[0], 0, 1)
    np.testing.assert_array_equal(pydicom.dcmread(written).pixel_array, expected)


def test_a_write_that_would_not_read_back_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medforensics.tamper import dicom_out

    source = _bundled("MR_small_bigendian.dcm")
    original = pydicom.dcmread(source).pixel_array

    def little_endian_by_mistake(stored, ds, big_endian, vr, dtype):  # type: ignore[no-untyped-def]
        return stored.astype("<i2").tobytes()

    monkeypatch.setattr(dicom_out, "native_pixel_bytes", little_endian_by_mistake)
    with pytest.raises(WriteBackError, match="would not read back") as caught:
        replace_pixel_data(source, tmp_path / "x.dcm", _tampered_copy(original))
    assert "MR_small_bigendian.dcm" in str(caught.value)
    assert not (tmp_path / "x.dcm").exists()


def test_a_damaged_deflated_file_is_refused_by_name(tmp_path: Path) -> None:
    damaged = tmp_path / "cut.dcm"
    damaged.write_bytes(_bundled("image_dfl.dcm").read_bytes()[:-1000])
    with pytest.raises(WriteBackError, match=r"cut\.dcm.*truncated or damaged"):
        replace_pixel_data(damaged, tmp_path / "out.dcm", np.zeros((512, 512), np.uint8))
    assert not (tmp_path / "out.dcm").exists()
