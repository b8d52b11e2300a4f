"""Authentic radiographs after the image processing a vendor or a viewer applies: does ``auto``
stay quiet?

Radiographs reach us processed: local contrast equalisation, unsharp masking (edge
enhancement), a gamma or look-up table, noise reduction. None of that is tampering, and the
benign-processing test covers only re-saves, bit depth, resizing and re-encoding. This applies
stand-ins for vendor processing to the authentic radiographs of ``dev_xr_splice.authentic``
(pydicom's CR and its JPEG 2000 copy, pynetdicom's portal image, eight phantoms) and prints
``auto``'s verdicts, authentic / inconclusive / manipulated, and which routed models said so:

* CLAHE (OpenCV, clip limit 2, 8x8 tiles) on the image scaled to 16 bits;
* unsharp masking, amount 1 at 2 px and amount 2 at 8 px;
* gamma 0.6 over the image's range;
* a mild bilateral filter (5 px, a tenth of the image's standard deviation).

    python benchmarks/dev_xr_processing.py [--data ../shared/data]
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from dev_recon import flagged_by, processed
from dev_xr_splice import authentic
from devdata import data_parser, parse_data_args

from medforensics.detect.registry import create_detector

Filter = Callable[[np.ndarray], np.ndarray]


def _clahe(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [0.5, 99.5])
    scaled = np.clip((image - low) / max(high - low, 1e-6) * 65535, 0, 65535).astype(np.uint16)
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(scaled).astype(np.float32)


def _unsharp(amount: float, sigma: float) -> Filter:
    return lambda image: image + amount * (image - ndimage.gaussian_filter(image, sigma))


def _gamma(gamma: float) -> Filter:
    def apply(image: np.ndarray) -> np.ndarray:
        low, high = float(image.min()), float(image.max())
        return ((image - low) / max(high - low, 1e-6)) ** gamma * (high - low) + low

    return apply


def _bilateral(image: np.ndarray) -> np.ndarray:
    return cv2.bilateralFilter(image, 5, float(np.std(image)) * 0.1, 3)


VARIANTS: dict[str, Filter | None] = {
    "as stored": None,
    "CLAHE": _clahe,
    "unsharp mask 1.0 / 2 px": _unsharp(1.0, 2.0),
    "unsharp mask 2.0 / 8 px": _unsharp(2.0, 8.0),
    "gamma 0.6": _gamma(0.6),
    "bilateral filter": _bilateral,
}


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__)
    args = parse_data_args(parser, argv)
    if args is None:
        return 2
    started = time.time()
    detector = create_detector("auto")
    bases = authentic(args.data)
    real = [b for b in bases if not b.input.startswith("phantom")]
    print(f"{len(real)} real radiographs and {len(bases) - len(real)} phantoms; auto's verdicts")
    print(f"{'processing':26s} {'real':>10s} {'phantoms':>10s}  not authentic")
    for name, apply in VARIANTS.items():
        counts = {True: Counter[str](), False: Counter[str]()}
        parts: Counter[str] = Counter()
        for base in bases:
            detection = detector.detect(processed(base, apply))
            counts[base in real][detection.verdict] += 1
            if detection.verdict != "authentic":
                # a single routed model (the portal image's) leaves no per-model notes
                parts.update(flagged_by(detection.notes) or [detection.detector])

        def cell(c: Counter[str]) -> str:
            return f"{c['authentic']}/{c['inconclusive']}/{c['manipulated']}"

        print(
            f"{name:26s} {cell(counts[True]):>10s} {cell(counts[False]):>10s}  "
            f"{dict(parts) or '-'}",
            flush=True,
        )
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
