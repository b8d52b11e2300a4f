"""``copy-move`` where noise patterns repeat by chance: how many votes does chance give one
displacement, and how many does a real copy?

Acquired noise never repeats (0.1 % of keypoints at most), but smoothing, denoising, 8-bit
export and lossy coding make some residual patterns repeat, and then two or three chance votes
can fall on one displacement near each other. This scores authentic images under benign
processing (``dev_recon``'s stand-ins on every CT unit of ``dev_lossy`` and on the whole
Philips and Siemens series; the radiographs and MR of ``dev_lossy --xr-mr`` as they are and as
JPEG 95 and 75; 12-bit phantom radiographs and their 8-bit exports) and prints, per band of the
chance-repeat share, how many ``copy-move`` flags and the most votes any believed transform
gathered (``clone.coherent`` with ``min_votes=2``: the chance votes). Then it copies squares of
12, 20 and 40 px within a slice of the Philips series, as acquired and after TV denoising, and
prints the copies' votes and verdicts.

    python benchmarks/dev_copy_move_chance.py [--data ../shared/data]
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from dev_lossy import as_jpeg, phantom_radiograph, units, xr_mr_units
from dev_recon import VARIANTS, processed, series
from devdata import data_parser, parse_data_args

from medforensics.detect.clone import QUIET_CHANCE, CopyMoveDetector, coherent
from medforensics.detect.copy_move import KeypointTable
from medforensics.detect.features import slice_keypoints
from medforensics.io.types import ImageVolume

BANDS = ((0.0, 0.001), (0.001, QUIET_CHANCE), (QUIET_CHANCE, 0.05), (0.05, 1.0))


@dataclasses.dataclass
class Measured:
    chance: float  # share of keypoints outside believed copies that repeat somewhere
    votes: list[int]  # votes of each believed transform at min_votes=2, largest first
    verdict: str


def measure(detector: CopyMoveDetector, volume: ImageVolume) -> Measured:
    table = KeypointTable(volume.shape[2])
    measured = []
    for z in range(volume.shape[0]):
        measured.append(slice_keypoints(volume.pixels[z], volume.modality))
        table.add(measured[-1])
    per_slice, votes = coherent(measured, table.duplicated())
    count = sum(len(found) for found in per_slice)
    chance = table.chance_repeats(count) if count else 0.0
    return Measured(chance, votes, detector.detect(volume).verdict)


def authentic(data: Path) -> list[tuple[str, ImageVolume]]:
    ct = units(data) + series(data)
    cases = [(name, processed(v, apply)) for name, apply in VARIANTS.items() for v in ct]
    for v in xr_mr_units(data):
        cases += [("radiograph/MR", v)]
        cases += [(f"radiograph/MR, JPEG {q}", as_jpeg(v, q)) for q in (95, 75)]
    for seed in range(6):
        for size in (512, 1024):
            phantom = phantom_radiograph(size, seed, f"phantom {seed}")
            cases.append(("phantom radiograph", phantom))
            eight_bit = np.floor(phantom.pixels / 16)
            cases.append(
                ("phantom radiograph, 8-bit", dataclasses.replace(phantom, pixels=eight_bit))
            )
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = data_parser(__doc__)
    args = parse_data_args(parser, argv)
    if args is None:
        return 2
    started = time.time()
    detector = CopyMoveDetector()
    results = [(label, measure(detector, v)) for label, v in authentic(args.data)]
    print(f"1. {len(results)} authentic images under benign processing")
    print(
        f"   {'chance-repeat share':22s} {'images':>6s} {'manipulated':>11s} "
        f"{'most chance votes':>17s}"
    )
    for low, high in BANDS:
        band = [m for _, m in results if low <= m.chance < high]
        flagged = sum(m.verdict == "manipulated" for m in band)
        most = max((max(m.votes, default=0) for m in band), default=0)
        print(f"   [{low:.3f}, {high:.3f}){'':6s} {len(band):6d} {flagged:11d} {most:17d}")
    for label, m in results:
        if m.votes:
            print(f"   {label}: chance {m.chance:.3f}, votes {m.votes[:6]}, {m.verdict}")
    philips = [v for v in series(args.data) if "philips" in v.input]
    if philips:
        print("\n2. squares copied within slice 30 of the Philips series (200,300) -> (250,150)")
        source = philips[0]
        for name in ("as acquired", "TV denoising, weight 25"):
            base = processed(source, VARIANTS[name])
            for size in (12, 20, 40):
                pixels = base.pixels.copy()
                pixels[30, 250 : 250 + size, 150 : 150 + size] = pixels[
                    30, 200 : 200 + size, 300 : 300 + size
                ]
                m = measure(detector, dataclasses.replace(base, pixels=pixels))
                print(
                    f"   {name:24s} {size:3d} px: chance {m.chance:.3f}, votes {m.votes[:4]}, "
                    f"{m.verdict}"
                )
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
