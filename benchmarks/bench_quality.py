"""Quality and speed side by side on held-out GE CT: shipped detectors and baselines trained here.

    python benchmarks/bench_quality.py [--quick] [--data ../shared/data] [--seed 0]
        [--densenet-steps N] [--no-retrain-classical] [--out benchmarks/out/bench_quality.json]

Training data (for the models trained in this run): the Siemens and Philips series of
../shared/data (cptac_lscc_C3N-00247_siemens, lung_pet_ct_dx_A0001_philips) cut into 5-slice
chunks, each with one simulator twin per CT attack; every third chunk (with its twins) is
validation (Platt scaling, 1 % FPR operating point). Trained here:

- ``patch-cascade``: patch classifier → heatmap → texture features → PCA + SVM
  (``medforensics.detect.patch_cascade``);
- ``densenet121-slice``: MONAI DenseNet121 whole-slice classifier (the seed project's
  approach), a few optimiser steps of ``global_net.train_global``;
- ``classical (this run)``: the classical baseline retrained on the same cases (the shipped one
  also saw GE patients), unless ``--no-retrain-classical``.

Shipped models (trained earlier, see their cards): ``auto`` (the scan default), ``ct-local``,
``classical``, ``noise-residual``.

Test data, never trained on: the GE single slices (covid19_ny_sbu_ct_slices, 7 patients, and
lidc_idri_0002_single_slice), each authentic and with one simulator twin per attack (inject,
remove, copy-move, splice, inpaint; seed fixed). One table: series-level ROC-AUC overall and per
attack, TPR at 1 % FPR on the test set, FPR at the model's own threshold, and ``detect()``
slices/s on these 512² single slices, 2 threads. Always exits 0 (a report, not a target); with
no ../shared/data (CI) it says so and skips.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dev_classical import (  # noqa: E402  (a sibling script, found through sys.path)
    ATTACKS,
    GE,
    PHILIPS,
    SIEMENS,
    grouped_cases,
    load,
    split_groups,
)

LIDC = "lidc_idri_0002_single_slice"
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
DEFAULT_OUT = HERE / "out" / "bench_quality.json"
#: the patch-cascade model trained here, for bench_detect's speed and memory table
PATCH_CASCADE_MODEL = HERE / "out" / "patch-cascade.json"
THREADS = 2
CHUNK = 5
#: seed of the held-out test twins (fixed, whatever --seed trains with)
TEST_SEED = 777
DENSENET_BATCH = 8
#: speed: best of SPEED_PASSES passes of detect() over the first SPEED_SLICES test slices
SPEED_SLICES, SPEED_PASSES = 16, 3
SHIPPED = ("auto", "ct-local", "classical", "noise-residual")
#: what the shipped models were fitted on (from their model cards), for the table
SHIPPED_ON = {
    "auto": "shipped: ct-local + copy-move",
    "ct-local": "shipped: Sie+Phi; op. point refit w/ GE",
    "classical": "shipped: Sie+Phi + 70% of GE patients",
    "noise-residual": "shipped: Platt fit incl. GE",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Row:
    """One model's line of the table (and of the JSON ``rows``)."""

    model: str
    trained_on: str
    status: str = "ok"
    cases: int = 0
    auc: float | None = None
    auc_ci95_by_patient: list[float | None] = field(default_factory=list)
    per_attack_auc: dict[str, float | None] = field(default_factory=dict)
    tpr_at_fpr_1pct: float | None = None
    fpr_at_threshold: float | None = None
    tpr_at_threshold: float | None = None
    slices_per_s: float | None = None
    train_s: float | None = None
    notes: list[str] = field(default_factory=list)


# --- training -----------------------------------------------------------------------------


def train_patch_cascade_here(train: Sequence, val: Sequence, seed: int) -> Any:
    from medforensics.detect.patch_cascade import PatchCascadeDetector
    from medforensics.train.patch_cascade import train_patch_cascade

    model = train_patch_cascade(
        train,
        seed,
        val_cases=val,
        card={"trained_on": [SIEMENS, PHILIPS], "command": "benchmarks/bench_quality.py"},
    )
    # bench_detect times its speed and memory beside the others from this file
    print(f"  patch-cascade model -> {model.save(PATCH_CASCADE_MODEL)}", flush=True)
    return PatchCascadeDetector(model)


