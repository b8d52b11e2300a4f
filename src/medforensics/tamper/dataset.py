"""Build a labelled, patient-split dataset of tampered cases from authentic scans.

Every case is one attack (optionally laundered) on one authentic series, reproducible from
``(seed, series key, case index)``: re-running with the same seed gives the same files and the
same manifest. The manifest has one row per location, CT-GAN style: the tampered location
(``FM`` injected, ``FB`` removed, or our attack kinds) and one untouched location of the same
case (``TB``), each with its patient id and a split drawn from a hash of the patient id, so no
patient is in two splits.

Per case the builder writes the slab of slices the attack touched (plus ``context_slices`` on
each side): DICOM copies with only Pixel Data changed for DICOM inputs, a ``.npz`` otherwise,
and ``truth.json`` plus ``mask.npz`` (packed bits).

With lesion annotations (``medforensics.tamper.annotations``), each real lesion found in a
volume gets one ``TM`` row (untouched, pointing at the authentic file), ``remove`` cases erase
one of the real lesions (drawn from the case's seed) instead of a sampled site, and ``TB`` rows
keep clear of every real lesion.
"""

from __future__ import annotations

import csv
import hashlib
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import sample_location
from medforensics.tamper.annotations import Box3D, Lesion, lesion_centre, lesions_in
from medforensics.tamper.base import DEFAULT_ATTACKS, TamperResult
from medforensics.tamper.dicom_out import replace_pixel_data, to_stored
from medforensics.tamper.launder import LAUNDER_OPS
from medforensics.tamper.registry import list_attacks, simulate

MANIFEST_FIELDS = (
    "case_id",
    "path",
    "series_uid",
    "uid",
    "slice",
    "x",
    "y",
    "label",
    "attack",
    "patient_id",
    "split",
    "laundering",
    "source",
)
#: attacks that erase a real, annotated lesion when the series has one (``box`` parameter)
REAL_LESION_ATTACKS = ("remove", "gan-remove")
#: attacks the builder draws from by default (``launder`` alone is drawn through laundering)
SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))


def split_for(patient_id: str, seed: int) -> str:
    """``train``/``val``/``test`` from a hash of the patient id: stable and patient-disjoint."""
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64
    total = 0.0
    for name, fraction in SPLITS:
        total += fraction
        if unit < total:
            return name
    return SPLITS[-1][0]


def series_key(volume: ImageVolume) -> str:
    """A stable key of a volume, independent of the order the inputs were found in."""
    return volume.series_uid or str(Path(volume.input).resolve())


def patient_id(volume: ImageVolume) -> str:
    """The DICOM PatientID of a volume, else its input name."""
    if volume.slices and volume.slices[0].sop_instance_uid is not None:
        ds = pydicom.dcmread(volume.slices[0].source_file, stop_before_pixels=True)
        if str(ds.get("PatientID", "")).strip():
            return str(ds.PatientID).strip()
    return Path(volume.input).name


@dataclass(frozen=True)
class CasePlan:
    """What one case will be: which attack on which volume, seeded how."""

    case_id: str
    attack: str
    seed: tuple[int, ...]
    launder: tuple[str, ...]


def plan_case(
    volume: ImageVolume,
    seed: int,
    index: int,
    attacks: Sequence[str],
    launder_probability: float,
) -> CasePlan:
    """Draw the attack and laundering of case ``index`` on ``volume``."""
    key = zlib.crc32(series_key(volume).encode())
    case_seed = (int(seed), int(key), int(index))
    rng = np.random.default_rng(np.random.SeedSequence(case_seed))
    usable = [a for a in attacks if a in list_attacks(volume.modality)]
    if not usable:
        raise ValueError(
            f"{volume.input}: none of the attacks {', '.join(attacks)} supports {volume.modality}"
        )
    attack = usable[int(rng.integers(len(usable)))]
    launder: tuple[str, ...] = ()
    if rng.random() < launder_probability:
        ops = list(LAUNDER_OPS)
        launder = tuple(
            str(op) for op in rng.choice(ops, size=int(rng.integers(1, 3)), replace=False)
        )
    return CasePlan(f"{key:08x}-{index:04d}", attack, case_seed, launder)


