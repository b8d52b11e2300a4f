"""Header-only forgeries on pydicom datasets (label ``header``).

Three kinds, registered by name like the pixel attacks (in their own registry, since they take
datasets, not volumes):

* ``patient-swap``: the patient module (name, ID, birth date, sex) of another patient.
* ``date-shift``: every study/series/acquisition/content date moved by the same number of days.
* ``pixel-swap``: the Pixel Data of another study under this study's headers (needs a donor
  with the same geometry; the mask is then every pixel).

Each returns modified copies of the datasets (the inputs are untouched) and a ground truth
whose params list every element changed, old and new value. Write them with
``Dataset.save_as``; for pixel-swap the donor's transfer syntax must match.
"""

from __future__ import annotations

import copy
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pydicom

from medforensics.tamper.base import GroundTruth, Params

_PATIENT_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
_DATE_TAGS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate")
_GIVEN = ("ALEX", "SAM", "ROBIN", "JORDAN", "KIM", "LEE", "MORGAN", "TAYLOR", "CASEY", "JAMIE")
_FAMILY = (
    "SMITH",
    "NOVAK",
    "GARCIA",
    "MÜLLER",
    "ROSSI",
    "DUBOIS",
    "KOWALSKI",
    "SATO",
    "OKAFOR",
    "SILVA",
)


@dataclass(frozen=True)
class HeaderTamperResult:
    """Forged copies of the datasets and their ground truth."""

    datasets: list[pydicom.Dataset]
    truth: GroundTruth


def _mask(datasets: Sequence[pydicom.Dataset], value: bool) -> np.ndarray:
    rows, cols = int(datasets[0].get("Rows", 1)), int(datasets[0].get("Columns", 1))
    frames = sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets)
    return np.full((frames, rows, cols), value, dtype=bool)


class HeaderAttack(ABC):
    """A forgery of DICOM headers; ``apply`` works on deep copies."""

    name: ClassVar[str] = ""

    def __init__(self, donor: Sequence[pydicom.Dataset] | None = None) -> None:
        self.donor = list(donor) if donor is not None else None

    @abstractmethod
    def sample_params(
        self, datasets: Sequence[pydicom.Dataset], rng: np.random.Generator
    ) -> Params:
        """Draw the forgery's choices; JSON-serialisable."""

    @abstractmethod
    def apply(self, datasets: Sequence[pydicom.Dataset], params: Params) -> HeaderTamperResult:
        """Forge copies of ``datasets`` according to ``params``."""

    def _truth(
        self, datasets: Sequence[pydicom.Dataset], params: Params, pixels: bool
    ) -> GroundTruth:
        mask = _mask(datasets, pixels)
        centre: tuple[int, int, int] | None = None
        if pixels:
            centre = (mask.shape[0] // 2, mask.shape[1] // 2, mask.shape[2] // 2)
        return GroundTruth(f"header-{self.name}", "header", params, centre, mask)


def _set_all(copies: list[pydicom.Dataset], values: dict[str, str]) -> list[dict[str, Any]]:
    changes = []
    for keyword, new in values.items():
        old = str(copies[0].get(keyword, ""))
        for ds in copies:
            if keyword in ds or new:
                setattr(ds, keyword, new)
        changes.append({"keyword": keyword, "old": old, "new": new})
    return changes


class PatientSwap(HeaderAttack):
    name = "patient-swap"

    def sample_params(
        self, datasets: Sequence[pydicom.Dataset], rng: np.random.Generator
    ) -> Params:
        if self.donor:
            identity = {k: str(self.donor[0].get(k, "")) for k in _PATIENT_TAGS}
        else:
            birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 60)))
            identity = {
                "PatientName": f"{_FAMILY[int(rng.integers(10))]}^{_GIVEN[int(rng.integers(10))]}",
                "PatientID": f"{int(rng.integers(10**7, 10**8))}",
                "PatientBirthDate": birth.strftime("%Y%m%d"),
                "PatientSex": ("F", "M")[int(rng.integers(2))],
            }
        return {"identity": identity}

    def apply(self, datasets: Sequence[pydicom.Dataset], params: Params) -> HeaderTamperResult:
        copies = [copy.deepcopy(ds) for ds in datasets]
        changes = _set_all(copies, dict(params["identity"]))
        return HeaderTamperResult(
            copies, self._truth(datasets, {**params, "changes": changes}, False)
        )


