"""Training and evaluation cases: authentic scans and their simulated-tampered twins.

Every trainable detector learns from the same kind of case: a short run of slices (a *chunk*),
either authentic or tampered by the attack simulator, with the voxel mask of what the attack
changed. Two details keep the cases honest:

* tampered pixels are put back on the authentic file's value grid (rounded to integers, clipped
  to the range the file could hold), exactly what writing them to DICOM does, so no detector can
  learn "non-integer Hounsfield units" instead of the manipulation itself;
* every case carries its patient and scanner, so splits are made by patient or by scanner, never
  by slice.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import on_value_grid


@dataclass
class TrainCase:
    """One case for training or evaluating a detector.

    Attributes:
        volume: the (possibly tampered) chunk, pixels on the file's value grid.
        mask: bool ``(slices, rows, cols)`` of the voxels the attack changed; None when authentic.
        attack: registry name of the attack; None when authentic.
        patient: an opaque patient key (a hash, never the identifier itself).
        scanner: ``Manufacturer ModelName`` or ``unknown``.
        centre: ``(slice, row, col)`` of the manipulation, None when authentic.
        launder: laundering operations applied after the attack.
    """

    volume: ImageVolume
    mask: np.ndarray | None
    attack: str | None
    patient: str
    scanner: str
    centre: tuple[int, int, int] | None = None
    launder: tuple[str, ...] = ()

    @property
    def label(self) -> int:
        return 0 if self.attack is None else 1


def patient_key(volume: ImageVolume) -> str:
    """A stable, non-identifying key for the patient a volume belongs to.

    DICOM: a hash of PatientID (read from the first source file), else of StudyInstanceUID.
    Other formats: a hash of the input's parent folder (one folder per patient is the usual layout).
    """
    raw = ""
    if volume.slices and volume.kind.startswith("dicom"):
        try:
            import pydicom

            ds = pydicom.dcmread(
                volume.slices[0].source_file, stop_before_pixels=True, specific_tags=["PatientID"]
            )
            raw = str(ds.get("PatientID", "") or "")
        except Exception:  # an unreadable header only costs us the patient id
            raw = ""
    if not raw:
        raw = volume.study_uid or str(Path(volume.input).parent)
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def scanner_key(volume: ImageVolume) -> str:
    """``Manufacturer ModelName`` from the header, or ``unknown``."""
    parts = [
        volume.attributes.get("Manufacturer", "").strip(),
        volume.attributes.get("ManufacturerModelName", "").strip(),
    ]
    return " ".join(p for p in parts if p) or "unknown"


def slab(volume: ImageVolume, start: int, stop: int) -> ImageVolume:
    """Slices ``start:stop`` of a volume, with their references and positions (a view, no copy)."""
    return dataclasses.replace(
        volume,
        pixels=volume.pixels[start:stop],
        slices=volume.slices[start:stop] if volume.slices else (),
        positions=volume.positions[start:stop] if volume.positions is not None else None,
        problems=[],
    )


def chunks(volume: ImageVolume, length: int, stride: int | None = None) -> Iterator[ImageVolume]:
    """Consecutive runs of ``length`` slices (a shorter series is one chunk)."""
    n = volume.shape[0]
    if n <= length:
        yield volume
        return
    step = stride or length
    for start in range(0, n - length + 1, step):
        yield slab(volume, start, start + length)


def make_cases(
    volumes: Iterable[ImageVolume],
    attacks: Sequence[str],
    seed: int,
    chunk: int = 5,
    per_chunk: int = 1,
    launder_rate: float = 0.0,
    launder_ops: Sequence[str] = (),
    patients: dict[str, str] | None = None,
    errors: dict[str, int] | None = None,
) -> Iterator[TrainCase]:
    """Authentic chunks and, for each, ``per_chunk`` tampered twins with attacks drawn in turn.

    Args:
        volumes: authentic images.
        attacks: attack names to draw from (in rotation, so every attack is equally common).
        seed: makes the whole case list reproducible.
        chunk: slices per case.
        per_chunk: tampered twins per authentic chunk.
        launder_rate: probability that a tampered twin is also laundered.
        launder_ops: laundering operations to pick one from when laundering.
        patients: optional ``volume.input -> patient key`` override.
        errors: when given, counts of attacks that could not run (``"attack: reason"``).
    """
    from medforensics.tamper.base import AttackError
    from medforensics.tamper.registry import simulate

    rng = np.random.default_rng(seed)
    index = 0
    for volume in volumes:
        patient = (patients or {}).get(volume.input) or patient_key(volume)
        scanner = scanner_key(volume)
        for part in chunks(volume, chunk):
            yield TrainCase(part, None, None, patient, scanner)
            for _ in range(per_chunk):
                attack = attacks[index % len(attacks)]
                index += 1
                launder: tuple[str, ...] = ()
                if launder_ops and rng.random() < launder_rate:
                    launder = (str(rng.choice(list(launder_ops))),)
                try:
                    result = simulate(part, attack, seed=[seed, index], launder=launder)
                except (AttackError, ValueError) as exc:
                    if errors is not None:
                        key = f"{attack}: {exc}"[:160]
                        errors[key] = errors.get(key, 0) + 1
                    continue
                if not result.truth.mask.any():
                    continue
                pixels = on_value_grid(part.pixels, result.pixels)
                yield TrainCase(
                    dataclasses.replace(part, pixels=pixels, problems=[]),
                    result.truth.mask,
                    attack,
                    patient,
                    scanner,
                    centre=result.truth.centre,
                    launder=launder,
                )
