"""Radiograph and MR throughput of the scan default (issue 6), end to end on 2 CPU threads.

- radiographs/s: ``scan_paths`` over N radiographs of 1024×1024 from disk (read + route +
  detect), as 16-bit DICOM DX and as 8-bit PNG (what insurers receive); target ≥ 10/s;
- MR slices/s: ``scan_paths`` over a 256×256 MR DICOM series and the same volume as NIfTI;
  target ≥ 30 slices/s.

Which models answered is printed beside each figure (a route whose model is missing falls back
to ``noise-residual``, which would make the figure meaningless for the shipped route).

    python benchmarks/bench_xr_mr.py [--images 20] [--slices 64] [--repeat 2]
        [--out benchmarks/out/bench_xr_mr.json]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out" / "bench_xr_mr.json"
THREADS = 2
XR_SIZE, MR_SIZE = 1024, 256
XR_TARGET, MR_TARGET = 10.0, 30.0


def write_inputs(root: Path, images: int, slices: int) -> dict[str, Path]:
    import nibabel as nib
    from PIL import Image

    from medforensics.samples.phantom import correlated_noise, radiograph_phantom
    from medforensics.samples.write import write_ct_series, write_dicom_image

    rng = np.random.default_rng(0)
    dx, png = root / "dx", root / "png"
    png.mkdir(parents=True)
    for i in range(images):
        image = radiograph_phantom(size=XR_SIZE, rng=np.random.default_rng(i))
        write_dicom_image(image, dx / f"dx{i:03d}.dcm", modality="DX")
        scaled = np.clip(image[0] / 16.0, 0, 255).astype(np.uint8)
        Image.fromarray(scaled).save(png / f"cxr{i:03d}.png")
    yy, xx = np.mgrid[:MR_SIZE, :MR_SIZE]
    head = ((yy - MR_SIZE / 2) ** 2 / 0.4**2 + (xx - MR_SIZE / 2) ** 2 / 0.33**2) < (
        MR_SIZE / 2
    ) ** 2
    mr = np.stack(
        [
            np.abs(600.0 * head + correlated_noise((MR_SIZE, MR_SIZE), 20.0, rng, cutoff=0.8))
            for _ in range(slices)
        ]
    ).astype(np.float32)
    write_ct_series(mr, root / "mr", spacing=(1.0, 0.9, 0.9), modality="MR")
    nifti = root / "mr.nii.gz"
    nib.save(nib.Nifti1Image(mr.transpose(1, 2, 0).astype(np.int16), np.eye(4)), nifti)
    return {"dx": dx, "png": png, "mr": root / "mr", "nifti": nifti}


def time_scan(path: Path, repeat: int) -> tuple[float, list[str], int]:
    """Best wall time of scanning ``path``, the models that answered and the result count."""
    from medforensics.detect.registry import create_detector
    from medforensics.scan import scan_paths

    detector = create_detector("auto")
    list(scan_paths([path], detector))  # warm up: models loaded, caches filled
    best, models, count = float("inf"), set(), 0
    for _ in range(repeat):
        started = time.perf_counter()
        results = list(scan_paths([path], detector))
        best = min(best, time.perf_counter() - started)
        count = len(results)
        for r in results:
            if r.error:
                raise RuntimeError(f"{r.input}: {r.error}")
            models.add(str(r.detector))
    return best, sorted(models), count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20, help="radiographs per format")
    parser.add_argument("--slices", type=int, default=64, help="MR slices")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement, best kept")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    import torch

    torch.set_num_threads(THREADS)
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]  # others' work on the machine slows every figure
    with tempfile.TemporaryDirectory(prefix="bench-xr-mr-") as tmp:
        inputs = write_inputs(Path(tmp), args.images, args.slices)
        plan = [
            ("radiograph DX 1024² (16-bit DICOM)", "dx", args.images, "images/s", XR_TARGET),
            ("radiograph PNG 1024² (8-bit)", "png", args.images, "images/s", XR_TARGET),
            ("MR series 256² (DICOM)", "mr", args.slices, "slices/s", MR_TARGET),
            ("MR volume 256² (NIfTI)", "nifti", args.slices, "slices/s", MR_TARGET),
        ]
        for label, key, units, unit_name, target in plan:
            seconds, models, count = time_scan(inputs[key], args.repeat)
            rate = units / seconds
            rows.append(
                {
                    "input": label,
                    "rate": round(rate, 1),
                    "unit": unit_name,
                    "target": target,
                    "met": rate >= target,
                    "seconds": round(seconds, 2),
                    "results": count,
                    "models": models,
                }
            )
    print(
        f"bench_xr_mr: {platform.machine()}, {os.cpu_count()} cores, torch threads {THREADS}, "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"{'input':<38} {'rate':>10} {'target':>8}  models")
    for row in rows:
        mark = "ok" if row["met"] else "MISSED"
        print(
            f"{row['input']:<38} {row['rate']:>6.1f} {row['unit']:<9}"
            f" {row['target']:>4.0f} {mark:<6} {', '.join(row['models'])}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    load = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    args.out.write_text(
        json.dumps({"rows": rows, "load_average_1min": load}, indent=2) + "\n", encoding="utf-8"
    )
    return 0 if all(row["met"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
