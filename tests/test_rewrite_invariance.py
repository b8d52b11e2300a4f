"""Authentic re-writes must not change what a scan says.

Anonymising headers, re-issuing UIDs, changing to another lossless transfer syntax or renaming and
re-ordering the files leaves every pixel value as it was, so the verdict, the score (to 1e-6) and
where the findings are must stay the same. A detector that moved under any of these would flag
every archive that went through an anonymiser or a PACS migration. Scanning must also leave the
files it reads byte-identical.
"""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_encoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from medforensics.detect import Detector, create_detector
from medforensics.samples import chest_ct_phantom, write_ct_series
from medforensics.scan import DEFAULT_DETECTOR, ScanResult, scan_paths
from tests.conftest import file_fingerprints

#: big enough for a detector working at 256² to see a normal slice, small enough to stay fast
SLICES, SIZE = 6, 256
SCORE_TOLERANCE = 1e-6


def _scan_default_detector() -> str:
    """The detector ``scan_paths`` uses when none is named (its signature is the truth)."""
    default = inspect.signature(scan_paths).parameters["detector"].default
    return default if isinstance(default, str) else DEFAULT_DETECTOR


DETECTORS = list(dict.fromkeys(["noise-residual", _scan_default_detector()]))

#: identifying attributes the original carries, so that anonymising has something to remove
_IDENTIFYING = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "MRN-4711",
    "PatientBirthDate": "19580317",
    "InstitutionName": "St. Elsewhere General Hospital",
    "InstitutionAddress": "1 Hospital Road, Springfield",
    "StationName": "CT-ROOM-2",
    "OperatorsName": "SMITH^ALEX",
    "ReferringPhysicianName": "JONES^PAT",
    "AccessionNumber": "ACC0042",
}


@dataclass
class Original:
    """The authentic series on disk, its SOPInstanceUIDs in slice order and fingerprints."""

    folder: Path
    paths: list[Path]
    sop_uids: list[str]
    fingerprints: dict[str, tuple[str, int, int]]


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Original:
    folder = tmp_path_factory.mktemp("rewrite") / "original"
    hu_volume = chest_ct_phantom(n_slices=SLICES, size=SIZE, rng=np.random.default_rng(11))
    sop_uids = [str(generate_uid()) for _ in range(SLICES)]
    paths = write_ct_series(hu_volume, folder, sop_uids=sop_uids, kernel="B30f")
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in _IDENTIFYING.items():
            setattr(ds, keyword, value)
        ds.save_as(path, enforce_file_format=True)
    return Original(folder, paths, sop_uids, file_fingerprints(folder))


@pytest.fixture(scope="module")
def detectors() -> dict[str, Detector]:
    """One instance per name, shared by the tests (detectors hold no per-scan state)."""
    return {name: create_detector(name) for name in DETECTORS}


@pytest.fixture(scope="module")
def original_results(original: Original, detectors: dict[str, Detector]) -> dict[str, ScanResult]:
    return {name: _scan_one(original.folder, detector) for name, detector in detectors.items()}


def _scan_one(folder: Path, detector: Detector) -> ScanResult:
    results = list(scan_paths([folder], detector=detector))
    assert len(results) == 1, [r.to_dict() for r in results]
    (result,) = results
    assert result.error is None, result.error
    assert result.shape == [SLICES, SIZE, SIZE]
    assert result.score is not None and result.verdict is not None
    return result


# --- the re-writes: each reads the original files and writes new ones under ``out`` -----------

Rewrite = Callable[[list[Path], Path], dict[str, str]]
"""(original paths in slice order, output folder) -> map of old SOPInstanceUID to new one."""


def _identity(paths: list[Path]) -> dict[str, str]:
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    return {uid: uid for uid in uids}


def _rewrite_each(paths: list[Path], out: Path, change: Callable[[pydicom.Dataset], None]) -> None:
    out.mkdir(parents=True)
    for path in paths:
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(out / path.name, enforce_file_format=True)


def anonymised(paths: list[Path], out: Path) -> dict[str, str]:
    def change(ds: pydicom.Dataset) -> None:
        ds.PatientName = "ANONYMOUS"
        ds.PatientID = "ANON-0001"
        ds.PatientBirthDate = ""
        ds.ReferringPhysicianName = ""
        ds.AccessionNumber = ""
        for keyword in ("InstitutionName", "InstitutionAddress", "StationName", "OperatorsName"):
            delattr(ds, keyword)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "test: basic profile"

    _rewrite_each(paths, out, change)
    return _identity(paths)


def new_uids(paths: list[Path], out: Path) -> dict[str, str]:
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    renamed: dict[str, str] = {}

    def change(ds: pydicom.Dataset) -> None:
        sop_uid = generate_uid()
        renamed[str(ds.SOPInstanceUID)] = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid

    _rewrite_each(paths, out, change)
    return renamed


