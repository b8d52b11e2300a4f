"""The attack interface, its ground-truth record and the result every attack returns.

An attack is split in two, in the style of MONAI's random transforms: ``sample_params`` draws
every random choice from a seeded generator into a JSON-serialisable dict, and ``apply`` turns
those parameters into pixels. Replaying ``apply`` with the same parameters and generator gives
the same image, and a user can override any parameter before applying.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from medforensics.io.types import ImageVolume

#: Location labels. ``TB``/``TM``/``FB``/``FM`` follow the CT-GAN dataset (Mirsky et al. 2019):
#: True-Benign (untouched, no lesion), True-Malicious (untouched real lesion), False-Benign (a
#: real lesion removed), False-Malicious (a fake lesion injected). The other labels name our
#: attack kinds that neither add nor remove a finding.
Label = Literal[
    "TB",
    "TM",
    "FB",
    "FM",
    "copy-move",
    "splice",
    "inpaint",
    "synthetic",
    "laundering",
    "header",
]
LABELS: tuple[str, ...] = get_args(Label)

Params = dict[str, Any]

#: the local attack families every trainer and evaluation draws from by default
DEFAULT_ATTACKS: tuple[str, ...] = ("inject", "remove", "copy-move", "splice", "inpaint")


class AttackError(ValueError):
    """An attack cannot run on this input; the message says why and what to do."""


@dataclass(frozen=True)
class GroundTruth:
    """What an attack did, where.

    Attributes:
        attack: registry name of the attack.
        label: location label (see ``Label``).
        params: every parameter the attack used, JSON-serialisable; laundering steps applied
            afterwards are appended under ``"laundering"``.
        centre: ``(slice, row, col)`` of the manipulation, inside ``mask``; None for header-only
            forgeries that touch no pixel.
        mask: bool array, same shape as the pixels; True where the attack changed pixels.
            Laundering changes the whole image but leaves this mask as the attack's footprint.
    """

    attack: str
    label: Label
    params: Params
    centre: tuple[int, int, int] | None
    mask: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label {self.label!r} is not one of {', '.join(LABELS)}")
        if self.mask.dtype != np.bool_ or self.mask.ndim != 3:
            raise ValueError(
                f"mask must be a 3D bool array, got {self.mask.dtype} with shape {self.mask.shape}"
            )
        if self.centre is not None:
            inside = all(0 <= c < n for c, n in zip(self.centre, self.mask.shape, strict=True))
            if not inside or not self.mask[self.centre]:
                raise ValueError(
                    f"centre {self.centre} of attack {self.attack!r} is not in its mask"
                )
        try:
            json.dumps(self.params)
        except TypeError as exc:
            raise ValueError(
                f"params of attack {self.attack!r} are not JSON-serialisable: {exc}"
            ) from exc

    @property
    def bbox(self) -> tuple[tuple[int, int], ...] | None:
        """``((z0, z1), (y0, y1), (x0, x1))`` half-open box around the mask, None if empty."""
        if not self.mask.any():
            return None
        spans = []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            hit = np.flatnonzero(self.mask.any(axis=other))
            spans.append((int(hit[0]), int(hit[-1]) + 1))
        return tuple(spans)

    def with_params(self, **extra: Any) -> GroundTruth:
        """A copy whose params also hold ``extra``."""
        return replace(self, params={**self.params, **extra})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (the mask itself is summarised, store it separately)."""
        bbox = self.bbox
        return {
            "attack": self.attack,
            "label": self.label,
            "centre": list(self.centre) if self.centre is not None else None,
            "bbox": [list(span) for span in bbox] if bbox is not None else None,
            "mask_voxels": int(self.mask.sum()),
            "shape": list(self.mask.shape),
            "params": self.params,
        }


@dataclass(frozen=True)
class TamperResult:
    """A tampered image and its ground truth.

    Attributes:
        pixels: ``(slices, rows, cols)`` float32, same units as the input volume.
        truth: what was done, where.
    """

    pixels: np.ndarray = field(repr=False)
    truth: GroundTruth

    def __post_init__(self) -> None:
        if self.pixels.shape != self.truth.mask.shape:
            raise ValueError(
                f"pixels {self.pixels.shape} and mask {self.truth.mask.shape} differ in shape"
            )

    def as_volume(self, volume: ImageVolume) -> ImageVolume:
        """``volume`` with its pixels replaced by the tampered ones (headers untouched)."""
        return replace(volume, pixels=self.pixels, problems=list(volume.problems))


class Attack(ABC):
    """One way of tampering an image.

    Subclasses set ``name`` (the registry key), ``label`` and ``modalities`` (DICOM modality
    codes they were built for; empty means any). ``apply`` must not modify the input volume.
    """

    name: ClassVar[str] = ""
    label: ClassVar[Label] = "TB"
    modalities: ClassVar[tuple[str, ...]] = ()

    def supports(self, volume: ImageVolume) -> bool:
        return not self.modalities or volume.modality in self.modalities

    def check(self, volume: ImageVolume) -> None:
        """Raise ``AttackError`` when this attack cannot run on ``volume``."""
        if not self.supports(volume):
            raise AttackError(
                f"attack {self.name!r} works on {', '.join(self.modalities)} images, "
                f"not on {volume.modality} ({volume.input}); pick another attack"
            )

    @abstractmethod
    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        """Draw every random choice of the attack for ``volume``; JSON-serialisable."""

    @abstractmethod
    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        """Tamper a copy of ``volume`` with ``params``; ``rng`` only feeds noise synthesis."""

    def __call__(
        self, volume: ImageVolume, rng: np.random.Generator, **overrides: Any
    ) -> TamperResult:
        """Sample parameters, apply ``overrides`` on top, and apply."""
        self.check(volume)
        params = {**self.sample_params(volume, rng), **overrides}
        return self.apply(volume, params, rng)
