"""Read labelled data in the layout of the public CT-GAN tamper dataset.

The dataset accompanies Mirsky et al., "CT-GAN: Malicious Tampering of 3D Medical Imagery using
Deep Learning" (USENIX Security 2019; code at https://github.com/ymirsky/CT-GAN, whose README
links the tampered scans), and is described on the UCI repository as "Deepfakes: Medical Image
Tamper Detection" (https://archive.ics.uci.edu/dataset/520). It holds 100 lung CT scans: 80 from
a blind trial (experiment 1) and 20 from an open trial (experiment 2). Ground truth is one CSV per
experiment, ``labels_exp1.csv`` and ``labels_exp2.csv``, with columns ``type,uuid,slice,x,y``:
``uuid`` names the scan, ``slice`` is the z index and ``x``/``y`` the column/row of a location,
and ``type`` classifies that location (definitions quoted from the UCI description):

* ``TB`` True-Benign: "a location that actually has no cancer" (authentic);
* ``TM`` True-Malicious: "a location that has real cancer" (authentic);
* ``FB`` False-Benign: "a location that has real cancer, but it was removed" (tampered: removal);
* ``FM`` False-Malicious: "a location that does not have cancer, but fake cancer was injected
  there" (tampered: injection).

So "true/false" says whether what a reader sees is real, and FB and FM are the manipulated ones.
Scans are folders of DICOM slices (the published layout is ``CT_Scans/EXP1_blind/<uuid>/`` and
``CT_Scans/EXP2_open/<uuid>/``); the CT-GAN code also reads ``<uuid>.mhd`` + ``.raw``. This module
only finds the scan paths; reading pixels is the job of ``medforensics.io``.

The ``slice`` value is kept exactly as written in the CSV. Check that it matches the slice order
of your reader (``Finding.slice`` is 0-based along the sorted series) before scoring localisation.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast

from medforensics.evaluate.localisation import GroundTruthRegion

LocationType = Literal["TB", "TM", "FB", "FM"]
Attack = Literal["inject", "remove"]

#: what each location type means, and whether the scan was tampered there
LOCATION_TYPES: dict[str, tuple[str, bool, Attack | None]] = {
    "TB": ("True-Benign: no cancer at this location (authentic)", False, None),
    "TM": ("True-Malicious: real cancer at this location (authentic)", False, None),
    "FB": ("False-Benign: real cancer removed from this location (tampered)", True, "remove"),
    "FM": ("False-Malicious: fake cancer injected at this location (tampered)", True, "inject"),
}

#: columns a labels file must have
REQUIRED_COLUMNS = ("type", "uuid", "slice", "x", "y")

#: labels file name of each experiment
LABEL_FILES = {1: "labels_exp1.csv", 2: "labels_exp2.csv"}


class CtganFormatError(ValueError):
    """Raised when a folder or labels file does not follow the CT-GAN dataset layout."""


@dataclass(frozen=True)
class CtganLocation:
    """One labelled location (one CSV row).

    Attributes:
        experiment: 1 (blind trial) or 2 (open trial).
        type: ``TB``, ``TM``, ``FB`` or ``FM`` (see ``LOCATION_TYPES``).
        uuid: scan identifier; the scan's folder or ``.mhd`` file name.
        slice: slice index as written in the CSV.
        x: column of the location, in pixels.
        y: row of the location, in pixels.
        scan_path: the scan folder or ``.mhd`` file, None when it was not found.
        source: the labels file and line the row came from, for messages.
    """

    experiment: int
    type: LocationType
    uuid: str
    slice: int
    x: int
    y: int
    scan_path: Path | None = None
    source: str = ""

    @property
    def manipulated(self) -> bool:
        """True for ``FB`` (removed) and ``FM`` (injected) locations."""
        return LOCATION_TYPES[self.type][1]

    @property
    def attack(self) -> Attack | None:
        """``inject`` (FM), ``remove`` (FB), or None for authentic locations."""
        return LOCATION_TYPES[self.type][2]

    def ground_truth(self) -> GroundTruthRegion:
        """The location as a localisation target (``row = y``, ``col = x``)."""
        return GroundTruthRegion(slice=self.slice, row=self.y, col=self.x)


@dataclass(frozen=True)
class CtganDataset:
    """All labelled locations found under one dataset folder.

    Attributes:
        root: the dataset folder.
        locations: every labelled location, in file order (experiment 1 first).
        missing_scans: ``(experiment, uuid)`` of labelled scans whose data was not found.
    """

    root: Path
    locations: tuple[CtganLocation, ...]
    missing_scans: tuple[tuple[int, str], ...] = ()

    def scan_labels(self) -> dict[tuple[int, str], bool]:
        """``(experiment, uuid) -> manipulated``: a scan is manipulated if any location is."""
        labels: dict[tuple[int, str], bool] = {}
        for location in self.locations:
            key = (location.experiment, location.uuid)
            labels[key] = labels.get(key, False) or location.manipulated
        return labels


def read_ctgan_labels(csv_path: Path | str, experiment: int) -> list[CtganLocation]:
    """Parse one ``labels_exp*.csv`` file.

    Header names are matched without regard to case or surrounding spaces; extra columns are
    ignored; blank lines are skipped.

    Args:
        csv_path: the labels file.
        experiment: the experiment the file belongs to (1 or 2).

    Raises:
        CtganFormatError: naming the file and line when a column is missing or a value is bad.
    """
    path = Path(csv_path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise CtganFormatError(f"{path}: the file is empty; expected a header {_HEADER}")
        columns = {name.strip().lower(): index for index, name in enumerate(header)}
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise CtganFormatError(
                f"{path}: missing column(s) {', '.join(missing)}; the header must contain "
                f"{_HEADER} (found {', '.join(header)})"
            )
        locations = []
        for line_number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}:{line_number}"
            if len(row) < len(header):
                raise CtganFormatError(f"{where}: expected {len(header)} values, got {len(row)}")
            values = {name: row[columns[name]].strip() for name in REQUIRED_COLUMNS}
            locations.append(
                CtganLocation(
                    experiment=experiment,
                    type=_parse_type(values["type"], where),
                    uuid=_parse_uuid(values["uuid"], where),
                    slice=_parse_int(values["slice"], "slice", where),
                    x=_parse_int(values["x"], "x", where),
                    y=_parse_int(values["y"], "y", where),
                    source=where,
                )
            )
    return locations


def find_ctgan_scan(root: Path | str, uuid: str, experiment: int | None = None) -> Path | None:
    """Find the scan of ``uuid``: a folder named ``uuid`` or a ``uuid.mhd`` file.

    Looked for in ``root``, ``root/CT_Scans``, and their ``EXP<n>_*`` subfolders (all of them
    when ``experiment`` is None).

    Args:
        root: the dataset folder.
        uuid: the scan identifier from the labels file.
        experiment: restrict the ``EXP<n>_*`` folders to this experiment.
    """
    for folder in _scan_folders(Path(root), experiment):
        for candidate in (folder / uuid, folder / f"{uuid}.mhd"):
            if candidate.is_dir() or (candidate.suffix == ".mhd" and candidate.is_file()):
                return candidate
    return None


def read_ctgan_dataset(
    root: Path | str, experiments: Iterable[int] = (1, 2), *, require_scans: bool = True
) -> CtganDataset:
    """Read the labels of the given experiments and locate each labelled scan.

    Args:
        root: the folder holding ``labels_exp1.csv`` / ``labels_exp2.csv`` and the scans.
        experiments: which experiments to read; a missing labels file is an error.
        require_scans: raise when a labelled scan is not found (else list it in
            ``missing_scans`` and leave its ``scan_path`` None).

    Raises:
        CtganFormatError: when ``root`` is not a folder, a labels file is missing or malformed,
            or (with ``require_scans``) a scan is missing.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise CtganFormatError(f"{root_path}: not a folder; give the CT-GAN dataset folder")
    locations: list[CtganLocation] = []
    missing: list[tuple[int, str]] = []
    for experiment in experiments:
        if experiment not in LABEL_FILES:
            raise CtganFormatError(f"unknown CT-GAN experiment {experiment}; use 1 or 2")
        labels_path = root_path / LABEL_FILES[experiment]
        if not labels_path.is_file():
            raise CtganFormatError(
                f"{labels_path}: labels file not found; a CT-GAN dataset folder holds "
                f"{' and '.join(LABEL_FILES.values())} next to the scans"
            )
        found: dict[str, Path | None] = {}
        for location in read_ctgan_labels(labels_path, experiment):
            if location.uuid not in found:
                found[location.uuid] = find_ctgan_scan(root_path, location.uuid, experiment)
                if found[location.uuid] is None:
                    missing.append((experiment, location.uuid))
            locations.append(replace(location, scan_path=found[location.uuid]))
    if missing and require_scans:
        listed = ", ".join(f"exp{experiment}/{uuid}" for experiment, uuid in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CtganFormatError(
            f"{root_path}: {len(missing)} labelled scan(s) not found: {listed}{more}. Each scan "
            "must be a folder named by its uuid (or <uuid>.mhd) in the dataset folder, in "
            "CT_Scans/, or in an EXP<n>_* subfolder; pass require_scans=False to read labels only"
        )
    return CtganDataset(root=root_path, locations=tuple(locations), missing_scans=tuple(missing))


_HEADER = ",".join(REQUIRED_COLUMNS)


def _scan_folders(root: Path, experiment: int | None) -> list[Path]:
    pattern = f"EXP{experiment}_*" if experiment is not None else "EXP*_*"
    folders = [root, root / "CT_Scans"]
    for base in (root, root / "CT_Scans"):
        if base.is_dir():
            folders.extend(sorted(path for path in base.glob(pattern) if path.is_dir()))
    return folders


def _parse_type(text: str, where: str) -> LocationType:
    code = text.upper()
    if code in LOCATION_TYPES:
        return cast(LocationType, code)
    raise CtganFormatError(f"{where}: type {text!r} is not one of TB, TM, FB, FM")


def _parse_uuid(text: str, where: str) -> str:
    if not text or "/" in text or "\\" in text or text in {".", ".."}:
        raise CtganFormatError(f"{where}: uuid {text!r} is not a valid scan name")
    return text


def _parse_int(text: str, column: str, where: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise CtganFormatError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(value) or value != int(value):
        raise CtganFormatError(f"{where}: {column} {text!r} is not a whole number of voxels")
    return int(value)
