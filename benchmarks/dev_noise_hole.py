"""The ``noise-hole`` check on real CT: authentic radii per source, and blunt edits.

1. Every slice of every authentic CT at hand (the shared data's Siemens, Philips, GE, LIDC and
   pydicom CTs, and pydicom's own CT test files): the largest noise-free disk per slice, and
   the lowest reference noise level of a measured slice (slices under ``MIN_REFERENCE`` are not
   measured). The
   largest of them all must stay below the rule's ``CLEAR_BELOW_PX`` (p = 0.01).
2. Edits on the held-out single slices (GE x 7 patients, LIDC: 43 slices), two per slice, at a
   random point of soft tissue and one of lung parenchyma, 15 px radius unless said: a flat
   fill at the surrounding median, a lesion blurred away (Gaussian, sigma 4 px), OpenCV Telea
   in-painting, a lesion-like blob painted without noise (sigma 6 px); and the simulator's
   ``inpaint`` (without and with matched noise), ``inject`` and ``remove`` (matched noise),
   one each per slice. For each: how many the check
   flags at its operating point (p >= 0.5), and the ROC-AUC against the same authentic slices.

    python benchmarks/dev_noise_hole.py [--data ../shared/data] [--seed 0]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from devdata import data_parser, parse_data_args

from medforensics.detect.masks import foreground_mask
from medforensics.detect.noise_hole import (
    CLEAR_BELOW_PX,
    NoiseHoleDetector,
    probability,
)
from medforensics.evaluate import roc_auc
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.tamper.registry import simulate

SOURCES = (
    "cptac_lscc_C3N-00247_siemens",
    "lung_pet_ct_dx_A0001_philips",
    "covid19_ny_sbu_ct_slices",
    "lidc_idri_0002_single_slice",
    "pydicom_data_samples",
)
HELD_OUT = ("covid19_ny_sbu_ct_slices", "lidc_idri_0002_single_slice")
PYDICOM_CT = ("CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm")
RADIUS = 15


def _ct(paths: list[str]) -> list[ImageVolume]:
    return [v for v in load_paths(paths) if isinstance(v, ImageVolume) and v.modality == "CT"]


def _site(image: np.ndarray, rng: np.random.Generator, lung: bool) -> tuple[int, int]:
    """A random point of tissue (lung parenchyma when ``lung``) at least 40 px from the border."""
    body = foreground_mask(image, "CT")
    inner = body & ((image > -950) & (image < -500) if lung else image > -500)
    inner[:40], inner[-40:], inner[:, :40], inner[:, -40:] = False, False, False, False
    ys, xs = np.nonzero(inner if inner.any() else body)
    k = int(rng.integers(len(ys)))
    return int(ys[k]), int(xs[k])


def _disk(shape: tuple[int, ...], cy: int, cx: int, r: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return np.asarray((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)


def flat_fill(image: np.ndarray, cy: int, cx: int) -> np.ndarray:
    out = image.copy()
    hole = _disk(image.shape, cy, cx, RADIUS)
    ring = _disk(image.shape, cy, cx, RADIUS + 10) & ~hole
    out[hole] = np.median(image[ring])
    return out


def blur_away(image: np.ndarray, cy: int, cx: int) -> np.ndarray:
    out = image.copy()
    hole = _disk(image.shape, cy, cx, RADIUS)
    out[hole] = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 4.0)[hole]
    return np.rint(out)


def telea(image: np.ndarray, cy: int, cx: int) -> np.ndarray:
    hole = _disk(image.shape, cy, cx, RADIUS)
    low = float(image.min())
    stored = np.clip(image - low, 0, 65535).astype(np.uint16)
    filled = cv2.inpaint(stored, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    out = image.copy()
    out[hole] = filled[hole].astype(np.float32) + low
    return out


def blob(image: np.ndarray, cy: int, cx: int) -> np.ndarray:
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    weight = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2))
    return np.rint(image * (1 - weight) + 40.0 * weight)


BLUNT: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "flat fill": flat_fill,
    "blurred away": blur_away,
    "Telea in-painting": telea,
    "noise-free blob": blob,
}
SIMULATED = {
    "inpaint, no noise": ("inpaint", {"add_noise": False}),
    "inpaint, matched noise": ("inpaint", {"add_noise": True}),
    "inject (matched noise)": ("inject", {}),
    "remove (matched noise)": ("remove", {}),
}


def authentic_radii(data: Path) -> float:
    detector = NoiseHoleDetector()
    largest = 0.0
    print("1. authentic CT: largest noise-free disk per slice (px)")
    print(
        f"   {'source':38s} {'slices':>6s} {'measured':>8s} {'max':>5s} {'>= 6 px':>7s} "
        f"{'min noise (HU)':>14s}"
    )
    import pydicom.data

    pyd = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
    groups = [(s, [str(data / s)]) for s in SOURCES if (data / s).exists()]
    groups += [(f"pydicom test file {n}", [str(pyd / n)]) for n in PYDICOM_CT]
    for label, paths in groups:
        volumes = _ct(paths)
        holes = [h for v in volumes for h in detector.holes(v)]
        radii = [h.radius for h in holes]
        noise = min((h.reference for h in holes), default=float("nan"))
        slices = sum(v.shape[0] for v in volumes)
        top = max(radii) if radii else float("nan")
        if radii and "693_J2KI" not in label:  # lossy 338:1, auto's compression check
            largest = max(largest, top)
        count = sum(r >= 6 for r in radii)
        print(f"   {label:38s} {slices:6d} {len(radii):8d} {top:5.1f} {count:7d} {noise:14.1f}")
    print(f"   largest over the authentic CT (the lossy 693_J2KI left out): {largest:.1f} px;")
    print(f"   the rule gives p = 0.01 at CLEAR_BELOW_PX = {CLEAR_BELOW_PX:g} px")
    return largest


def edits(data: Path, seed: int) -> None:
    detector = NoiseHoleDetector()
    units = _ct([str(data / s) for s in HELD_OUT if (data / s).exists()])
    rng = np.random.default_rng(seed)
    authentic = [detector.detect(v).score for v in units]
    flagged = sum(s >= 0.5 for s in authentic)
    print(f"\n2. held-out single slices: {len(units)} authentic, {flagged} flagged")
    print(f"   {'edit':34s} {'flagged':>9s} {'AUC':>6s} {'median radius':>14s}")
    rows: dict[str, list[tuple[float, float]]] = {}
    for k, volume in enumerate(units):
        for where in ("soft tissue", "lung"):
            cy, cx = _site(volume.pixels[0], rng, lung=where == "lung")
            for name, edit in BLUNT.items():
                pixels = edit(volume.pixels[0].astype(np.float32), cy, cx)[None]
                holes = detector.holes(dataclasses.replace(volume, pixels=pixels))
                radius = max((h.radius for h in holes), default=0.0)
                rows.setdefault(f"{name}, {where}", []).append((probability(radius), radius))
        for name, (attack, overrides) in SIMULATED.items():
            result = simulate(volume, attack, seed=[seed, k], **overrides)
            holes = detector.holes(dataclasses.replace(volume, pixels=result.pixels))
            radius = max((h.radius for h in holes), default=0.0)
            rows.setdefault(name, []).append((probability(radius), radius))
    for name, values in rows.items():
        scores = np.array([v[0] for v in values])
        labels = np.r_[np.zeros(len(authentic)), np.ones(len(scores))]
        auc = roc_auc(labels, np.r_[authentic, scores])
        hit = int((scores >= 0.5).sum())
        radius = float(np.median([v[1] for v in values]))
        print(f"   {name:34s} {hit:4d}/{len(scores):<4d} {auc:6.3f} {radius:14.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_data_args(parser, argv)
    if args is None:
        return 2
    started = time.time()
    authentic_radii(args.data)
    edits(args.data, args.seed)
    print(f"\n{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
