"""Run every benchmark and print their reports one after another (``make bench``).

python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: the baseline bench_quality trains, timed by bench_detect (skipped there when it is missing)
PATCH_CASCADE = f"patch-cascade={HERE / 'out' / 'patch-cascade.json'}"
#: (script, quick arguments, full arguments)
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    ("bench_read.py", ["--slices", "300", "--repeat", "2"], ["--slices", "300", "--repeat", "5"]),
    ("bench_scan.py", ["--slices", "64"], ["--slices", "300"]),
    # quality first: it trains the patch-cascade baseline whose speed bench_detect then times
    ("bench_quality.py", ["--quick"], []),
    (
        "bench_detect.py",
        ["--quick", "--detectors", f"auto,ct-local,classical,noise-residual,{PATCH_CASCADE}"],
        ["--detectors", f"auto,ct-local,classical,noise-residual,{PATCH_CASCADE}"],
    ),
    ("bench_xr_mr.py", ["--images", "10", "--slices", "32"], []),
    ("bench_service_load.py", [], []),
    ("bench_gateway.py", [], []),
    ("bench_ui.py", [], ["--repeat", "3"]),
    ("bench_archive.py", [], []),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Smaller runs (a few minutes).")
    args = parser.parse_args()
    print(
        f"medforensics benchmarks, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}"
    )
    failures = 0
    for script, quick, full in BENCHMARKS:
        if not (HERE / script).exists():
            continue
        print(f"\n== {script}", flush=True)
        code = subprocess.call(
            [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        )
        if code != 0:
            print(f"   {script} missed its target or failed (exit {code})")
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
