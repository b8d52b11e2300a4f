"""Compressed transfer syntaxes: lossless round trips give identical HU; JPEG test files decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from medforensics.io import ImageVolume, LoadError, load_paths
from tests.conftest import WrittenSeries

_ENCODED = [RLELossless, JPEGLSLossless, JPEG2000Lossless]


def _read_one(path: Path) -> ImageVolume:
    items = list(load_paths([path]))
    assert len(items) == 1 and isinstance(items[0], ImageVolume), items
    return items[0]


@pytest.fixture
def uncompressed_slice(ct_series: WrittenSeries) -> tuple[Path, np.ndarray]:
    path = ct_series.paths[2]
    return path, _read_one(path).pixels


@pytest.mark.parametrize("syntax", _ENCODED, ids=lambda uid: UID(uid).keyword)
def test_lossless_compression_keeps_hu_identical(
    tmp_path: Path, uncompressed_slice: tuple[Path, np.ndarray], syntax: str
) -> None:
    encoder = get_encoder(syntax)
    if not encoder.is_available:
        missing = "; ".join(encoder.missing_dependencies)
        pytest.skip(f"no {UID(syntax).name} encoder here ({missing})")
    source, hu_pixels = uncompressed_slice
    ds = pydicom.dcmread(source)
    ds.compress(syntax)
    target = tmp_path / f"{UID(syntax).keyword}.dcm"
    ds.save_as(target, enforce_file_format=True)

    volume = _read_one(target)

    assert volume.transfer_syntax == (syntax,)
    assert volume.modality == "CT"
    np.testing.assert_array_equal(volume.pixels, hu_pixels)


@pytest.mark.parametrize(
    "syntax",
    [DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian],
    ids=lambda uid: UID(uid).keyword,
)
def test_uncompressed_and_deflated_syntaxes_keep_hu_identical(
    tmp_path: Path, uncompressed_slice: tuple[Path, np.ndarray], syntax: str
) -> None:
    source, hu_pixels = uncompressed_slice
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = syntax
    target = tmp_path / f"{UID(syntax).keyword}.dcm"
    # pydicom deflates on write according to the transfer syntax
    ds.save_as(target, enforce_file_format=True)

    volume = _read_one(target)

    assert volume.transfer_syntax == (syntax,)
    np.testing.assert_array_equal(volume.pixels, hu_pixels)


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "SC_jpeg_no_color_transform.dcm",
        "SC_rgb_small_odd_jpeg.dcm",
        "JPGExtended.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_RLE.dcm",
    ],
)
def test_pydicom_compressed_files_decode(name: str) -> None:
    path = Path(get_testdata_file(name))  # type: ignore[arg-type]
    reference = pydicom.dcmread(path)
    expected = reference.pixel_array.astype(np.float32)
    if reference.SamplesPerPixel == 3:
        # pydicom converts YCbCr JPEG to RGB; the reader keeps luminance
        expected = expected[..., 0] * 0.299 + expected[..., 1] * 0.587 + expected[..., 2] * 0.114

    volume = _read_one(path)

    assert volume.shape == (1, reference.Rows, reference.Columns)
    np.testing.assert_allclose(volume.pixels[0], expected, atol=1e-3)


def test_every_encoding_of_pydicom_mr_small_reads_the_same() -> None:
    plain = _read_one(Path(get_testdata_file("MR_small.dcm")))  # type: ignore[arg-type]
    for name in (
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
    ):
        compressed = _read_one(Path(get_testdata_file(name)))  # type: ignore[arg-type]
        np.testing.assert_array_equal(compressed.pixels, plain.pixels, err_msg=name)


def test_missing_decoder_names_the_syntax_and_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoder = get_decoder(JPEG2000Lossless)
    if not hasattr(decoder, "_available") or not hasattr(decoder, "_unavailable"):
        pytest.skip("pydicom's decoder internals changed; cannot simulate a missing decoder")
    # as if pylibjpeg-openjpeg and Pillow's JPEG 2000 support were not installed
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(
        decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg-openjpeg",), "pillow": ("pillow",)}
    )
    path = Path(get_testdata_file("MR_small_jp2klossless.dcm"))  # type: ignore[arg-type]

    (item,) = load_paths([path])

    assert isinstance(item, LoadError)
    assert str(path) in str(item)
    assert "JPEG 2000" in item.message and "not installed" in item.message
    assert "pip install" in item.message
