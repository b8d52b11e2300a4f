"""Authentic CT after lossy compression: how often does ``auto`` call it manipulated?

Archives keep older studies lossy-compressed (JPEG 2000 irreversible, JPEG baseline), at ratios
from 5:1 to several hundred to one. Compression smooths and quantises the noise the pixel models
read, so an authentic image must not become ``manipulated`` just because it was compressed.

For every authentic CT unit at hand (held-out GE single slices, LIDC, pydicom's CTs, 8-slice
chunks of the Philips and Siemens series), this prints ``auto``'s verdicts as acquired and after
lossy JPEG 2000 at several ratios and lossy JPEG at several qualities (``tamper.launder``), and
the header hint ``auto`` is given (``LossyImageCompression`` = 01, as a compliant writer sets it)
or not.

    python benchmarks/dev_lossy.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from medforensics.detect.registry import create_detector
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.tamper.launder import apply_laundering, sample_laundering

FOLDERS = (
    "covid19_ny_sbu_ct_slices",
    "lidc_idri_0002_single_slice",
    "pydicom_data_samples",
    "cptac_lscc_C3N-00247_siemens",
    "lung_pet_ct_dx_A0001_philips",
)
#: (name, laundering op, fixed parameters)
VARIANTS: tuple[tuple[str, str | None, dict[str, object]], ...] = (
    ("as acquired", None, {}),
    ("JPEG 2000 10:1", "jpeg2000", {"rate": 10.0}),
    ("JPEG 2000 20:1", "jpeg2000", {"rate": 20.0}),
    ("JPEG 2000 50:1", "jpeg2000", {"rate": 50.0}),
    ("JPEG 2000 150:1", "jpeg2000", {"rate": 150.0}),
    ("JPEG 2000 340:1", "jpeg2000", {"rate": 340.0}),
    ("JPEG q90", "jpeg", {"quality": 90}),
    ("JPEG q75", "jpeg", {"quality": 75}),
)
CHUNK = 8


def units(data: Path) -> list[ImageVolume]:
    """Single slices as they are, series as ``CHUNK``-slice chunks (two per series)."""
    out: list[ImageVolume] = []
    paths = [str(data / f) for f in FOLDERS if (data / f).exists()]
    for volume in load_paths(paths):
        if not isinstance(volume, ImageVolume) or volume.modality != "CT":
            continue
        if volume.shape[0] < CHUNK:
            out.append(volume)
            continue
        for start in (0, volume.shape[0] // 2):
            part = slice(start, start + CHUNK)
            positions = volume.positions[part] if volume.positions is not None else None
            out.append(
                dataclasses.replace(
                    volume,
                    pixels=np.ascontiguousarray(volume.pixels[part]),
                    slices=volume.slices[part] if volume.slices else volume.slices,
                    positions=positions,
                )
            )
    return out


def variant(
    volume: ImageVolume, op: str | None, fixed: dict[str, object], seed: int
) -> ImageVolume:
    if op is None:
        return volume
    rng = np.random.default_rng(seed)
    steps = [{**step, **fixed} for step in sample_laundering(volume, [op], rng)]
    pixels = apply_laundering(volume.pixels, volume, steps, rng)
    return dataclasses.replace(volume, pixels=pixels)


def declared_lossy(volume: ImageVolume) -> ImageVolume:
    """``volume`` as a compliant writer would label it after lossy compression."""
    return dataclasses.replace(
        volume, attributes={**volume.attributes, "LossyImageCompression": "01"}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared" / "data")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data folder at {args.data}", file=sys.stderr)
        return 2
    started = time.time()
    detector = create_detector("auto")
    cases = units(args.data)
    print(
        f"{len(cases)} authentic CT units; auto's verdicts (authentic / inconclusive / manipulated)"
    )
    print(f"{'variant':18s} {'header says lossless':>26s} {'header says lossy (01)':>26s}")
    for name, op, fixed in VARIANTS:
        counts: dict[bool, Counter[str]] = {False: Counter(), True: Counter()}
        for k, volume in enumerate(cases):
            changed = variant(volume, op, fixed, seed=k)
            for labelled in (False, True) if op else (False,):
                scored = declared_lossy(changed) if labelled else changed
                counts[labelled][detector.detect(scored).verdict] += 1

        def cell(c: Counter[str]) -> str:
            if not c:
                return "-"
            return f"{c['authentic']:3d} / {c['inconclusive']:3d} / {c['manipulated']:3d}"

        print(f"{name:18s} {cell(counts[False]):>26s} {cell(counts[True]):>26s}", flush=True)
    print(f"{time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
