"""Detector speed and memory on 512² CT, side by side with a DenseNet121 slice classifier.

For each detector (default: the scan default and ``noise-residual``), on 2 CPU threads:

- slices/s end to end: ``scan_paths`` on an N-slice 512×512 series from disk (read + detect),
  best of ``--repeat``; the same run's wall time is the series latency; detect-only slices/s
  times ``detector.detect`` on the already loaded volume;
- peak RSS (VmHWM) of a fresh child process that scans a 300-slice 512×512 series from disk
  through ``scan_paths`` (issue 4 target: at most 2 GB).

The baseline is the seed project's approach: a MONAI DenseNet121 2D slice classifier at 256×256
(eval mode, ``torch.inference_mode``, batches of 8; HU windowing and the 512→256 resize are
inside the timing). Its weights are random: only its speed and memory are measured.

    python benchmarks/bench_detect.py [--quick] [--detectors a,b,c] [--slices 64]
        [--no-memory] [--out benchmarks/out/bench_detect.json]

Exit status 1 when a detector misses the memory target, the scan default misses 30 slices/s
end to end, or a detector that could be created failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out" / "bench_detect.json"
THREADS = 2
SIZE = 512
MEMORY_SLICES = 300
MEMORY_TARGET_MB = 2048.0
#: issue 4: the scan default, end to end on 2 cores, with dense localisation
THROUGHPUT_TARGET = 30.0
DENSENET = "DenseNet121 (MONAI, 2D, 256x256, batch 8)"
DENSENET_SIZE, DENSENET_BATCH = 256, 8
#: lung-to-soft-tissue window the baseline normalises to before resizing
DENSENET_WINDOW = (-1000.0, 400.0)

# Runs in a fresh interpreter so VmHWM is this scan's own peak. Thread counts come from the
# environment: importing torch here only to set them would add torch to detectors that do not
# use it.
_CHILD = r"""
import json, sys, time

def status_kib(field):
    # VmHWM is this process's own peak (ru_maxrss can carry the parent's across fork/exec)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)

folder, target = sys.argv[1], sys.argv[2]
report = {"target": target}
try:
    if target == "densenet121":
        sys.path.insert(0, sys.argv[3])
        from bench_detect import densenet_model, densenet_scan_folder
        model = densenet_model()
        before = status_kib("VmRSS")
        start = time.perf_counter()
        report["slices"] = densenet_scan_folder(model, folder)
    else:
        from medforensics.detect import create_detector
        from medforensics.scan import scan_paths
        name, _, model = target.partition("=")
        detector = create_detector(name, **({"model": model} if model else {}))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(sys.argv[3]))
        before = status_kib("VmRSS")
        start = time.perf_counter()
        results = list(scan_paths([folder], detector=detector))
        errors = [r.error for r in results if r.error]
        if errors:
            raise RuntimeError("; ".join(errors))
        report["slices"] = sum(r.shape[0] for r in results if r.shape)
        report["verdicts"] = [r.verdict for r in results]
    report["seconds"] = time.perf_counter() - start
    report["rss_before_kib"] = before
    report["rss_peak_kib"] = status_kib("VmHWM")
