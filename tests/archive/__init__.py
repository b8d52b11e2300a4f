"""Helpers for the archive tests: a generated archive and a detector worker processes can import.

``FlagDetector`` ("test-archive-flag") flags a volume whose SeriesDescription contains
``TAMPERED``: it tests the plumbing (every series reaches a detector once, answers come back to
the right row), not detection. Worker processes import this module through ``--plugin
tests.archive`` / ``ArchiveOptions(plugins=("tests.archive",))``. When ``$MF_TEST_MARKERS`` names
a folder, every completed analysis leaves one file there (series UID, process id), so tests
count how often each series was really analysed, on whichever worker.
"""

from __future__ import annotations

import os
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydicom

from medforensics.detect import Detection, Detector, register_detector
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, write_ct_series

PLUGIN = "tests.archive"
MARKERS_ENV = "MF_TEST_MARKERS"
DELAY_ENV = "MF_TEST_DELAY"


class FlagDetector(Detector):
    """Flags series described as TAMPERED; optionally slow; counts its completed analyses."""

    name: ClassVar[str] = "test-archive-flag"

    def detect(self, volume: ImageVolume) -> Detection:
        delay = float(os.environ.get(DELAY_ENV, "0") or 0)
        if delay:
            time.sleep(delay)
        flagged = "TAMPERED" in volume.attributes.get("SeriesDescription", "")
        detection = Detection(
            self.name,
            0.95 if flagged else 0.05,
            "manipulated" if flagged else "authentic",
            [],
        )
        markers = os.environ.get(MARKERS_ENV)
        if markers:
            tag = volume.series_uid or Path(volume.input).name
            name = f"{tag}__{os.getpid()}__{uuid.uuid4().hex[:8]}"
            (Path(markers) / name).touch()
        return detection


register_detector(FlagDetector)


def marker_counts(folder: Path) -> dict[str, int]:
    """How many completed analyses each series (UID, or file name) had."""
    counts: dict[str, int] = {}
    for path in folder.iterdir():
        tag = path.name.split("__")[0]
        counts[tag] = counts.get(tag, 0) + 1
    return counts


@dataclass
class GeneratedArchive:
    """What was written, and what an analysis of it must find."""

    root: Path
    series_uids: list[str] = field(default_factory=list)
    tampered_uids: set[str] = field(default_factory=set)
    #: tasks expected to fail (broken files), and to succeed outside DICOM series
    broken: int = 0
    other_files: int = 0
    skipped_files: int = 0

    @property
    def tasks(self) -> int:
        return len(self.series_uids) + self.broken + self.other_files


def _set_description(paths: list[Path], text: str) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = text
        ds.save_as(path, enforce_file_format=True)


def make_archive(
    root: Path, n_series: int = 240, tampered_every: int = 12, seed: int = 0
) -> GeneratedArchive:
    """An archive of ``n_series`` small CT series (2-4 slices of 32x32), every
    ``tampered_every``-th described as TAMPERED, laid out patient/study/series; every tenth
    study folder holds two series side by side; plus broken files, a PNG, a NIfTI, a zip
    holding a series, and a README."""
    rng = np.random.default_rng(seed)
    base = chest_ct_phantom(n_slices=4, size=32, rng=rng)
    archive = GeneratedArchive(root)
    study_uids: dict[tuple[int, int], str] = {}
    for index in range(n_series):
        n_slices = 2 + index % 3
        patient, study = divmod(index // 2, 3)
        folder = root / f"patient-{patient:03d}" / f"study-{study}"
        shared = index % 20 == 1  # this series joins the previous one's folder
        folder = folder / (f"series-{index - 1:03d}" if shared else f"series-{index:03d}")
        target = folder / "incoming" if shared else folder
        uid = pydicom.uid.generate_uid()
        study_uid = study_uids.setdefault((patient, study), pydicom.uid.generate_uid())
        hu = base[:n_slices] + rng.normal(0, 2, size=(n_slices, 32, 32)).astype(np.float32)
        paths = write_ct_series(
            hu, target, series_uid=uid, study_uid=study_uid, patient_id=f"P{patient:03d}"
        )
        if shared:  # move next to the other series' files, under different names
            moved = []
            for path in paths:
                destination = folder / f"B{path.name}"
                path.rename(destination)
                moved.append(destination)
            target.rmdir()
            paths = moved
        if index % tampered_every == tampered_every - 1:
            _set_description(paths, "CHEST TAMPERED")
            archive.tampered_uids.add(uid)
        archive.series_uids.append(uid)
    _write_odd_files(root / "zz-other", rng, archive)
    return archive


def _write_odd_files(folder: Path, rng: np.random.Generator, archive: GeneratedArchive) -> None:
    import nibabel as nib
    from PIL import Image

    folder.mkdir(parents=True)
    (folder / "README.txt").write_text("not an image\n")
    archive.skipped_files += 1
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "garbage.dcm").write_bytes(bytes(rng.integers(0, 256, 600, dtype=np.uint8)))
    good = write_ct_series(chest_ct_phantom(n_slices=1, size=32, rng=rng), folder / "t")[0]
    data = good.read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) - 900])
    good.unlink()
    (folder / "t").rmdir()
    archive.broken += 3
    pixels = (rng.random((32, 32)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "photo.png")
    nib.save(
        nib.Nifti1Image(rng.random((16, 16, 3)).astype(np.float32), np.eye(4)),
        folder / "vol.nii.gz",
    )
    zipped = write_ct_series(chest_ct_phantom(n_slices=2, size=32, rng=rng), folder / "z")
    with zipfile.ZipFile(folder / "series.zip", "w") as handle:
        for path in zipped:
            handle.write(path, f"series/{path.name}")
            path.unlink()
    (folder / "z").rmdir()
    archive.other_files += 3
