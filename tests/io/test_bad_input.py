"""Bad input: each gives a clear error that names the file, and the rest of the batch still runs."""

from __future__ import annotations

import io
import tempfile
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

from medforensics.io import ImageVolume, LoadError, load_paths
from medforensics.io.loader import Skipped
from medforensics.scan import ScanResult, scan_paths
from tests.conftest import write_series

VERDICTS = {"authentic", "manipulated", "inconclusive"}

#: what every message for a missing-decoder situation says; must not appear when decoders exist
_INSTALL_HINT = "pip install"


def _good_slice_bytes(tmp_path: Path) -> bytes:
    written = write_series(tmp_path / "source", n_slices=1, seed=7, shuffle=False)
    return written.paths[0].read_bytes()


def _with_pixel_data(
    tmp_path: Path, name: str, transfer_syntax: str, fragments: list[bytes]
) -> Path:
    """A valid header whose pixel data is encapsulated ``fragments`` under ``transfer_syntax``."""
    written = write_series(tmp_path / f"src-{name}", n_slices=1, seed=8, shuffle=False)
    ds = pydicom.dcmread(written.paths[0])
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def _basic_text_sr(path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BasicTextSRStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.PatientID = "SR-1"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator = "18748-4", "LN"
    concept.CodeMeaning = "Diagnostic Imaging Report"
    ds.ConceptNameCodeSequence = Sequence([concept])
    text = Dataset()
    text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
    text.TextValue = "No acute findings."
    ds.ContentSequence = Sequence([text])
    ds.save_as(path, enforce_file_format=True)
    return path


def _zip_bomb(tmp_path: Path) -> Path:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        # 16 MiB of zeros compress about a thousandfold: far beyond any real DICOM
        archive.writestr("study/IM0001.dcm", bytes(16 * 2**20))
    return path


def _zip_escape(tmp_path: Path) -> Path:
    path = tmp_path / "escape.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("study/IM0001.dcm", _good_slice_bytes(tmp_path))
        archive.writestr("../../escaped.dcm", _good_slice_bytes(tmp_path))
    return path


def _huge_declared(tmp_path: Path) -> Path:
    written = write_series(tmp_path / "src-huge", n_slices=1, seed=12, shuffle=False)
    ds = pydicom.dcmread(written.paths[0])
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 100000
    ds.PixelData = b"\x00\x00" * 16
    path = tmp_path / "huge.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _truncated_in_pixels(tmp_path: Path) -> Path:
    data = _good_slice_bytes(tmp_path)
    path = tmp_path / "cut-in-half.dcm"
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_in_header(tmp_path: Path) -> Path:
    data = _good_slice_bytes(tmp_path)
    pixel_tag = data.index(b"\xe0\x7f\x10\x00")
    path = tmp_path / "cut-in-header.dcm"
    path.write_bytes(data[: pixel_tag // 2])
    return path


def _write(name: str, content: bytes | str) -> Callable[[Path], Path]:
    def build(tmp_path: Path) -> Path:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    return build


def _empty_folder(tmp_path: Path) -> Path:
    path = tmp_path / "empty-folder"
    path.mkdir()
    return path


#: name → (build the bad input under tmp_path, words the message must contain)
BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "text-file": (_write("notes.txt", "patient list\nnothing to see\n"), ("not a medical image",)),
    "text-file-without-suffix": (
        _write("README", "This folder holds the exported study.\n" * 8),
        ("not a DICOM",),
    ),
    "truncated-in-pixel-data": (_truncated_in_pixels, ("truncated",)),
    "truncated-in-header": (_truncated_in_header, ("truncated",)),
    "structured-report": (
        lambda tmp: _basic_text_sr(tmp / "report.dcm"),
        ("no pixel data", "Basic Text SR"),
    ),
    "mpeg2-transfer-syntax": (
        lambda tmp: _with_pixel_data(
            tmp, "mpeg2.dcm", "1.2.840.10008.1.2.4.100", [b"\x00\x00\x01\xb3" + b"garbage" * 9]
        ),
        ("MPEG2", "1.2.840.10008.1.2.4.100"),
    ),
    "made-up-transfer-syntax": (
        lambda tmp: _with_pixel_data(tmp, "made-up.dcm", "1.2.3.4.5.6.7", [b"garbage" * 10]),
        ("1.2.3.4.5.6.7",),
    ),
    "corrupt-jpeg2000-stream": (
        lambda tmp: _with_pixel_data(
            tmp, "corrupt-j2k.dcm", "1.2.840.10008.1.2.4.90", [b"\xff\x4f\xff\x51" + b"\x00" * 60]
        ),
        ("JPEG 2000",),
    ),
    "declared-size-exhausts-memory": (_huge_declared, ("65535x65535", "limit")),
    "empty-folder": (_empty_folder, ("empty",)),
    "zip-bomb": (_zip_bomb, ("bomb.zip",)),
    "zip-member-escapes": (_zip_escape, ("escape.zip", "../../escaped.dcm")),
    "empty-file": (_write("empty.dcm", b""), ("empty", "0 bytes")),
    "nonexistent-path": (lambda tmp: tmp / "no-such-study", ("no such file",)),
}


@pytest.fixture
def good_batch_member(tmp_path: Path) -> Path:
    written = write_series(tmp_path / "good-series", n_slices=3, seed=13)
    return written.folder


def _scan(paths: list[Path]) -> list[ScanResult]:
    return list(scan_paths([str(p) for p in paths]))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_a_clear_error_and_the_batch_goes_on(
    tmp_path: Path, good_batch_member: Path, case: str
) -> None:
    build, words = BAD_INPUTS[case]
    bad = build(tmp_path)

    results = _scan([bad, good_batch_member])

    bad_results = [r for r in results if r.input == str(bad)]
    good_results = [r for r in results if r.input == str(good_batch_member)]
    assert bad_results, results
    errors = [r.error for r in bad_results if r.error is not None]
    assert errors, f"{case}: no error reported: {bad_results}"
    for error in errors:
        assert str(bad) in error, error
        for word in words:
            assert word.lower() in error.lower(), (word, error)
        assert "internal error" not in error
        assert "Traceback" not in error
    # the good series after the bad input is still analysed
    assert len(good_results) == 1
    assert good_results[0].error is None
    assert good_results[0].verdict in VERDICTS


def test_unsupported_syntaxes_do_not_ask_for_decoders_that_would_not_help(tmp_path: Path) -> None:
    for name in ("mpeg2-transfer-syntax", "made-up-transfer-syntax", "corrupt-jpeg2000-stream"):
        build, _words = BAD_INPUTS[name]
        (item,) = load_paths([build(tmp_path / name)])
        assert isinstance(item, LoadError)
        # pylibjpeg is installed here: telling the user to install it would send them in circles
        assert _INSTALL_HINT not in item.message, item.message


def test_declared_size_is_refused_before_allocation(tmp_path: Path) -> None:
    path = _huge_declared(tmp_path)
    tracemalloc.start()
    try:
        items = list(load_paths([path]))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(items) == 1 and isinstance(items[0], LoadError)
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"


def test_declared_frame_count_larger_than_the_data(tmp_path: Path) -> None:
    written = write_series(tmp_path / "frames", n_slices=1, seed=14, shuffle=False)
    ds = pydicom.dcmread(written.paths[0])
    ds.NumberOfFrames = 50
    path = tmp_path / "fifty-frames.dcm"
    ds.save_as(path, enforce_file_format=True)

    (item,) = load_paths([path])

    assert isinstance(item, LoadError)
    assert str(path) in str(item)


def test_unreadable_file_is_reported(unreadable_file: Path, good_batch_member: Path) -> None:
    results = _scan([unreadable_file, good_batch_member])

    assert results[0].error is not None
    assert str(unreadable_file) in results[0].error
    assert "permission" in results[0].error
    assert results[1].verdict in VERDICTS


def test_zip_member_escaping_writes_nothing_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # extraction happens under the system temp folder: point it somewhere we can inspect
    extraction_base = tmp_path / "system-temp" / "a" / "b"
    extraction_base.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(extraction_base))
    archive = _zip_escape(tmp_path)

    results = list(scan_paths([str(archive)]))

    assert results and all(r.error is not None for r in results)
    assert not list(tmp_path.rglob("escaped.dcm"))
    # nothing is left behind in the temp folder either
    assert list(extraction_base.iterdir()) == []


def test_text_file_inside_a_folder_is_skipped_not_fatal(tmp_path: Path) -> None:
    written = write_series(tmp_path / "with-readme", n_slices=3, seed=15)
    (written.folder / "README.txt").write_text("exported by a PACS\n")
    (written.folder / "notes").write_text("no suffix, still text\n")

    items = list(load_paths([written.folder]))

    volumes = [item for item in items if isinstance(item, ImageVolume)]
    assert len(volumes) == 1 and volumes[0].shape[0] == 3
    assert not [item for item in items if isinstance(item, LoadError)]


def test_numpy_archive_beside_a_series_is_skipped_not_a_zip_error(tmp_path: Path) -> None:
    """``medforensics tamper`` writes ``mask.npz`` beside the series: scanning that folder works."""
    written = write_series(tmp_path / "with-mask", n_slices=3, seed=17)
    np.savez_compressed(written.folder / "mask.npz", mask=np.zeros((3, 256, 256), dtype=bool))

    items = list(load_paths([written.folder]))

    assert not [item for item in items if isinstance(item, LoadError)], items
    assert len([item for item in items if isinstance(item, ImageVolume)]) == 1
    (skipped,) = [item for item in items if isinstance(item, Skipped)]
    assert "mask.npz" in skipped.path and "NumPy" in skipped.reason


def test_bad_slice_inside_a_series_names_that_file(tmp_path: Path) -> None:
    written = write_series(tmp_path / "one-bad-slice", n_slices=4, seed=16)
    damaged = written.paths[2]
    damaged.write_bytes(damaged.read_bytes()[:-500])

    items = list(load_paths([written.folder]))

    errors = [item for item in items if isinstance(item, LoadError)]
    assert errors, items
    assert any(damaged.name in str(error) for error in errors), errors


def test_zip_of_a_good_series_is_read(tmp_path: Path) -> None:
    written = write_series(tmp_path / "zipped", n_slices=3, seed=17)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in written.paths:
            archive.write(path, f"study/{path.name}")
    archive_path = tmp_path / "study.zip"
    archive_path.write_bytes(buffer.getvalue())

    (result,) = _scan([archive_path])

    assert result.error is None, result.error
    assert result.input == str(archive_path)
    assert result.shape == [3, *written.hu_volume.shape[1:]]


def test_permission_denied_is_reported_even_for_root(
    good_dicom: Path, good_batch_member: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # root reads mode-000 files, so simulate the refusal the way the OS reports it
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == good_dicom:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", refuse)

    results = _scan([good_dicom, good_batch_member])

    assert results[0].error is not None
    assert str(good_dicom) in results[0].error and "permission denied" in results[0].error
    assert results[1].verdict in VERDICTS


def test_palette_image_without_its_colour_table(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    del ds.RedPaletteColorLookupTableDescriptor
    path = tmp_path / "palette-without-lut.dcm"
    ds.save_as(path)

    (item,) = load_paths([path])

    assert isinstance(item, LoadError)
    assert str(path) in str(item) and "colour table" in item.message


@pytest.mark.timeout(120)
def test_randomly_damaged_files_never_raise(tmp_path: Path) -> None:
    """Seeded byte flips and cuts in real files: every one read or rejected, none crashes."""
    rng = np.random.default_rng(2024)
    names = [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "rtdose.dcm",
        "examples_palette.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
    ]
    sources = [Path(get_testdata_file(name)).read_bytes() for name in names]  # type: ignore[arg-type]
    paths = []
    for index in range(96):
        data = bytearray(sources[index % len(sources)])
        # most damage in the header, where parsing decisions are made
        limit = min(len(data), 1500) if index % 3 else len(data)
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(128, limit))] = int(rng.integers(0, 256))
        if index % 7 == 0:
            data = data[: int(rng.integers(130, len(data)))]
        path = tmp_path / f"damaged-{index:03d}.dcm"
        path.write_bytes(bytes(data))
        paths.append(path)

    results = _scan(paths)

    assert {r.input for r in results} == {str(p) for p in paths}
    for result in results:
        if result.error is not None:
            assert result.input in result.error
            assert "internal error" not in result.error, result.error
        else:
            assert result.verdict in VERDICTS
