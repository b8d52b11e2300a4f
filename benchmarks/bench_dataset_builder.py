"""Attack simulator: realism statistics, the dataset-builder load test, and the docs gallery.

Realism: per attack, on the shared CT series, the noise of the tampered region against the
authentic parenchyma around it (std of the 1-pixel high-pass residual over noise-only pixels,
the statistic the noise matching targets), and for removal the local HU distribution
(median difference and Kolmogorov-Smirnov distance, inside vs around).
Load test: ``build_dataset`` writing N tampered cases from the shared CT series, timed.

    python benchmarks/bench_dataset_builder.py realism [--data ../shared/data] [--cases 8]
    python benchmarks/bench_dataset_builder.py load [--data ../shared/data] [--cases 1000]
    python benchmarks/bench_dataset_builder.py gallery [--data ../shared/data] [--out docs/gallery]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, stats

from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.tamper import simulate
from medforensics.tamper.dataset import build_dataset
from medforensics.tamper.texture import STRUCTURE_SIGMA, highpass, structure_mask

PHILIPS = "lung_pet_ct_dx_A0001_philips/Lung_Dx-A0001/04-04-2007-NA-Chest-07990"
CT_SERIES = {
    "philips-L": f"{PHILIPS}/2.000000-5mm-40805",
    "philips-B": f"{PHILIPS}/3.000000-5mm-41315",
    "siemens-B70f": "cptac_lscc_C3N-00247_siemens",
}
OTHERS = {
    "cr": "pydicom_data_samples/RG1_UNCR.dcm",
    "mri": "brain_mri_t1_colin27_mricron_data/ch2.nii.gz",
}
#: a flat nodule core, so every bit of high-pass energy in it is noise
FLAT_NODULE = {
    "nodule_type": "solid",
    "diameter_mm": 20.0,
    "lobulation": 0.0,
    "texture_hu": 0.0,
    "margin_mm": 0.3,
}


def load(data: Path, relative: str) -> ImageVolume:
    volumes = [v for v in load_paths([str(data / relative)]) if isinstance(v, ImageVolume)]
    if not volumes:
        raise SystemExit(
            f"{data / relative}: nothing readable; pass --data pointing at shared/data"
        )
    return volumes[0]


def noise_std(image: np.ndarray, region: np.ndarray) -> float:
    """High-pass std over the noise-only pixels of ``region`` (vessels and edges left out).

    Structure is found in a crop around the region only: over a whole slice, the flat air
    outside the body would set the outlier threshold and leave only the calmest lung pixels.
    """
    ys, xs = np.nonzero(region)
    if len(ys) < 20:
        return float("nan")
    crop = (slice(max(ys.min() - 8, 0), ys.max() + 9), slice(max(xs.min() - 8, 0), xs.max() + 9))
    keep = region[crop] & ~structure_mask(highpass(image[crop], STRUCTURE_SIGMA))
    return float(highpass(image)[crop][keep].std()) if keep.sum() > 20 else float("nan")


def regions(mask: np.ndarray, erode: int) -> tuple[np.ndarray, np.ndarray]:
    core = ndimage.binary_erosion(mask, iterations=erode) if erode else mask
    ring = ndimage.binary_dilation(mask, iterations=14) & ~ndimage.binary_dilation(
        mask, iterations=4
    )
    return core, ring


def measure(volume: ImageVolume, attack: str, seed: int, **params: Any) -> dict[str, float]:
    result = simulate(volume, attack, seed, **params)
    z = result.truth.centre[0] if result.truth.centre else 0
    mask = result.truth.mask[z]
    plane = result.pixels[z]
    core, ring = regions(mask, 4 if attack == "inject" else 2)
    # the flat nodule core is all noise: no structure mask is needed inside it
    flat = attack == "inject"
    inside = float(highpass(plane)[core].std()) if flat else noise_std(plane, core)
    around = noise_std(plane, ring)
    row = {"noise_ratio": inside / around}
    if attack == "remove":
        values, reference = plane[core], plane[ring]
        row["median_hu_diff"] = float(np.median(values) - np.median(reference))
        row["ks"] = float(stats.ks_2samp(values, reference).statistic)
    return row


def realism(data: Path, cases: int) -> None:
    print(f"realism, {cases} seeds per series; ratio = tampered-region noise / surrounding noise")
    scenarios: list[tuple[str, str, dict[str, Any]]] = [
        ("inject (flat 20 mm solid)", "inject", FLAT_NODULE),
        ("remove (sampled 6-30 mm)", "remove", {}),
        ("inpaint, no noise added", "inpaint", {"add_noise": False, "feather_px": 0.0}),
        ("inpaint, matched noise", "inpaint", {"add_noise": True, "feather_px": 0.0}),
        ("splice, matched noise", "splice", {"match_noise": True, "feather_px": 1.0}),
        ("splice, donor noise", "splice", {"match_noise": False, "feather_px": 1.0}),
        ("copy-move", "copy-move", {"feather_px": 0.0}),
    ]
    volumes = {name: load(data, path) for name, path in CT_SERIES.items()}
    for label, attack, params in scenarios:
        per_series = {
            name: [measure(volume, attack, seed, **params) for seed in range(cases)]
            for name, volume in volumes.items()
        }
        rows = [row for series_rows in per_series.values() for row in series_rows]
        ratios = np.array([r["noise_ratio"] for r in rows])
        ratios = ratios[np.isfinite(ratios)]
        line = (
            f"  {label:28s} n={len(ratios):3d}  noise ratio median {np.median(ratios):.2f}"
            f"  [{ratios.min():.2f}, {ratios.max():.2f}]"
        )
        if attack == "remove":
            diffs = np.array([r["median_hu_diff"] for r in rows])
            ks = np.array([r["ks"] for r in rows])
            line += (
                f"  median HU inside-around {np.median(diffs):+.0f} [{diffs.min():+.0f},"
                f" {diffs.max():+.0f}]  KS {np.median(ks):.2f} [{ks.min():.2f}, {ks.max():.2f}]"
            )
        print(line, flush=True)
        medians = []
        for name, series_rows in per_series.items():
            values = np.array([r["noise_ratio"] for r in series_rows])
            values = values[np.isfinite(values)]
            if len(values):
                medians.append(
                    f"{name} {np.median(values):.2f} [{values.min():.2f}, {values.max():.2f}]"
                )
        print("      per series: " + "; ".join(medians), flush=True)


def load_test(data: Path, cases: int, keep: Path | None) -> None:
    volumes = [load(data, path) for path in CT_SERIES.values()]
    per_series = -(-cases // len(volumes))
    out = keep or Path(tempfile.mkdtemp(prefix="mf-dataset-"))
    started = time.perf_counter()
    rows = build_dataset(volumes, out, seed=0, cases_per_series=per_series)
    elapsed = time.perf_counter() - started
    n_cases = len({row["case_id"] for row in rows})
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    files = sum(1 for p in out.rglob("*.dcm"))
    print(
        f"load test: {n_cases} cases ({len(rows)} manifest rows) from {len(volumes)} CT series "
        f"in {elapsed:.1f} s = {elapsed / n_cases * 1000:.0f} ms/case; "
        f"{files} DICOM files, {size / 1e9:.2f} GB written"
    )
    with (out / "manifest.csv").open() as handle:
        manifest = list(csv.DictReader(handle))
    print("  labels:", dict(sorted(Counter(r["label"] for r in manifest).items())))
    print("  laundered cases:", sum(1 for r in manifest if r["laundering"] and r["label"] != "TB"))
    if keep is None:
        shutil.rmtree(out)


def tumour_box(data: Path, volume: ImageVolume) -> list[int]:
    """Union box ``[z0, z1, y0, y1, x0, x1]`` of the annotated tumour in the Philips L series."""
    index = {ref.sop_instance_uid: z for z, ref in enumerate(volume.slices)}
    rows = list(csv.DictReader((data / PHILIPS.split("/")[0] / "tumor_bboxes.csv").open()))
    hits = [(index[r["sop_instance_uid"]], r) for r in rows if r["sop_instance_uid"] in index]
    zs = [z for z, _ in hits]
    return [
        min(zs),
        max(zs) + 1,
        min(int(r["ymin"]) for _, r in hits),
        max(int(r["ymax"]) for _, r in hits) + 1,
        min(int(r["xmin"]) for _, r in hits),
        max(int(r["xmax"]) for _, r in hits) + 1,
    ]


def gallery(data: Path, out: Path, seed: int) -> None:
    from medforensics.tamper.gallery import render_gallery

    volumes = {name: load(data, path) for name, path in {**CT_SERIES, **OTHERS}.items()}
    del volumes["philips-B"]  # same patient as philips-L, another kernel
    box = tumour_box(data, volumes["philips-L"])
    overrides = {("philips-L", "remove"): {"box": box, "source": "given"}}
    for path in render_gallery(volumes, out, seed, overrides=overrides):
        print(f"{path} {path.stat().st_size // 1024} KB")
    print(f"philips-L tumour box (z0, z1, y0, y1, x0, x1): {box}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("realism", "load", "gallery"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cases", type=int, default=None, help="seeds (realism) / cases (load)")
    parser.add_argument("--keep", type=Path, default=None, help="load: keep the dataset here")
    parser.add_argument("--out", type=Path, default=Path("docs/gallery"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.what == "realism":
        realism(args.data, args.cases or 8)
    elif args.what == "load":
        load_test(args.data, args.cases or 1000, args.keep)
    else:
        gallery(args.data, args.out, args.seed)


if __name__ == "__main__":
    main()