def _touched_slices(result: TamperResult, context: int, n_slices: int) -> list[int]:
    hit = np.flatnonzero(result.truth.mask.any(axis=(1, 2)))
    if len(hit) == 0:
        hit = np.asarray([n_slices // 2])
    if result.truth.mask.all():  # whole-image attacks: the centre slab only
        hit = np.asarray([result.truth.centre[0] if result.truth.centre else n_slices // 2])
    return list(range(max(int(hit[0]) - context, 0), min(int(hit[-1]) + context + 1, n_slices)))


def write_case(
    volume: ImageVolume, result: TamperResult, case_dir: Path, context_slices: int = 2
) -> dict[int, Path]:
    """Write the touched slab of one case; returns slice index -> written file."""
    case_dir.mkdir(parents=True, exist_ok=True)
    slices = _touched_slices(result, context_slices, volume.shape[0])
    written: dict[int, Path] = {}
    is_dicom = bool(volume.slices) and volume.slices[0].sop_instance_uid is not None
    if is_dicom and all(volume.slices[z].frame is None for z in slices):
        for z in slices:
            source = volume.slices[z].source_file
            ds = pydicom.dcmread(source, stop_before_pixels=True)
            dtype = np.dtype(
                ("i" if int(ds.get("PixelRepresentation", 0)) else "u")
                + str(int(ds.BitsAllocated) // 8)
            )
            stored = to_stored(result.pixels[z], ds, volume.modality, dtype)
            written[z] = replace_pixel_data(source, case_dir / f"{z:04d}_{source.name}", stored)
    else:
        path = case_dir / "pixels.npz"
        np.savez_compressed(path, pixels=result.pixels[slices], slices=np.asarray(slices))
        written = dict.fromkeys(slices, path)
    np.savez_compressed(
        case_dir / "mask.npz", mask=np.packbits(result.truth.mask), shape=result.truth.mask.shape
    )
    truth = {**result.truth.to_json(), "input": volume.input, "series_uid": volume.series_uid}
    (case_dir / "truth.json").write_text(json.dumps(truth, indent=1))
    return written


def build_dataset(
    volumes: Iterable[ImageVolume],
    out_dir: str | Path,
    seed: int = 0,
    cases_per_series: int = 4,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    launder_probability: float = 0.3,
    write: bool = True,
    context_slices: int = 2,
    annotations: Sequence[Lesion] = (),
) -> list[dict[str, Any]]:
    """Tamper every volume ``cases_per_series`` times and write ``out_dir/manifest.csv``.

    Args:
        volumes: authentic images.
        out_dir: output folder (created); cases go to ``out_dir/cases/<case_id>/``.
        seed: the one seed everything is drawn from.
        cases_per_series: cases per authentic volume.
        attacks: attack names to draw from (those that support the modality).
        launder_probability: chance that a case is laundered afterwards.
        write: False to only simulate and build the manifest (benchmarks, dry runs).
        context_slices: untouched slices written on each side of the touched slab.
        annotations: real lesions (see ``medforensics.tamper.annotations.read_annotations``);
            those found in a volume give ``TM`` rows and are what its ``remove`` cases erase.

    Returns:
        The manifest rows, also written to ``manifest.csv``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for volume in sorted(volumes, key=series_key):
        patient = patient_id(volume)
        split = split_for(patient, seed)
        real = lesions_in(volume, annotations) if annotations else []
        rows.extend(_real_lesion_rows(volume, real, patient, split))
        for index in range(cases_per_series):
            plan = plan_case(volume, seed, index, attacks, launder_probability)
            overrides: dict[str, Any] = {}
            if plan.attack in REAL_LESION_ATTACKS and real:
                pick = np.random.default_rng(np.random.SeedSequence((*plan.seed, 2)))
                box = real[int(pick.integers(len(real)))]
                overrides = {"box": list(box), "source": "annotation"}
            result = simulate(volume, plan.attack, plan.seed, launder=plan.launder, **overrides)
            written = (
                write_case(volume, result, out / "cases" / plan.case_id, context_slices)
                if write
                else {}
            )
            common = {
                "case_id": plan.case_id,
                "series_uid": volume.series_uid or "",
                "attack": plan.attack,
                "patient_id": patient,
                "split": split,
                "laundering": "+".join(plan.launder),
                "source": volume.input,
            }
            z, y, x = result.truth.centre or (
                volume.shape[0] // 2,
                volume.shape[1] // 2,
                volume.shape[2] // 2,
            )
            rows.append(
                {
                    **common,
                    "path": _relative(written.get(z), out),
                    "uid": volume.sop_instance_uid(z) or "",
                    "slice": z,
                    "x": x,
                    "y": y,
                    "label": result.truth.label,
                }
            )
            benign = _benign_location(volume, result, plan, real)
            if benign is not None:
                bz, by, bx = benign
                path = written.get(bz)
                rows.append(
                    {
                        **common,
                        "path": _relative(path, out)
                        if path
                        else str(volume.slices[bz].source_file)
                        if volume.slices
                        else "",
                        "uid": volume.sop_instance_uid(bz) or "",
                        "slice": bz,
                        "x": bx,
                        "y": by,
                        "label": "TB",
                    }
                )
    with (out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _benign_location(
    volume: ImageVolume, result: TamperResult, plan: CasePlan, real: Sequence[Box3D] = ()
) -> tuple[int, int, int] | None:
    """An untouched location in plausible anatomy of the same case, clear of real lesions."""
    if result.truth.mask.all():
        return None
    rng = np.random.default_rng(np.random.SeedSequence((*plan.seed, 1)))
    for _ in range(5):
        (z, y, x), _ = sample_location(volume, rng, 4.0)
        if result.truth.mask[z, max(y - 8, 0) : y + 9, max(x - 8, 0) : x + 9].any():
            continue
        if any(_near(box, z, y, x, 8) for box in real):
            continue
        return z, y, x
    return None


def _near(box: Box3D, z: int, y: int, x: int, margin: int) -> bool:
    """Whether ``(z, y, x)`` is on a slice of ``box`` and within ``margin`` pixels of it."""
    z0, z1, y0, y1, x0, x1 = box
    return z0 <= z < z1 and y0 - margin <= y < y1 + margin and x0 - margin <= x < x1 + margin


def _real_lesion_rows(
    volume: ImageVolume, real: Sequence[Box3D], patient: str, split: str
) -> list[dict[str, Any]]:
    """One ``TM`` row per real lesion: its centre in the authentic, untouched files."""
    key = zlib.crc32(series_key(volume).encode())
    rows = []
    for number, box in enumerate(real):
        z, y, x = lesion_centre(box)
        rows.append(
            {
                "case_id": f"{key:08x}-lesion{number:02d}",
                "path": str(volume.slices[z].source_file) if volume.slices else volume.input,
                "series_uid": volume.series_uid or "",
                "uid": volume.sop_instance_uid(z) or "",
                "slice": z,
                "x": x,
                "y": y,
                "label": "TM",
                "attack": "",
                "patient_id": patient,
                "split": split,
                "laundering": "",
                "source": volume.input,
            }
        )
    return rows


def _relative(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
