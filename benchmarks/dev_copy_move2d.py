"""The training-free ``copy-move`` detector on radiographs and MR: false alarms and catches.

    python benchmarks/dev_copy_move2d.py [--twins 5] [--seed 5]

Sets (the same as ``dev_local2d.py``): MR and projection images usable for training (bundled
with software on this machine, CT projections, phantoms) and the held-out ones of
../shared/data (Colin27 T1 in 5-slice chunks; the chest CR, its lossy JPEG 2000 copy and four
1024² crops of each). For each authentic case, ``--twins`` simulator twins cycle through the
five attack families. Prints, per set, the authentic images flagged and, per attack, the twins
flagged and the AUC; the detector has nothing to train, so every set is a test set.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from dev_local2d import mr_held_out, mr_training, xr_held_out, xr_training

from medforensics.detect.clone import CopyMoveDetector
from medforensics.evaluate import compute_metrics
from medforensics.tamper.base import DEFAULT_ATTACKS
from medforensics.train.cases import make_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=5)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    started = time.time()
    detector = CopyMoveDetector()
    sets = {
        "MR, not held out": (mr_training()[0], 5),
        "MR, held out (Colin27)": (mr_held_out(), 5),
        "projection, not held out": (xr_training(np.random.default_rng(0))[0], 1),
        "CR, held out (RG1 + crops)": (xr_held_out(), 1),
    }
    total_authentic = total_flagged = 0
    for name, (volumes, chunk) in sets.items():
        cases = list(
            make_cases(volumes, DEFAULT_ATTACKS, seed=args.seed, chunk=chunk, per_chunk=args.twins)
        )
        answers = [(c.label, c.attack, detector.detect(c.volume)) for c in cases]
        authentic = [d for label, _, d in answers if label == 0]
        flagged = sum(d.verdict == "manipulated" for d in authentic)
        total_authentic += len(authentic)
        total_flagged += flagged
        print(f"{name}: authentic flagged {flagged}/{len(authentic)}")
        for attack in DEFAULT_ATTACKS:
            twins = [d for _, a, d in answers if a == attack]
            if not twins:
                continue
            labels = np.array([0] * len(authentic) + [1] * len(twins))
            scores = np.array([d.score for d in authentic + twins])
            caught = sum(d.verdict == "manipulated" for d in twins)
            auc = compute_metrics(labels, scores).roc_auc
            print(f"  {attack:<10} flagged {caught:>3}/{len(twins):<3} AUC {auc:.3f}")
    print(
        f"all sets: authentic flagged {total_flagged}/{total_authentic}; "
        f"{time.time() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
