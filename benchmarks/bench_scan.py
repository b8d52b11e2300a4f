"""Scan throughput of the default detector on 512² CT (slices/s, end to end from files).

python benchmarks/bench_scan.py [--slices 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=64)
    args = parser.parse_args()
    from medforensics.detect import create_detector
    from medforensics.io.loader import load_paths
    from medforensics.samples import chest_ct_phantom, write_ct_series

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        write_ct_series(
            chest_ct_phantom(n_slices=args.slices, size=512, rng=np.random.default_rng(0)), folder
        )
        detector = create_detector("noise-residual")
        start = time.perf_counter()
        volume = next(v for v in load_paths([folder]) if hasattr(v, "pixels"))
        loaded = time.perf_counter()
        detector.detect(volume)
        done = time.perf_counter()
    print(f"scan 512x512x{args.slices} CT with detector 'noise-residual'")
    print(f"  read      {args.slices / (loaded - start):8.1f} slices/s")
    print(f"  detect    {args.slices / (done - loaded):8.1f} slices/s")
    print(f"  total     {args.slices / (done - start):8.1f} slices/s ({done - start:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