except Exception as exc:
    report["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(report))
"""


@dataclass
class Row:
    """One line of the table (and of the JSON ``rows``)."""

    name: str
    status: str = "ok"
    slices_per_s: float | None = None
    detect_slices_per_s: float | None = None
    x_vs_densenet: float | None = None
    latency_s: float | None = None
    peak_rss_mb: float | None = None
    memory_scan_s: float | None = None
    score: float | None = None
    verdict: str | None = None
    notes: list[str] = field(default_factory=list)


# --- data ---------------------------------------------------------------------------------


def write_series(folder: Path, n_slices: int, seed: int = 0) -> np.ndarray:
    """A 512² chest phantom series of ``n_slices`` files; returns the HU volume written."""
    from medforensics.samples import chest_ct_phantom, write_ct_series

    hu_volume = chest_ct_phantom(n_slices=n_slices, size=SIZE, rng=np.random.default_rng(seed))
    write_ct_series(hu_volume, folder, spacing=(1.0, 0.7, 0.7))
    return hu_volume


def write_tiled_series(folder: Path, block: np.ndarray, n_slices: int) -> None:
    """``n_slices`` files made by running through ``block`` forwards and back (no jumps)."""
    from medforensics.samples import write_ct_series

    ping_pong = np.concatenate([block, block[::-1]]) if block.shape[0] > 1 else block
    repeats = n_slices // ping_pong.shape[0] + 1
    write_ct_series(
        np.concatenate([ping_pong] * repeats)[:n_slices], folder, spacing=(1.0, 0.7, 0.7)
    )


def load_volume(folder: Path) -> Any:
    from medforensics.io.loader import load_paths

    for item in load_paths([folder]):
        if hasattr(item, "pixels"):
            return item
        raise RuntimeError(f"could not read the benchmark series in {folder}: {item}")
    raise RuntimeError(f"no series found in {folder}")


# --- the DenseNet121 baseline ---------------------------------------------------------------


def densenet_model() -> Any:
    """MONAI DenseNet121, 1 channel in, 1 logit out, random weights (seeded), eval mode."""
    import torch
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    return DenseNet121(spatial_dims=2, in_channels=1, out_channels=1).eval()


def densenet_slice_scores(model: Any, hu_volume: np.ndarray) -> np.ndarray:
    """Per-slice probabilities: window, resize 512→256, classify in batches of 8."""
    import torch
    import torch.nn.functional as F

    low, high = DENSENET_WINDOW
    scores = []
    with torch.inference_mode():
        for start in range(0, hu_volume.shape[0], DENSENET_BATCH):
            batch = torch.from_numpy(hu_volume[start : start + DENSENET_BATCH])[:, None]
            batch = (batch.clamp(low, high) - low) / (high - low)
            # antialiased bilinear, as torchvision's Resize does on tensors
            batch = F.interpolate(
                batch, size=(DENSENET_SIZE, DENSENET_SIZE), mode="bilinear", antialias=True
            )
            scores.append(torch.sigmoid(model(batch))[:, 0].numpy())
    return np.concatenate(scores)


def densenet_scan_folder(model: Any, folder: str | Path) -> int:
    """Read a series and classify every slice (the memory child's job); returns slice count."""
    volume = load_volume(Path(folder))
    densenet_slice_scores(model, volume.pixels)
    return int(volume.shape[0])


def time_densenet(folder: Path, n_slices: int, repeat: int) -> Row:
    model = densenet_model()
    best_total, best_compute, scores = float("inf"), float("inf"), np.zeros(0)
    for _ in range(repeat):
        start = time.perf_counter()
        volume = load_volume(folder)
        loaded = time.perf_counter()
        scores = densenet_slice_scores(model, volume.pixels)
        done = time.perf_counter()
        best_total = min(best_total, done - start)
        best_compute = min(best_compute, done - loaded)
        del volume
    return Row(
        name="densenet121",
        slices_per_s=n_slices / best_total,
        detect_slices_per_s=n_slices / best_compute,
        x_vs_densenet=1.0,
        latency_s=best_total,
        score=float(scores.max()),
        notes=[f"{DENSENET}; random weights: speed and memory only, its scores mean nothing"],
    )


# --- detectors ------------------------------------------------------------------------------


def _spec(name: str) -> tuple[str, dict[str, str]]:
    """``NAME`` or ``NAME=MODEL`` (a detector with its model file, e.g. an unshipped baseline)."""
    detector, _, model = name.partition("=")
    return detector, ({"model": model} if model else {})


def time_detector(name: str, folder: Path, n_slices: int, repeat: int) -> Row:
    from medforensics.detect import create_detector
    from medforensics.scan import scan_paths

    try:
        kind, kwargs = _spec(name)
        detector = create_detector(kind, **kwargs)
    except Exception as exc:  # no model file yet, missing extra, unknown name...
        return Row(name=_spec(name)[0], status=f"unavailable: {_reason(exc)}")
    try:
        best_total = float("inf")
        result = None
        for _ in range(repeat):
            start = time.perf_counter()
            results = list(scan_paths([folder], detector=detector))
            best_total = min(best_total, time.perf_counter() - start)
            (result,) = results
            if result.error:
                raise RuntimeError(result.error)
        volume = load_volume(folder)
        best_detect = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            detector.detect(volume)
            best_detect = min(best_detect, time.perf_counter() - start)
    except Exception as exc:
        return Row(name=_spec(name)[0], status=f"failed: {_reason(exc)}")
    assert result is not None
    return Row(
        name=_spec(name)[0],
        slices_per_s=n_slices / best_total,
        detect_slices_per_s=n_slices / best_detect,
        latency_s=best_total,
        score=result.score,
        verdict=result.verdict,
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"") or type(exc).__name__
    return " ".join(text.split())


def measure_memory(folder: Path, target: str) -> dict[str, Any]:
    """Scan ``folder`` in a fresh child process; its peak RSS and wall time."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(THREADS),
        "MKL_NUM_THREADS": str(THREADS),
        "OPENBLAS_NUM_THREADS": str(THREADS),
    }
    extra = str(HERE) if target == "densenet121" else str(THREADS)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), target, extra],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = " ".join(out.stderr.strip().splitlines()[-3:])
        return {"error": f"child exited {out.returncode}: {tail}"}
    return dict(json.loads(lines[-1]))


def apply_memory(row: Row, report: dict[str, Any]) -> None:
    if "error" in report:
        row.notes.append(f"memory run failed: {report['error']}")
        if row.status == "ok":
            row.status = f"failed: {report['error']}"
        return
    row.peak_rss_mb = report["rss_peak_kib"] / 1024
    row.memory_scan_s = report["seconds"]


# --- output ---------------------------------------------------------------------------------


def _fmt(value: float | None, width: int, decimals: int, suffix: str = "") -> str:
    text = "-" if value is None else f"{value:.{decimals}f}{suffix}"
    return f"{text:>{width}}"


def print_table(rows: list[Row], n_slices: int, memory: bool) -> None:
    header = (
        f"{'detector':<22} {'slices/s':>9} {'detect/s':>9} {'x-vs-DN121':>10} "
        f"{f'latency({n_slices})':>13} {'peak RSS MB':>11} {f'{MEMORY_SLICES}-sl s':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if row.status != "ok":
            print(f"{row.name:<22} {row.status}")
            continue
        print(
            f"{row.name:<22} {_fmt(row.slices_per_s, 9, 1)} "
            f"{_fmt(row.detect_slices_per_s, 9, 1)} {_fmt(row.x_vs_densenet, 10, 2, 'x')} "
            f"{_fmt(row.latency_s, 13, 2, 's')} {_fmt(row.peak_rss_mb, 11, 0)} "
            f"{_fmt(row.memory_scan_s, 8, 2, 's')}"
        )
    print(
        f"\nslices/s: scan_paths end to end (read + detect) on 512x512x{n_slices}, best of runs; "
        "detect/s: detector alone on the loaded volume (DenseNet: windowing + resize + inference)"
    )
    if memory:
        print(
            f"peak RSS: VmHWM of a fresh process scanning 512x512x{MEMORY_SLICES} from disk "
            f"(target <= {MEMORY_TARGET_MB:.0f} MB); {MEMORY_SLICES}-sl s: that scan's wall time"
        )
    print("densenet121: random weights, throughput and memory only")


def missed_targets(rows: list[Row], scan_default: str, memory: bool) -> list[str]:
    missed = []
    for row in rows:
        if row.name == "densenet121" or row.status.startswith("unavailable"):
            continue
        if row.status != "ok":
            missed.append(f"{row.name}: {row.status}")
            continue
        if memory and row.peak_rss_mb is not None and row.peak_rss_mb > MEMORY_TARGET_MB:
            missed.append(f"{row.name}: peak RSS {row.peak_rss_mb:.0f} MB > {MEMORY_TARGET_MB:.0f}")
        if (
            row.name == scan_default
            and row.slices_per_s is not None
            and row.slices_per_s < THROUGHPUT_TARGET
        ):
            missed.append(f"{row.name}: {row.slices_per_s:.1f} slices/s < {THROUGHPUT_TARGET:.0f}")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--detectors",
        help="comma-separated names, NAME=MODEL for a detector with its own model file "
        "(default: scan default, noise-residual)",
    )
    parser.add_argument(
        "--slices", type=int, help="slices of the throughput series (300; quick 64)"
    )
    parser.add_argument("--repeat", type=int, help="runs per measurement, best kept (3; quick 2)")
    parser.add_argument("--quick", action="store_true", help="fewer slices and runs for throughput")
    parser.add_argument("--no-memory", action="store_true", help="skip the 300-slice memory runs")
    parser.add_argument("--no-densenet", action="store_true", help="skip the DenseNet121 baseline")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args()
    n_slices = args.slices or (64 if args.quick else MEMORY_SLICES)
    repeat = args.repeat or (2 if args.quick else 3)

    import torch

    torch.set_num_threads(THREADS)
    from medforensics.scan import DEFAULT_DETECTOR

    names = [n.strip() for n in args.detectors.split(",")] if args.detectors else []
    names = list(dict.fromkeys([*(names or [DEFAULT_DETECTOR, "noise-residual"])]))
    memory = not args.no_memory

    load_before = os.getloadavg()[0]
    print(
        f"detector speed and memory, {platform.machine()}, {os.cpu_count()} cores, "
        f"{THREADS} torch threads, torch {torch.__version__}; scan default {DEFAULT_DETECTOR!r}; "
        f"load average {load_before:.2f}",
        flush=True,
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mf-bench-detect-") as tmp:
        throughput_folder = Path(tmp) / "throughput"
        block = write_series(throughput_folder, n_slices)
        memory_folder = throughput_folder
        if memory and n_slices != MEMORY_SLICES:
            memory_folder = Path(tmp) / "memory"
            write_tiled_series(memory_folder, block, MEMORY_SLICES)
        del block

        for name in names:
            print(f"  timing {name} ...", flush=True)
            row = time_detector(name, throughput_folder, n_slices, repeat)
            if memory and row.status == "ok":
                apply_memory(row, measure_memory(memory_folder, name))
            rows.append(row)
        if not args.no_densenet:
            print("  timing densenet121 (random weights) ...", flush=True)
            baseline = time_densenet(throughput_folder, n_slices, repeat)
            if memory:
                apply_memory(baseline, measure_memory(memory_folder, "densenet121"))
            rows.append(baseline)
            for row in rows:
                if row.slices_per_s is not None and baseline.slices_per_s:
                    row.x_vs_densenet = row.slices_per_s / baseline.slices_per_s

    load_after = os.getloadavg()[0]
    print()
    print_table(rows, n_slices, memory)
    busy = max(load_before, load_after) > (os.cpu_count() or 1)
    if busy:
        # other processes on the cores: multi-threaded torch suffers most (threads wait at
        # barriers for descheduled peers), so the DenseNet ratio is the least trustworthy figure
        print(
            f"WARNING: load average {load_before:.2f} -> {load_after:.2f} on {os.cpu_count()} "
            "cores: other work competed for the CPU; timings are pessimistic, rerun when idle"
        )
    missed = missed_targets(rows, DEFAULT_DETECTOR, memory)
    for line in missed:
        print(f"  MISSED {line}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "bench_detect",
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": THREADS,
        "image_size": SIZE,
        "throughput_slices": n_slices,
        "repeat": repeat,
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "contended": busy,
        "memory_slices": MEMORY_SLICES if memory else None,
        "scan_default": DEFAULT_DETECTOR,
        "baseline": None if args.no_densenet else DENSENET + ", random weights",
        "targets": {
            "peak_rss_mb_max": MEMORY_TARGET_MB,
            "scan_default_slices_per_s_min": THROUGHPUT_TARGET,
        },
        "rows": [asdict(row) for row in rows],
        "missed": missed,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