def _as_syntax(syntax: UID) -> Rewrite:
    def rewrite(paths: list[Path], out: Path) -> dict[str, str]:
        out.mkdir(parents=True)
        for path in paths:
            ds = pydicom.dcmread(path)
            if syntax == RLELossless:
                # lossless, so the instance keeps its UID (pydicom would issue a new one)
                ds.compress(RLELossless, generate_instance_uid=False)
            elif syntax == ExplicitVRBigEndian:
                # pydicom encodes the header in big endian but leaves OW pixel bytes to us
                stored = ds.pixel_array
                ds.file_meta.TransferSyntaxUID = syntax
                ds.PixelData = stored.astype(stored.dtype.newbyteorder(">")).tobytes()
            else:
                # deflate and implicit VR happen on write, from the transfer syntax alone
                ds.file_meta.TransferSyntaxUID = syntax
            pydicom.dcmwrite(out / path.name, ds, enforce_file_format=True)
            written = pydicom.dcmread(out / path.name)
            assert written.file_meta.TransferSyntaxUID == syntax
            np.testing.assert_array_equal(written.pixel_array, pydicom.dcmread(path).pixel_array)
        return _identity(paths)

    return rewrite


def renamed_and_nested(paths: list[Path], out: Path) -> dict[str, str]:
    """Byte copies under random names without extension, spread over nested folders."""
    rng = np.random.default_rng(5)
    folders = [out / "export" / "DICOM" / "A", out / "export" / "B" / "deeper" / "still"]
    for folder in folders:
        folder.mkdir(parents=True)
    for index, position in enumerate(rng.permutation(len(paths))):
        name = "".join(rng.choice(list("0123456789ABCDEF"), size=8))
        shutil.copyfile(paths[position], folders[index % 2] / name)
    return _identity(paths)


REWRITES: dict[str, tuple[Rewrite, UID | None]] = {
    "anonymised-headers": (anonymised, None),
    "new-uids": (new_uids, None),
    "explicit-big-endian": (_as_syntax(ExplicitVRBigEndian), None),
    "deflated-explicit-le": (_as_syntax(DeflatedExplicitVRLittleEndian), None),
    "rle-lossless": (_as_syntax(RLELossless), RLELossless),
    "renamed-reordered-nested": (renamed_and_nested, None),
    "implicit-vr-le": (_as_syntax(ImplicitVRLittleEndian), None),
}


@pytest.mark.parametrize("detector_name", DETECTORS)
@pytest.mark.parametrize("kind", list(REWRITES))
def test_authentic_rewrite_keeps_verdict_score_and_findings(
    tmp_path: Path,
    original: Original,
    detectors: dict[str, Detector],
    original_results: dict[str, ScanResult],
    kind: str,
    detector_name: str,
) -> None:
    rewrite, needs_encoder = REWRITES[kind]
    if needs_encoder is not None:
        encoder = get_encoder(needs_encoder)
        if not encoder.is_available:
            missing = "; ".join(encoder.missing_dependencies)
            pytest.skip(f"no {needs_encoder.name} encoder in this environment ({missing})")
    out = tmp_path / kind
    new_sop_uid = rewrite(original.paths, out)
    copies_before = file_fingerprints(out)

    before = original_results[detector_name]
    after = _scan_one(out, detectors[detector_name])

    assert after.verdict == before.verdict
    assert after.score == pytest.approx(before.score, abs=SCORE_TOLERANCE)
    assert [(f.kind, f.slice, f.row, f.col) for f in after.findings] == [
        (f.kind, f.slice, f.row, f.col) for f in before.findings
    ]
    assert [f.score for f in after.findings] == pytest.approx(
        [f.score for f in before.findings], abs=SCORE_TOLERANCE
    )
    # a finding still names the file of its slice, under that file's (possibly new) UID
    assert [f.sop_instance_uid for f in after.findings] == [
        new_sop_uid[str(f.sop_instance_uid)] for f in before.findings
    ]
    assert file_fingerprints(out) == copies_before
    assert file_fingerprints(original.folder) == original.fingerprints


@pytest.mark.parametrize("detector_name", DETECTORS)
def test_scanning_leaves_original_files_byte_identical(
    original: Original, detectors: dict[str, Detector], detector_name: str
) -> None:
    before = file_fingerprints(original.folder)

    result = _scan_one(original.folder, detectors[detector_name])

    assert file_fingerprints(original.folder) == before == original.fingerprints
    assert {f.sop_instance_uid for f in result.findings} <= set(original.sop_uids)


def test_original_carries_the_identifying_headers_the_anonymiser_removes(
    original: Original,
) -> None:
    # guards the anonymisation case against passing because there was nothing to remove
    ds = pydicom.dcmread(original.paths[0], stop_before_pixels=True)
    for keyword, value in _IDENTIFYING.items():
        assert str(ds.get(keyword)) == value
