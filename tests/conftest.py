"""Shared fixtures: small phantom CT series written to ``tmp_path`` and a detector tests control."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydicom
import pytest

from medforensics.detect import Detection, Detector, Finding, list_detectors, register_detector
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, write_ct_series

#: small enough to keep every test fast, non-square so a row/col swap cannot go unnoticed
PHANTOM_SLICES, PHANTOM_ROWS, PHANTOM_COLS = 8, 64, 48
#: stored values are whole numbers; float32 rounding in the writer can add a hair over 0.5 HU
HU_TOLERANCE = 0.5 + 1e-3


@dataclass
class WrittenSeries:
    """A series on disk and what it should read back as.

    Attributes:
        folder: where the files are.
        paths: one file per slice, in slice (position) order.
        hu_volume: ``(slices, rows, cols)`` Hounsfield units written, in slice order.
        spacing: ``(slice, row, col)`` mm.
        positions: ``(slices, 3)`` ImagePositionPatient written, in slice order.
        sop_uids: SOPInstanceUIDs in slice order.
        series_uid: SeriesInstanceUID.
    """

    folder: Path
    paths: list[Path]
    hu_volume: np.ndarray
    spacing: tuple[float, float, float]
    positions: np.ndarray
    sop_uids: list[str]
    series_uid: str


def phantom_hu(n_slices: int = PHANTOM_SLICES, seed: int = 1) -> np.ndarray:
    """A small chest CT phantom, cropped to ``(n_slices, PHANTOM_ROWS, PHANTOM_COLS)``."""
    volume = chest_ct_phantom(n_slices=n_slices, size=PHANTOM_ROWS, rng=np.random.default_rng(seed))
    start = (PHANTOM_ROWS - PHANTOM_COLS) // 2
    return np.ascontiguousarray(volume[:, :, start : start + PHANTOM_COLS])


def write_series(
    folder: Path,
    n_slices: int = PHANTOM_SLICES,
    spacing: tuple[float, float, float] = (2.0, 0.8, 0.6),
    origin: tuple[float, float, float] = (-30.0, -20.0, 50.0),
    seed: int = 1,
    shuffle: bool = True,
    series_uid: str | None = None,
) -> WrittenSeries:
    """Write an axial phantom series whose file names are in a shuffled order."""
    rng = np.random.default_rng(seed)
    hu_volume = phantom_hu(n_slices, seed)
    file_order = rng.permutation(n_slices).tolist() if shuffle else None
    uid = series_uid or pydicom.uid.generate_uid()
    sop_uids = [pydicom.uid.generate_uid() for _ in range(n_slices)]
    paths = write_ct_series(
        hu_volume,
        folder,
        spacing=spacing,
        origin=origin,
        series_uid=uid,
        sop_uids=sop_uids,
        file_order=file_order,
    )
    positions = np.array(
        [[origin[0], origin[1], origin[2] + z * spacing[0]] for z in range(n_slices)]
    )
    return WrittenSeries(folder, paths, hu_volume, spacing, positions, sop_uids, uid)


def rewrite_geometry(
    paths: Sequence[Path], orientation: Sequence[float], positions: np.ndarray
) -> None:
    """Give each file a new ImageOrientationPatient and ImagePositionPatient, in place."""
    for path, position in zip(paths, positions, strict=True):
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [round(float(v), 6) for v in orientation]
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        del ds.SliceLocation
        ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def ct_series(tmp_path: Path) -> WrittenSeries:
    """An 8-slice 64×48 CT phantom series, file names shuffled against slice order."""
    return write_series(tmp_path / "ct-series")


@pytest.fixture
def good_dicom(tmp_path: Path) -> Path:
    """One valid CT slice, for batches that must go on past a bad input."""
    written = write_series(tmp_path / "good", n_slices=1, seed=5, shuffle=False)
    return written.paths[0]


def file_fingerprints(root: Path) -> dict[str, tuple[str, int, int]]:
    """sha256, size and mtime (ns) of every file below ``root`` (or of ``root`` itself)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    fingerprints = {}
    for path in files:
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        fingerprints[str(path)] = (digest, stat.st_size, stat.st_mtime_ns)
    return fingerprints


class ConstantDetector(Detector):
    """A detector whose verdict the test sets; reports one finding on the last slice.

    The finding sits at ``(last slice, rows // 2, cols // 3)`` so tests can check that slice
    indices map to the right SOPInstanceUID.
    """

    name: ClassVar[str] = "test-constant"
    verdict: ClassVar[str] = "authentic"
    _SCORES: ClassVar[dict[str, float]] = {
        "authentic": 0.1,
        "inconclusive": 0.5,
        "manipulated": 0.9,
    }

    def detect(self, volume: ImageVolume) -> Detection:
        score = self._SCORES[self.verdict]
        slices, rows, cols = volume.shape
        finding = Finding("local", score, slices - 1, rows // 2, cols // 3, detail="test")
        return Detection(self.name, score, self.verdict, [finding])  # type: ignore[arg-type]


if ConstantDetector.name not in list_detectors():
    register_detector(ConstantDetector)


@pytest.fixture
def constant_detector(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Return a function that sets the test detector's verdict and returns its name."""

    def set_verdict(verdict: str) -> str:
        monkeypatch.setattr(ConstantDetector, "verdict", verdict)
        return ConstantDetector.name

    return set_verdict


@pytest.fixture
def unreadable_file(tmp_path: Path) -> Iterator[Path]:
    """A DICOM file with mode 000; skips where permissions do not stop this user (root)."""
    written = write_series(tmp_path / "locked", n_slices=1, seed=3, shuffle=False)
    path = written.paths[0]
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user can read a mode-000 file (running as root?)")
        yield path
    finally:
        path.chmod(0o644)


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """Tiny nets: a second thread only adds synchronisation (and contends with xdist workers).
    Use with ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