class DateShift(HeaderAttack):
    name = "date-shift"

    def sample_params(
        self, datasets: Sequence[pydicom.Dataset], rng: np.random.Generator
    ) -> Params:
        days = int(rng.integers(1, 3650)) * (1 if rng.random() < 0.5 else -1)
        return {"days": days}

    def apply(self, datasets: Sequence[pydicom.Dataset], params: Params) -> HeaderTamperResult:
        copies = [copy.deepcopy(ds) for ds in datasets]
        changes: list[dict[str, str]] = []
        for keyword in _DATE_TAGS:
            for ds in copies:
                old = str(ds.get(keyword, "") or "")
                if len(old) < 8 or not old[:8].isdigit():
                    continue
                new = (
                    dt.datetime.strptime(old[:8], "%Y%m%d") + dt.timedelta(days=params["days"])
                ).strftime("%Y%m%d")
                setattr(ds, keyword, new + old[8:])
                if not any(c["keyword"] == keyword for c in changes):
                    changes.append({"keyword": keyword, "old": old, "new": new + old[8:]})
        return HeaderTamperResult(
            copies, self._truth(datasets, {**params, "changes": changes}, False)
        )


class PixelSwap(HeaderAttack):
    name = "pixel-swap"

    def sample_params(
        self, datasets: Sequence[pydicom.Dataset], rng: np.random.Generator
    ) -> Params:
        if not self.donor:
            raise ValueError(
                "pixel-swap needs donor datasets from another study: "
                "create_header_attack('pixel-swap', donor=[...])"
            )
        offset = int(rng.integers(len(self.donor)))
        return {
            "donor_offset": offset,
            "donor_study": str(self.donor[0].get("StudyInstanceUID", "")),
        }

    def apply(self, datasets: Sequence[pydicom.Dataset], params: Params) -> HeaderTamperResult:
        if not self.donor:
            raise ValueError("pixel-swap needs donor datasets from another study")
        copies = [copy.deepcopy(ds) for ds in datasets]
        geometry = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel")
        for k, ds in enumerate(copies):
            donor = self.donor[(k + params["donor_offset"]) % len(self.donor)]
            if any(ds.get(t) != donor.get(t) for t in geometry):
                raise ValueError(
                    f"donor image {donor.get('SOPInstanceUID')} has another geometry "
                    f"({', '.join(f'{t}={donor.get(t)}' for t in geometry)}); "
                    "pick a donor like the target"
                )
            if donor.file_meta.TransferSyntaxUID != ds.file_meta.TransferSyntaxUID:
                raise ValueError(
                    "donor and target use different transfer syntaxes; pick a matching donor"
                )
            ds.PixelData = donor.PixelData
        return HeaderTamperResult(copies, self._truth(datasets, dict(params), True))


_HEADER_ATTACKS: dict[str, type[HeaderAttack]] = {
    cls.name: cls for cls in (PatientSwap, DateShift, PixelSwap)
}


def list_header_attacks() -> list[str]:
    return sorted(_HEADER_ATTACKS)


def create_header_attack(name: str, **kwargs: Any) -> HeaderAttack:
    """Instantiate the header forgery ``name`` (``donor=`` datasets where it needs one)."""
    try:
        return _HEADER_ATTACKS[name](**kwargs)
    except KeyError:
        raise KeyError(
            f"unknown header forgery {name!r}; known: {', '.join(list_header_attacks())}"
        ) from None


def forge_headers(
    datasets: Sequence[pydicom.Dataset],
    kind: str,
    seed: int,
    donor: Sequence[pydicom.Dataset] | None = None,
) -> HeaderTamperResult:
    """Run one header forgery reproducibly from ``seed``; the input datasets are not modified."""
    if not datasets:
        raise ValueError("no datasets to forge")
    attack = create_header_attack(kind, donor=donor)
    params = attack.sample_params(datasets, np.random.default_rng(seed))
    return attack.apply(datasets, params)