def train_densenet_here(train: Sequence, val: Sequence, seed: int, steps: int) -> Any:
    from medforensics.detect.global_net import train_global

    # one epoch: train_global scores every validation slice after each epoch, and on 2 CPU
    # cores those DenseNet121 passes cost more than the training steps themselves
    result = train_global(
        "densenet121-slice",
        train,
        val,
        seed=seed,
        epochs=1,
        batch_size=DENSENET_BATCH,
        slices_per_epoch=max(steps, 1) * DENSENET_BATCH,
        progress=lambda line: log(f"  densenet121-slice {line}"),
    )
    return result.detector


def train_classical_here(train: Sequence, val: Sequence, seed: int) -> Any:
    from medforensics.detect.classical import ClassicalDetector, train_classical

    return ClassicalDetector(train_classical(train, val, seed=seed))


# --- evaluation ---------------------------------------------------------------------------


def _r(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 3)


def evaluate(row: Row, detector: Any, test: Sequence) -> Row:
    """Score every test case; fill in the metrics and the detect() speed."""
    from medforensics.evaluate import bootstrap_ci, roc_auc, tpr_at_fpr

    scores, verdicts = [], []
    for case in test:
        detection = detector.detect(case.volume)
        scores.append(detection.score)
        verdicts.append(detection.verdict)
    # speed apart from scoring: best of a few passes, since other work on shared cores only
    # ever makes a pass slower (and the first calls of a torch model pay for its set-up)
    timed = test[:SPEED_SLICES]
    best = math.inf
    for _ in range(SPEED_PASSES):
        start = time.perf_counter()
        for case in timed:
            detector.detect(case.volume)
        best = min(best, time.perf_counter() - start)
    labels = np.array([case.label for case in test])
    score_array = np.array(scores, dtype=np.float64)
    flagged = np.array([v == "manipulated" for v in verdicts])
    patients = np.array([case.patient for case in test])
    interval = bootstrap_ci(
        roc_auc, labels, score_array, n=200, rng=np.random.default_rng(0), groups=patients
    )
    row.cases = len(test)
    row.auc = _r(roc_auc(labels, score_array))
    row.auc_ci95_by_patient = [_r(interval.low), _r(interval.high)]
    for attack in ATTACKS:
        keep = np.array([case.attack in (None, attack) for case in test])
        if labels[keep].sum():
            row.per_attack_auc[attack] = _r(roc_auc(labels[keep], score_array[keep]))
    row.tpr_at_fpr_1pct = _r(tpr_at_fpr(labels, score_array, 0.01))
    row.fpr_at_threshold = _r(float(flagged[labels == 0].mean()))
    row.tpr_at_threshold = _r(float(flagged[labels == 1].mean()))
    row.slices_per_s = round(sum(c.volume.shape[0] for c in timed) / max(best, 1e-9), 1)
    return row


def run_model(
    name: str,
    trained_on: str,
    make: Callable[[], Any],
    test: Sequence,
) -> Row:
    row = Row(model=name, trained_on=trained_on)
    start = time.perf_counter()
    try:
        detector = make()
    except Exception as exc:  # a missing model file or extra: say so in the table
        row.status = f"unavailable: {' '.join(str(exc).split())[:160]}"
        return row
    if name not in SHIPPED:
        row.train_s = round(time.perf_counter() - start, 1)
    try:
        return evaluate(row, detector, test)
    except Exception as exc:
        row.status = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
        return row


# --- output -------------------------------------------------------------------------------


def _cell(value: float | None, width: int, decimals: int = 3) -> str:
    text = "-" if value is None else f"{value:.{decimals}f}"
    return f"{text:>{width}}"


