"""A plain splice into CT from another scan: can ``auto`` see it?

The simulator's ``splice`` pastes a phantom region and, 80 % of the time, re-synthesises its
noise to match. An attacker may do less: cut a disk of soft tissue from another patient's scan,
shift its mean to the recipient's surroundings, feather its edge (Gaussian, sigma 2 px) and
paste it, noise and all. This pastes such disks (radius 12, 20 and 30 px) into the 43 held-out
GE and LIDC slices, at a random point of soft tissue, from three donors: the Siemens B70f series
(a sharp kernel, noise several times the GE slices'), the Philips series and another GE slice.
It prints, for ``auto``, ``ct-local`` and ``noise-residual``, the AUC against the same 43
authentic slices, how many ``auto`` calls ``manipulated``, in how many one of its top-3
findings lies within 20 px of the pasted disk, and how many ``noise-residual`` calls
``manipulated`` (and of the authentic slices, on the first line). Then the other way round: a
disk of a GE slice (a soft kernel, quieter) pasted into every third slice of the Siemens B70f
series, taken one slice at a time (``ct-local`` was trained on that series, so its figures
there are in-sample).

    python benchmarks/dev_ct_splice.py [--data ../shared/data] [--seed 0]
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from dev_noise_hole import HELD_OUT, _ct, _disk, _site
from dev_recon import series
from devdata import data_parser, parse_data_args

from medforensics.detect.base import Detector
from medforensics.detect.registry import create_detector
from medforensics.evaluate import roc_auc
from medforensics.io.types import ImageVolume

RADII = (12, 20, 30)
FEATHER_PX = 2.0
MODELS = ("auto", "ct-local", "noise-residual")


def splice(
    image: np.ndarray, donor: np.ndarray, radius: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` with a feathered disk of ``donor``'s soft tissue pasted at a random point of
    its own soft tissue, the donor's mean shifted to the recipient's surroundings."""
    cy, cx = _site(image, rng, lung=False)
    dy, dx = _site(donor, rng, lung=False)
    h, w = image.shape
    shift = np.float32([[1, 0, cx - dx], [0, 1, cy - dy]])
    moved = cv2.warpAffine(
        donor, shift, (w, h), flags=cv2.INTER_NEAREST, borderValue=float(np.median(donor))
    )
    inner = _disk(image.shape, cy, cx, radius)
    ring = _disk(image.shape, cy, cx, radius + 8) & ~inner
    moved = moved - np.median(moved[inner]) + np.median(image[ring])
    alpha = cv2.GaussianBlur(inner.astype(np.float32), (0, 0), FEATHER_PX)
    return np.rint(image * (1 - alpha) + moved * alpha), (cy, cx)


def table(
    title: str,
    recipients: list[ImageVolume],
    sources: dict[str, Callable[[int], np.ndarray]],
    detectors: dict[str, Detector],
    rng: np.random.Generator,
) -> None:
    """Paste a disk of each donor into every recipient at each radius; print one row each."""
    authentic = {name: [d.detect(v).score for v in recipients] for name, d in detectors.items()}
    false_alarms = sum(
        detectors["noise-residual"].detect(v).verdict == "manipulated" for v in recipients
    )
    n = len(recipients)
    print(
        f"{title}; a feathered disk of another scan pasted in each; "
        f"noise-residual calls {false_alarms} of the authentic slices manipulated"
    )
    print(
        f"{'donor':18s} {'radius':>6s} "
        + " ".join(f"{m + ' AUC':>18s}" for m in MODELS)
        + f" {'auto manip.':>11s} {'top-3 hit':>9s} {'n-r manip.':>11s}"
    )
    labels = np.r_[np.zeros(n), np.ones(n)]
    for donor_name, donor_of in sources.items():
        for radius in RADII:
            scores: dict[str, list[float]] = {name: [] for name in MODELS}
            flagged = hits = residual_flagged = 0
            for k, volume in enumerate(recipients):
                image = volume.pixels[0].astype(np.float32)
                pixels, (cy, cx) = splice(image, donor_of(k).astype(np.float32), radius, rng)
                tampered = dataclasses.replace(volume, pixels=pixels[None])
                for name, detector in detectors.items():
                    detection = detector.detect(tampered)
                    scores[name].append(detection.score)
                    if name == "noise-residual":
                        residual_flagged += detection.verdict == "manipulated"
                    if name == "auto":
                        flagged += detection.verdict == "manipulated"
                        hits += any(
                            np.hypot(f.row - cy, f.col - cx) <= radius + 20
                            for f in detection.findings[:3]
                        )
            aucs = [roc_auc(labels, np.r_[authentic[m], scores[m]]) for m in MODELS]
            print(
                f"{donor_name:18s} {radius:6d} "
                + " ".join(f"{auc:18.3f}" for auc in aucs)
                + f" {flagged:5d}/{n:<5d} {hits:4d}/{n:<4d} {residual_flagged:5d}/{n:<5d}",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_data_args(parser, argv)
    if args is None:
        return 2
    started = time.time()
    held = _ct([str(args.data / name) for name in HELD_OUT if (args.data / name).exists()])
    whole = series(args.data)
    siemens = next((v for v in whole if "siemens" in v.input), None)
    philips = next((v for v in whole if "philips" in v.input), None)  # the first of two
    if not held or siemens is None or philips is None:
        print("needs the GE/LIDC slices and the Siemens and Philips series of the shared data")
        return 2
    detectors = {name: create_detector(name) for name in MODELS}
    rng = np.random.default_rng(args.seed)
    sources: dict[str, Callable[[int], np.ndarray]] = {
        "Siemens B70f": lambda k: siemens.pixels[5 + k % (siemens.shape[0] - 10)],
        "Philips": lambda k: philips.pixels[10 + k % (philips.shape[0] - 20)],
        "another GE slice": lambda k: held[(k + 7) % len(held)].pixels[0],
    }
    table(f"{len(held)} held-out GE/LIDC slices", held, sources, detectors, rng)
    # the other way round: a soft-kernel patch, quieter than the sharp-kernel slice around it
    # (ct-local was trained on this Siemens series: its figures here are in-sample)
    single = [
        dataclasses.replace(
            siemens,
            pixels=siemens.pixels[z : z + 1].copy(),
            positions=None,
            slices=siemens.slices[z : z + 1],
        )
        for z in range(2, siemens.shape[0] - 2, 3)
    ]
    gt = {"a GE slice": lambda k: held[k % len(held)].pixels[0]}
    print()
    table(f"{len(single)} single slices of the Siemens B70f series", single, gt, detectors, rng)
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
