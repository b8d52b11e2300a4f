"""Reading speed and memory: a 512×512×N uncompressed CT series (issue 2 target: ≥ 300 slices/s,
peak memory ≤ 1.5× the volume's float32 size).

Runs the read in a fresh child process so peak RSS measures the reader alone.

    python benchmarks/bench_read.py [--slices 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, sys, time
from medforensics.io.loader import load_paths

def status_kib(field):
    # VmHWM is this process's own peak (ru_maxrss can carry the parent's across fork/exec)
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)

before = status_kib("VmRSS")
start = time.perf_counter()
volumes = [v for v in load_paths([sys.argv[1]]) if hasattr(v, "pixels")]
elapsed = time.perf_counter() - start
peak = status_kib("VmHWM")
volume = volumes[0]
print(json.dumps({"seconds": elapsed, "slices": volume.shape[0], "nbytes": volume.pixels.nbytes,
                  "rss_before_kib": before, "rss_peak_kib": peak}))
"""


def write_series(folder: Path, n_slices: int) -> None:
    from medforensics.samples import chest_ct_phantom, write_ct_series

    rng = np.random.default_rng(0)
    block = chest_ct_phantom(n_slices=min(n_slices, 20), size=512, rng=rng)
    volume = np.concatenate([block] * (n_slices // block.shape[0] + 1))[:n_slices]
    write_ct_series(volume, folder, spacing=(1.0, 0.7, 0.7))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        write_series(folder, args.slices)
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(folder)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    rate = best["slices"] / best["seconds"]
    # peak RSS growth during the read, relative to the float32 volume it produced
    growth = (best["rss_peak_kib"] - best["rss_before_kib"]) * 1024
    ratio = growth / best["nbytes"]
    print(f"read 512x512x{best['slices']} uncompressed CT series (best of {args.repeat})")
    print(f"  slices/s          {rate:8.1f}   (target >= 300)")
    print(f"  seconds           {best['seconds']:8.2f}")
    print(f"  volume (float32)  {best['nbytes'] / 2**20:8.1f} MiB")
    print(f"  peak RSS growth   {growth / 2**20:8.1f} MiB = {ratio:.2f}x volume   (target <= 1.5x)")
    return 0 if rate >= 300 and ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
