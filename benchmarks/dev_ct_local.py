"""Cross-scanner check of ``ct-local`` on ../shared/data: train on some scanners, test on another.

    python benchmarks/dev_ct_local.py --test-scanner GE --out /tmp/ct-local-xs.pt

Trains with ``train_ct_local`` on every CT volume whose scanner does not match ``--test-scanner``,
then scores authentic chunks and simulator twins (fresh seeds) of the held-out scanner's volumes.
Prints series-level AUC per attack, FPR/TPR at the shipped threshold and the top-3 hit rate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from medforensics.detect.local import LocalDetector, volume_logits
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.train.cases import make_cases, scanner_key
from medforensics.train.local import LocalTrainConfig
from medforensics.train.pipeline import (
    CHUNK,
    DEFAULT_ATTACKS,
    score_cases,
    summarise,
    train_ct_local,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CT_SOURCES = (
    "cptac_lscc_C3N-00247_siemens",
    "lung_pet_ct_dx_A0001_philips",
    "covid19_ny_sbu_ct_slices",
    "lidc_idri_0002_single_slice",
)


def load_ct(data: Path) -> list[ImageVolume]:
    volumes = []
    for name in CT_SOURCES:
        for item in load_paths([data / name]):
            if isinstance(item, ImageVolume) and item.modality == "CT" and item.shape[1] >= 256:
                volumes.append(item)
    return volumes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--test-scanner", default="GE", help="substring of 'Manufacturer Model'")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ct-local-xs.pt"))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    volumes = load_ct(args.data)
    test = [v for v in volumes if args.test_scanner.lower() in scanner_key(v).lower()]
    train = [v for v in volumes if args.test_scanner.lower() not in scanner_key(v).lower()]
    print(f"train: {sorted({scanner_key(v) for v in train})} ({len(train)} volumes)")
    print(f"test:  {sorted({scanner_key(v) for v in test})} ({len(test)} volumes)")
    started = time.time()
    if not args.eval_only:
        config = LocalTrainConfig(rounds=args.rounds, steps_per_round=args.steps, seed=args.seed)
        result = train_ct_local(train, args.out, config, progress=print)
        print("validation:", json.dumps(result.meta["validation"], indent=1))
        print(f"trained in {time.time() - started:.0f} s")
    detector = LocalDetector(checkpoint=args.out)
    cases = list(make_cases(test, DEFAULT_ATTACKS, seed=777, chunk=CHUNK, per_chunk=5))

    def statistic(volume: ImageVolume) -> float:
        return detector.statistic(volume)

    def peaks(volume: ImageVolume) -> list[tuple[int, int, int]]:
        logits, cells = volume_logits(detector.net, detector.filters, volume)
        return LocalDetector.peak_cells(logits, cells, 3)

    scored = score_cases(statistic, cases, peaks)
    probs = detector.calibration(np.array([s.statistic for s in scored]))
    report = summarise(scored, probs, detector.operating_point.manipulated_at)
    print("held-out scanner:", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
