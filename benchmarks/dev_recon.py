"""Authentic CT as other scanners would reconstruct it: does ``auto`` stay quiet?

The CT at hand is filtered back-projection from 2007-2012 scanners. Scanners since then use
iterative or deep-learning reconstruction, whose noise is lower and edge-preserving, and sites
choose softer or sharper kernels and lower doses. We have no such scans, so this applies
stand-ins to every authentic CT unit (``dev_lossy.units``: held-out GE single slices, LIDC,
pydicom's CTs, 8-slice chunks of the Philips and Siemens series) and prints ``auto``'s verdicts
and which part said so:

* a softer kernel: Gaussian blur, sigma 0.6 and 1.0 px;
* edge-preserving denoising, as a proxy for iterative / deep-learning reconstruction: OpenCV's
  bilateral filter (5 px, 40 HU, 3 px; and 9 px, 80 HU, 5 px) and total-variation denoising
  (scikit-image, weight 10 and 25);
* a lower dose: Gaussian noise of 10 HU added.

With ``--series`` it scores the whole Philips and Siemens series instead of the units (a
check that reads the whole series at once, such as ``copy-move``, sees more there).

Results are rounded to integers, as a scanner writes them. These are proxies: a real iterative
reconstruction shapes its noise differently, so a clean result here is necessary, not
sufficient.

    python benchmarks/dev_recon.py [--data ../shared/data] [--series]
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from dev_lossy import units
from devdata import data_parser, parse_data_args

from medforensics.detect.registry import create_detector
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume

Filter = Callable[[np.ndarray], np.ndarray]


def _gaussian(sigma: float) -> Filter:
    return lambda image: ndimage.gaussian_filter(image, sigma)


def _bilateral(diameter: int, range_hu: float, space_px: float) -> Filter:
    return lambda image: cv2.bilateralFilter(image, diameter, range_hu, space_px)


def _total_variation(weight: float) -> Filter:
    from skimage.restoration import denoise_tv_chambolle

    return lambda image: denoise_tv_chambolle(image.astype(np.float64), weight=weight)


def _noise(sigma: float) -> Filter:
    rng = np.random.default_rng(0)
    return lambda image: image + rng.normal(0.0, sigma, image.shape)


VARIANTS: dict[str, Filter | None] = {
    "as acquired": None,
    "softer kernel (blur 0.6 px)": _gaussian(0.6),
    "softer kernel (blur 1.0 px)": _gaussian(1.0),
    "bilateral 5 px / 40 HU": _bilateral(5, 40.0, 3.0),
    "bilateral 9 px / 80 HU": _bilateral(9, 80.0, 5.0),
    "TV denoising, weight 10": _total_variation(10.0),
    "TV denoising, weight 25": _total_variation(25.0),
    "lower dose (+10 HU noise)": _noise(10.0),
}


SERIES = ("cptac_lscc_C3N-00247_siemens", "lung_pet_ct_dx_A0001_philips")


def series(data: Path) -> list[ImageVolume]:
    """The whole Siemens and Philips series (one per reconstruction)."""
    return [
        volume
        for name in SERIES
        if (data / name).exists()
        for volume in load_paths([str(data / name)])
        if isinstance(volume, ImageVolume)
    ]


def processed(volume: ImageVolume, apply: Filter | None) -> ImageVolume:
    if apply is None:
        return volume
    planes = [np.rint(apply(plane.astype(np.float32))) for plane in volume.pixels]
    return dataclasses.replace(volume, pixels=np.stack(planes).astype(np.float32))


#: the notes ``auto`` adds when a training-free check raises the verdict, and the check
ESCALATIONS = {
    "carries no acquisition noise": "noise-hole",
    "little acquisition noise": "noise-hole (weak)",
    "noise level is far from the tissue": "noise-mismatch",
    "noise level differs from its surroundings": "noise-mismatch (weak)",
    "re-interpolated after reconstruction": "resampling",
    "weak interpolation trace": "resampling (weak)",
    "the DICOM header has inconsistencies": "metadata",
}


def flagged_by(notes: list[str]) -> list[str]:
    """The routed models whose own answer was not ``authentic``, and the checks that raised
    the verdict."""
    models = [
        note.split(":", 1)[0]
        for note in notes
        if ": score " in note and not note.endswith("authentic")
    ]
    checks = [name for text, name in ESCALATIONS.items() if any(text in n for n in notes)]
    return models + checks


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__)
    parser.add_argument("--series", action="store_true", help="whole series, not the units")
    args = parse_data_args(parser, argv)
    if args is None:
        return 2
    started = time.time()
    detector = create_detector("auto")
    cases = series(args.data) if args.series else units(args.data)
    what = "series" if args.series else "units"
    print(
        f"{len(cases)} authentic CT {what}; auto's verdicts and the parts that were not authentic"
    )
    print(f"{'processing':28s} {'authentic':>9s} {'inconcl.':>8s} {'manip.':>6s}  not authentic")
    for name, apply in VARIANTS.items():
        verdicts: Counter[str] = Counter()
        parts: Counter[str] = Counter()
        for volume in cases:
            detection = detector.detect(processed(volume, apply))
            verdicts[detection.verdict] += 1
            if detection.verdict != "authentic":
                parts.update(flagged_by(detection.notes))
        print(
            f"{name:28s} {verdicts['authentic']:9d} {verdicts['inconclusive']:8d} "
            f"{verdicts['manipulated']:6d}  {dict(parts) or '-'}",
            flush=True,
        )
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
