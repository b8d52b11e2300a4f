"""``noise-hole``: a region of CT tissue without acquisition noise (training-free).

Why it works. Every pixel of a reconstructed CT carries quantum noise: a few to tens of HU in
soft tissue, fat and lung, on every scanner and kernel. A painted region does not, unless the
attacker synthesised noise for it: a flat or median fill, a blurred-away lesion, classical
in-painting (OpenCV's Telea or Navier-Stokes), a generator's smooth output pasted in. So a
compact patch of tissue whose pixels vary far less from their neighbours than the tissue around
it is evidence of an edit that no scanner makes, whatever the scanner. It says nothing about an
edit that carries matched noise (the simulator's careful attacks, for which ``ct-local`` is
trained).

What is computed, per slice:

1. the noise residual: each pixel's distance from a 5x5 quadratic fit (Savitzky-Golay), which
   leaves nothing of anatomy that is smooth to second order (a painted gradient, a blurred
   edge, a bump) and most of the noise; its mean in 2x2 cells, then over ``WINDOW`` cells (8 px);
2. tissue cells: inside the body, mean above ``AIR_HU`` (air's noise is clipped and filtered
   away by some writers), no pixel at or below ``CT_FLOOR_HU`` or at the slice's minimum or
   maximum (clipped values: bone or metal, a display window's floor in a windowed export),
   ``MARGIN`` cells from anything else;
3. a reference level per tissue class, the median over its cells: soft tissue, and lung
   parenchyma (below ``LUNG_HU``), whose vessels give it more fine structure;
4. a residual is *near zero* below ``SMALL`` of its class's reference (or ``ROUNDING``): about
   1 in 8 acquired pixels; a window is a hole when more than ``HOLE_SHARE`` of its residuals are;
5. the radius of the largest disk that fits in the holes (a distance transform). Thin strips
   and specks give a few pixels, a painted disk of radius r about r - 4. Holes that reach the
   image's edge are padding outside the reconstruction circle and are left out.

A slice whose reference is below ``MIN_REFERENCE`` (noise near the rounding floor), or whose
holes away from its largest one cover more than ``MAX_SCATTERED_SHARE`` of its tissue or number
more than ``MAX_OTHER_HOLES`` (smoothed throughout, not edited in one place), is not measured,
and lossy-compressed pixels (``compression``: declared, or JPEG 2000's trace) are not assessed
at all: compression takes the noise out of flat tissue. The volume's
evidence is its largest radius; the ``MAX_FINDINGS`` largest holes are ``local`` findings.

Score. A stated rule, as for the other training-free checks: ``CALIBRATION`` maps the radius to
a probability, p = 0.01 at ``CLEAR_BELOW_PX`` and 0.5 at ``MIDDLE_PX``. No measured slice of
the authentic CT at hand has any hole (``python benchmarks/dev_noise_hole.py``: 222 of 224
slices measured, largest radius 0 px), so the anchor is a stated margin: a Laplacian residual,
tried first (the script at commit a9e01b8), gave a Toshiba head CT a 4.5 px hole. On the GE
and LIDC slices the rule flags a flat fill in 42-43 of 43, a lesion blurred away in 41-42 of
43, OpenCV in-painting in 9-14 of 43, and none of the simulator's noise-matched attacks, as
expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from medforensics.detect.base import Detector
from medforensics.detect.compression import Compression, assess
from medforensics.detect.masks import foreground_mask
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import ImageVolume

#: cell side (px) the residual is averaged over before the window
CELL = 2
#: window, in cells, the local noise level is averaged over
WINDOW = 4
#: a residual is near zero below this share of the slice's reference level (acquired noise:
#: about 1 in 8 pixels), or below ROUNDING, whichever is larger
SMALL = 0.15
#: residuals of integer rounding alone reach this (their mean is about 0.2): smaller ones are
#: no evidence either way
ROUNDING = 0.625
#: a window is a hole when more than this share of its residuals are near zero
HOLE_SHARE = 0.6
#: CT pixels at or below this HU are not tissue to measure (air is often clipped)
CT_FLOOR_HU = -990.0
#: cells kept away from the edge of the measured tissue (windows must not straddle it)
MARGIN = 2
#: CT cells whose mean is below this HU are air (sinuses, airways, bowel gas), not measured:
#: reconstruction and clipping make its noise unreliable
AIR_HU = -950.0
#: CT cells whose mean is below this HU are lung, measured against the lung's own level
LUNG_HU = -500.0
#: cells a tissue class needs for a reference level of its own (else the other class's)
MIN_CLASS = 100
#: a slice whose reference mean |residual| (HU) is below this has noise too near the rounding
#: floor to tell a hole from chance (very soft kernels: a Toshiba head CT and a Siemens B30s
#: neck CT; the measured CT at hand has 3.1 and more, ``dev_noise_hole.py``; near the floor an
#: edge-preserving filter makes chance holes): nothing to measure
MIN_REFERENCE = 2.0
#: a slice whose holes away from its largest one cover more than this share of its tissue was
#: smoothed throughout (edge-preserving denoising, strong iterative reconstruction), not edited
#: in one place; the edit itself may be large (the demo's splice is 6-8 % of a 256² phantom's
#: tissue): only holes farther than ``EDIT_REACH`` from the largest count
MAX_SCATTERED_SHARE = 0.05
#: cells around the largest hole that still belong to the same edit (a vessel or a seam can
#: split one painted region in two)
EDIT_REACH = 8
#: a slice with more holes than this away from its largest one was smoothed throughout too:
#: an edge-preserving filter (a proxy for iterative or deep-learning reconstruction, which we
#: have no scans of) leaves many small holes across the flat organs, where acquired tissue has
#: none (``dev_noise_hole.py``) and an edit leaves one in one place; without this rule a mild
#: bilateral filter or TV denoising made ``auto`` call 14 and 12 of 51 authentic CT units
#: manipulated (``benchmarks/dev_recon.py`` at commit 148f756; 0 and 1 with it)
MAX_OTHER_HOLES = 3
#: fewer tissue cells than this and the slice is not measured
MIN_CELLS = 400
#: smallest in-plane side measured
MIN_SIDE = 64
#: findings reported at most
MAX_FINDINGS = 4
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
#: 5-tap quadratic Savitzky-Golay smoothing filter
_QUADRATIC = np.array([-3.0, 12.0, 17.0, 12.0, -3.0], dtype=np.float32) / 35.0
#: radius (px) that gets p = 0.5; CALIBRATION's slope puts p = 0.01 at CLEAR_BELOW_PX
MIDDLE_PX = 8.0
#: p = 0.01 here: a stated margin (no authentic slice at hand has a hole; a Laplacian residual,
#: tried first at commit a9e01b8, gave a Toshiba head CT 4.5 px)
CLEAR_BELOW_PX = 4.5
CALIBRATION = (math.log(99.0) / (MIDDLE_PX - CLEAR_BELOW_PX), MIDDLE_PX)
OPERATING_POINT = OperatingPoint(manipulated_at=0.5, authentic_below=0.2)


@dataclass(frozen=True)
class Hole:
    """The largest noise-free disk of one slice."""

    slice: int
    row: int
    col: int
    radius: float  # px
    share: float  # share of near-zero residuals around the hole's centre
    reference: float  # the slice's reference mean |residual| (HU)


def slice_hole(image: np.ndarray, z: int = 0) -> Hole | None:
    """The largest hole of one CT slice (HU), or ``None`` when the slice cannot be measured.

    A slice with tissue but no hole gives a ``Hole`` of radius 0.
    """
    x = np.asarray(image, dtype=np.float32)
    h, w = x.shape
    if min(h, w) < MIN_SIDE:
        return None
    hc, wc = h // CELL, w // CELL
    x = x[: hc * CELL, : wc * CELL]
    # OpenCV for the pixel-sized work: the quadratic fit, exact 2x2 means (area
    # resize by a whole factor) and box filters, several times faster than numpy and scipy
    residual = _residual(x)
    cells = cv2.resize(residual, (wc, hc), interpolation=cv2.INTER_AREA)
    means = cv2.resize(x, (wc, hc), interpolation=cv2.INTER_AREA)
    # clipped values carry no noise: the slice's extremes (bone or metal at the top, a display
    # window's floor in a windowed export) and, in CT, air near -1000 HU
    top, bottom = float(x.max()), float(x.min())
    floor = max(CT_FLOOR_HU, bottom)
    usable = (_cells(x, np.minimum) > floor) & (_cells(x, np.maximum) < top)
    usable &= means > AIR_HU
    body = foreground_mask(means, "CT")
    tissue = (usable & body).view(np.uint8)
    tissue = cv2.erode(
        tissue, _CROSS, iterations=MARGIN, borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    tissue = tissue.view(bool)
    if int(tissue.sum()) < MIN_CELLS:
        return None
    # lung parenchyma carries more fine structure than soft tissue: each class is measured
    # against its own reference level
    level = cv2.blur(cells, (WINDOW, WINDOW), borderType=cv2.BORDER_REPLICATE)
    lung = means < LUNG_HU
    references = [
        float(np.median(level[tissue & part])) if int((tissue & part).sum()) >= MIN_CLASS else None
        for part in (~lung, lung)
    ]
    reference = references[0] if references[0] is not None else references[1]
    if reference is None or reference < MIN_REFERENCE:
        return None
    share = np.zeros(cells.shape, dtype=np.float32)
    for part, ref in zip((~lung, lung), references, strict=True):
        if not (part & tissue).any():
            continue
        small = (residual < max(ROUNDING, SMALL * (reference if ref is None else ref))).astype(
            np.float32
        )
        share[part] = cv2.resize(small, (wc, hc), interpolation=cv2.INTER_AREA)[part]
    share = np.asarray(cv2.blur(share, (WINDOW, WINDOW), borderType=cv2.BORDER_REPLICATE))
    holes = tissue & (share > HOLE_SHARE)
    if holes.any():
        # a flat region reaching the image's edge is padding outside the reconstruction
        # circle (some writers pad with a tissue-like value), not an edit inside the body
        labels, _ = ndimage.label(holes)
        edge = np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        holes &= ~np.isin(labels, edge[edge > 0])
    if not holes.any():
        return Hole(z, h // 2, w // 2, 0.0, 0.0, reference)
    scattered, others = _scattered(holes, labels)
    if scattered > MAX_SCATTERED_SHARE * tissue.sum() or others > MAX_OTHER_HOLES:
        return None
    depth = ndimage.distance_transform_edt(holes)
    r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return Hole(
        slice=z,
        row=int(r * CELL + CELL // 2),
        col=int(c * CELL + CELL // 2),
        radius=float(depth[r, c]) * CELL,
        share=float(share[r, c]),
        reference=reference,
    )


def _scattered(holes: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """Hole cells farther than ``EDIT_REACH`` cells from the largest hole, and the number of
    holes they belong to (``labels``: the connected components of the holes, or of a superset
    of them)."""
    sizes = np.bincount(labels[holes])
    sizes[0] = 0
    largest = (labels == int(np.argmax(sizes))) & holes
    reach = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDIT_REACH + 1,) * 2)
    near = cv2.dilate(largest.view(np.uint8), reach).view(bool)
    away = holes & ~near
    return int(away.sum()), len(np.unique(labels[away]))


def _residual(x: np.ndarray) -> np.ndarray:
    """``|x - fit|``, the fit a 5x5 quadratic one (Savitzky-Golay, separable): anatomy that
    is smooth to second order (a painted gradient, a blurred edge, a bump) leaves nothing."""
    fit = cv2.sepFilter2D(x, cv2.CV_32F, _QUADRATIC, _QUADRATIC, borderType=cv2.BORDER_REPLICATE)
    return np.abs(x - fit)


def _cells(a: np.ndarray, op: np.ufunc) -> np.ndarray:
    """``op`` reduced over each CELL x CELL block of ``a`` (strided views: a reshape and a
    reduction over two axes took four times as long)."""
    out = a[0::CELL, 0::CELL].copy()
    for dy in range(CELL):
        for dx in range(CELL):
            if dy or dx:
                op(out, a[dy::CELL, dx::CELL], out=out)
    return out


def probability(radius: float) -> float:
    """The rule-based probability of an edit for a hole of ``radius`` px."""
    slope, middle = CALIBRATION
    z = slope * (radius - middle)
    return float(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))


@register_detector
class NoiseHoleDetector(Detector):
    """Compact CT tissue regions without acquisition noise (training-free)."""

    name = "noise-hole"
    modalities = ("CT",)

    def __init__(self) -> None:
        self.operating_point = OPERATING_POINT

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "method": "largest disk of CT tissue where most noise residuals are near zero "
            "(training-free)",
            "score_rule": f"p = 0.01 at {CLEAR_BELOW_PX:g} px (a margin: 0 px on the authentic CT "
            "at hand), "
            f"0.5 at {MIDDLE_PX:g} px",
        }

    def holes(self, volume: ImageVolume) -> list[Hole]:
        """Every measurable slice's largest hole."""
        found = []
        for z in range(volume.shape[0]):
            hole = slice_hole(volume.pixels[z], z)
            if hole is not None:
                found.append(hole)
        return found

    def detect(self, volume: ImageVolume, compression: Compression | None = None) -> Detection:
        """``compression``: the evidence when the caller has it already (``auto`` does)."""
        if volume.modality != "CT":
            return Detection.not_assessed(self.name, f"{volume.modality} is not CT")
        compression = compression or assess(volume)
        if compression.declared or compression.wavelet_trace:
            # lossy coding zeroes the finest noise in flat tissue: holes everywhere
            return Detection.not_assessed(
                self.name,
                "lossy-compressed pixels (" + "; ".join(compression.reasons()) + "): "
                "compression removes noise from flat tissue, so a noise-free region proves nothing",
            )
        holes = self.holes(volume)
        if not holes:
            return Detection.not_assessed(
                self.name,
                "no slice has enough tissue with noise above the value grid to look for holes",
            )
        ranked = sorted(holes, key=lambda hole: -hole.radius)
        score = probability(ranked[0].radius)
        findings = [
            Finding(
                kind="local",
                score=round(probability(hole.radius), 4),
                slice=hole.slice,
                row=hole.row,
                col=hole.col,
                radius=hole.radius,
                detail=f"tissue without acquisition noise over a disk of {hole.radius:.0f} px "
                f"({hole.share:.0%} of its residuals near zero, about 12 % in acquired tissue): "
                "painted, smoothed or in-painted pixels; a scanner leaves noise everywhere",
            )
            for hole in ranked[:MAX_FINDINGS]
            if hole.radius > 0
        ]
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.operating_point.verdict(score),
            findings=findings,
            notes=[
                f"largest noise-free disk {ranked[0].radius:.0f} px over {len(holes)} measured "
                f"slice(s) of {volume.shape[0]}"
            ],
        )


__all__ = ["CALIBRATION", "Hole", "NoiseHoleDetector", "probability", "slice_hole"]
