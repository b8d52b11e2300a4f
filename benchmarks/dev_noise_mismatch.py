"""The ``noise-mismatch`` rule's anchors: its statistic on authentic CT, and on plain splices.

1. Every authentic CT unit of ``dev_lossy.py`` (held-out GE and LIDC slices, pydicom's CTs,
   8-slice chunks of the Philips and Siemens series) and the three whole Philips and Siemens
   series, as acquired and under ``dev_recon.py``'s stand-ins for other reconstructions: the
   largest statistic (``noise_residual.tile_statistics(...).normalised_max``) and how many the
   rule calls ``manipulated`` or ``inconclusive`` (``not assessed``: lossy-compressed pixels or
   too few tiles; ``auto`` then ignores the rule). The rule's ``CLEAR_BELOW`` must not be below
   the largest of these.
2. ``dev_ct_splice.py``'s plain splices (a feathered disk of another patient's CT, its own
   noise) in the 43 held-out GE and LIDC slices: the statistic's quartiles and the verdicts.

    python benchmarks/dev_noise_mismatch.py [--data ../shared/data] [--seed 0]
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from dev_ct_splice import RADII, splice
from dev_lossy import units
from dev_noise_hole import HELD_OUT, _ct
from dev_recon import VARIANTS, processed, series
from devdata import data_parser, parse_data_args

from medforensics.detect.noise_mismatch import CLEAR_BELOW, NoiseMismatchDetector
from medforensics.detect.noise_residual import tile_statistics


def statistic(volume: object) -> float:
    return tile_statistics(volume, 16, radiograph=False).normalised_max  # type: ignore[arg-type]


def verdict(detector: NoiseMismatchDetector, volume: object) -> str:
    detection = detector.detect(volume)  # type: ignore[arg-type]
    assessed = not (detection.score == 0.5 and not detection.findings)
    return detection.verdict if assessed else "not assessed"


def counts(verdicts: Counter[str]) -> str:
    return " / ".join(
        f"{verdicts[v]:2d}" for v in ("authentic", "inconclusive", "manipulated", "not assessed")
    )


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_data_args(parser, argv)
    if args is None:
        return 2
    started = time.time()
    detector = NoiseMismatchDetector()
    whole = series(args.data)
    cases = units(args.data) + whole
    print(
        f"1. {len(cases)} authentic CT units and series "
        "(authentic / inconclusive / manipulated / not assessed)"
    )
    largest = 0.0
    for name, apply in VARIANTS.items():
        values, verdicts = [], Counter[str]()
        for volume in cases:
            changed = processed(volume, apply)
            values.append(statistic(changed))
            verdicts[verdict(detector, changed)] += 1
        top = float(np.nanmax(values))
        largest = max(largest, top)
        print(f"   {name:28s} largest {top:5.2f}  {counts(verdicts)}")
    print(f"   largest of all: {largest:.2f}; the rule's CLEAR_BELOW (p = 0.01): {CLEAR_BELOW:g}")
    held = _ct([str(args.data / name) for name in HELD_OUT if (args.data / name).exists()])
    siemens = next(v for v in whole if "siemens" in v.input)
    philips = next(v for v in whole if "philips" in v.input)
    donors = {
        "Siemens B70f": lambda k: siemens.pixels[5 + k % (siemens.shape[0] - 10)],
        "Philips": lambda k: philips.pixels[10 + k % (philips.shape[0] - 20)],
        "another GE slice": lambda k: held[(k + 7) % len(held)].pixels[0],
    }
    rng = np.random.default_rng(args.seed)
    print(f"\n2. plain splices into the {len(held)} held-out slices (as dev_ct_splice.py)")
    for donor, donor_of in donors.items():
        for radius in RADII:
            values, verdicts = [], Counter[str]()
            for k, volume in enumerate(held):
                pixels, _ = splice(
                    volume.pixels[0].astype(np.float32), donor_of(k).astype(np.float32), radius, rng
                )
                tampered = dataclasses.replace(volume, pixels=pixels[None])
                values.append(statistic(tampered))
                verdicts[verdict(detector, tampered)] += 1
            q1, q2, q3 = np.nanpercentile(values, [25, 50, 75])
            print(
                f"   {donor:18s} r={radius:2d}: quartiles {q1:5.2f} {q2:5.2f} {q3:5.2f}  "
                f"{counts(verdicts)}"
            )
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