def table_lines(rows: Sequence[Row]) -> list[str]:
    short = {"copy-move": "copy-mv", "inpaint": "inpaint"}
    header = (
        f"{'model':<22} {'trained on':<40} {'AUC':>6} "
        + " ".join(f"{short.get(a, a):>7}" for a in ATTACKS)
        + f" {'TPR@1%':>7} {'FPR@thr':>7} {'sl/s':>6}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        if row.status != "ok":
            lines.append(f"{row.model:<22} {row.trained_on:<40} {row.status}")
            continue
        lines.append(
            f"{row.model:<22} {row.trained_on:<40} {_cell(row.auc, 6)} "
            + " ".join(_cell(row.per_attack_auc.get(a), 7) for a in ATTACKS)
            + f" {_cell(row.tpr_at_fpr_1pct, 7)} {_cell(row.fpr_at_threshold, 7)}"
            + f" {_cell(row.slices_per_s, 6, 1)}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="few DenseNet steps (<= 10 min)")
    parser.add_argument("--densenet-steps", type=int, help="optimiser steps (quick 16, else 120)")
    parser.add_argument("--no-retrain-classical", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    folders = (SIEMENS, PHILIPS, GE, LIDC)
    missing = [f for f in folders if not (args.data / f).is_dir()]
    if missing:
        print(
            f"bench_quality: skipped: {args.data} lacks {', '.join(missing)} (the shared CT "
            "data is on the development machine only; pass --data DIR to point at it)"
        )
        return 0
    steps = args.densenet_steps or (16 if args.quick else 120)

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(THREADS)
    threadpool_limits(THREADS)  # numpy/scipy/scikit-learn BLAS and OpenMP pools
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    log(
        f"quality side by side, {platform.machine()}, {os.cpu_count()} cores, {THREADS} threads, "
        f"torch {torch.__version__}, seed {args.seed}, load average {load_before:.2f}"
    )
    groups = grouped_cases(load(args.data, SIEMENS) + load(args.data, PHILIPS), args.seed, CHUNK)
    train, val = split_groups(groups, every=3)
    test_volumes = load(args.data, GE) + load(args.data, LIDC)
    test = [c for group in grouped_cases(test_volumes, TEST_SEED, CHUNK) for c in group]
    n_auth = sum(1 for c in test if c.label == 0)
    log(
        f"cases: train {len(train)}, validation {len(val)} (Siemens+Philips chunks); test "
        f"{len(test)} = {n_auth} authentic GE slices + {len(test) - n_auth} twins "
        f"({time.perf_counter() - started:.0f} s)"
    )

    from medforensics.detect import create_detector

    here = "this run: Sie+Phi"
    plan: list[tuple[str, str, Callable[[], Any]]] = [
        *((name, SHIPPED_ON[name], lambda n=name: create_detector(n)) for name in SHIPPED),
        (
            "patch-cascade",
            f"{here}; LR, PCA + linear SVM",
            lambda: train_patch_cascade_here(train, val, args.seed),
        ),
        (
            "densenet121-slice",
            f"{here}; {steps} steps x {DENSENET_BATCH} slices",
            lambda: train_densenet_here(train, val, args.seed, steps),
        ),
    ]
    if not args.no_retrain_classical:
        plan.append(
            ("classical (this run)", here, lambda: train_classical_here(train, val, args.seed))
        )
    rows = []
    for name, trained_on, make in plan:
        log(f"{name} ...")
        row = run_model(name, trained_on, make, test)
        rows.append(row)
        log(
            f"{name}: {row.status}, AUC {row.auc}, train {row.train_s} s, "
            f"{row.slices_per_s} slices/s"
        )

    load_after = os.getloadavg()[0]
    total = time.perf_counter() - started
    head = [
        f"held-out GE CT (never trained on): {n_auth} authentic 512x512 slices of 8 patients "
        f"(COVID-19-NY-SBU x7, LIDC-IDRI-0002) + {len(test) - n_auth} simulator twins "
        f"(one per attack, seed {TEST_SEED}); series-level scores",
        "shipped = trained earlier (see model cards): auto, ct-local, classical, noise-residual; "
        f"trained in this run on {len(train)} Sie+Phi cases (Siemens Sensation 16 + Philips "
        f"Brilliance 16, 5-slice chunks and their twins), calibrated on {len(val)}: "
        f"patch-cascade, densenet121-slice ({steps} steps of {DENSENET_BATCH} slices), "
        "classical (this run)",
    ]
    foot = [
        f"TPR@1%: on this test set at 1 % FPR ({n_auth} authentic: no false positive allowed); "
        "FPR@thr: share of authentic test slices the model calls manipulated at its own "
        "operating point (in-sample for shipped models whose point was fitted with GE); "
        f"sl/s: detect() on {SPEED_SLICES} of these single 512x512 slices, best of {SPEED_PASSES} "
        f"passes after scoring them all, {THREADS} threads",
        f"{time.strftime('%Y-%m-%d')}, load average {load_before:.2f} -> {load_after:.2f} on "
        f"{os.cpu_count()} cores, {total:.0f} s in all",
    ]
    if max(load_before, load_after) > (os.cpu_count() or 1):
        # multi-threaded torch suffers most when threads wait at barriers for descheduled peers
        foot.append(
            f"WARNING: load average above {os.cpu_count()}: other work competed for the cores; "
            "speeds (torch models most) are pessimistic, rerun when idle"
        )
    print()
    for line in [*head, "", *table_lines(rows), "", *foot]:
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "bench_quality",
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "threads": THREADS,
        "torch": torch.__version__,
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "seconds": round(total, 1),
        "seed": args.seed,
        "test_seed": TEST_SEED,
        "densenet_steps": steps,
        "protocol": head,
        "cases": {"train": len(train), "validation": len(val), "test": len(test)},
        "rows": [asdict(row) for row in rows],
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
