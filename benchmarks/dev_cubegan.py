"""The CT-GAN-style attacks (``gan-inject``, ``gan-remove``) on the shared CT data.

    python benchmarks/dev_cubegan.py train   [--data ../shared/data] [--steps 600] [--out PATH]
    python benchmarks/dev_cubegan.py realism [--inpainter PATH] [--cases 8]
    python benchmarks/dev_cubegan.py detect  [--inpainter PATH] [--seed 0]
    python benchmarks/dev_cubegan.py gallery [--inpainter PATH] [--out docs/gallery]

``train`` trains the cube in-painter on the Siemens (CPTAC-LSCC) and Philips (Lung-PET-CT-Dx)
series only, the scanners the shipped ``ct-local`` was trained on, so the GE scans stay unseen by
both. ``realism`` prints the noise ratio (tampered-region noise over surrounding noise, as in
docs/tamper.md) and the median HU difference inside minus around. ``detect`` is the
generalisation test: the shipped detectors never saw these attacks; they score authentic GE
slices (COVID-19-NY-SBU, LIDC-IDRI-0002) and their ``gan-inject`` / ``gan-remove`` twins, beside
the hand-built ``inject`` / ``remove`` on the same slices. ``gallery`` renders before/after crops
(the Philips tumour removed by ``gan-remove``, as ``remove`` does in the main gallery).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from medforensics.detect import create_detector
from medforensics.evaluate import roc_auc
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.tamper.cubegan import CubeInpainter, train_inpainter
from medforensics.tamper.synthetic import CACHE_ENV
from medforensics.train.cases import make_cases

sys.path.insert(0, str(Path(__file__).parent))
from bench_dataset_builder import measure, tumour_box

TRAIN = ("cptac_lscc_C3N-00247_siemens", "lung_pet_ct_dx_A0001_philips")
HELD_OUT = ("covid19_ny_sbu_ct_slices", "lidc_idri_0002_single_slice")
DEFAULT = Path(__file__).with_name("out") / "cube-gan-CT.pt"
FIGURES = Path(__file__).with_name("out") / "dev_cubegan.json"
ATTACKS = ("gan-inject", "gan-remove", "inject", "remove")
DETECTORS = ("ct-local", "classical", "noise-residual", "auto")


def load(data: Path, folders: tuple[str, ...]) -> list[ImageVolume]:
    volumes = [
        v for v in load_paths([str(data / f) for f in folders]) if isinstance(v, ImageVolume)
    ]
    if not volumes:
        raise SystemExit(f"{data}: nothing readable; pass --data pointing at shared/data")
    return volumes


def use_inpainter(path: Path) -> CubeInpainter:
    """Put ``path`` alone in a temporary cache, where the attacks look for it."""
    if not path.is_file():
        raise SystemExit(f"{path}: no in-painter; run `python {__file__} train` first")
    inpainter = CubeInpainter.load(path)
    cache = Path(tempfile.mkdtemp(prefix="cubegan-cache-"))
    os.environ[CACHE_ENV] = str(cache)
    inpainter.save(cache / "generators" / f"cube-gan-CT-{inpainter.identity}.pt")
    return inpainter


def train(data: Path, steps: int, out: Path, seed: int, texture_weight: float) -> None:
    volumes = load(data, TRAIN)
    started = time.perf_counter()
    inpainter = train_inpainter(
        volumes, seed, steps=steps, texture_weight=texture_weight, progress=print
    )
    inpainter.card["trained_on"] = [
        "TCIA CPTAC-LSCC C3N-00247, Siemens Sensation 16 B70f (CC BY 3.0)",
        "TCIA Lung-PET-CT-Dx Lung_Dx-A0001, Philips Brilliance 16 kernels B and L (CC BY 4.0)",
    ]
    path = inpainter.save(out)
    print(f"trained in {time.perf_counter() - started:.0f} s -> {path} (id {inpainter.identity})")


def realism(data: Path, cases: int) -> None:
    volumes = load(data, TRAIN)
    print(f"realism, {cases} seeds per series; ratio = tampered-region noise / surrounding noise")
    for attack in ("gan-inject", "gan-remove"):
        rows = [measure(v, attack, seed) for v in volumes for seed in range(cases)]
        ratios = np.array([r["noise_ratio"] for r in rows])
        ratios = ratios[np.isfinite(ratios)]
        print(
            f"  {attack:12s} n={len(ratios):3d}  noise ratio median {np.median(ratios):.2f}"
            f"  [{ratios.min():.2f}, {ratios.max():.2f}]"
            f"  (quartiles {np.percentile(ratios, 25):.2f}-{np.percentile(ratios, 75):.2f})",
            flush=True,
        )


def detect(data: Path, seed: int) -> None:
    volumes = load(data, HELD_OUT)
    errors: dict[str, int] = {}
    cases = list(make_cases(volumes, ATTACKS, seed, per_chunk=len(ATTACKS), errors=errors))
    authentic = [c for c in cases if c.attack is None]
    print(
        f"{len(volumes)} held-out GE slices: {len(authentic)} authentic, "
        f"{len(cases) - len(authentic)} tampered; attack errors: {errors or 'none'}",
        flush=True,
    )
    figures: dict[str, dict[str, float]] = {}
    for name in DETECTORS:
        detector = create_detector(name)
        started = time.perf_counter()
        detections = [detector.detect(c.volume) for c in cases]
        scores = np.array([d.score for d in detections])
        flagged = np.array([d.verdict == "manipulated" for d in detections])
        is_fake = np.array([c.attack is not None for c in cases])
        row = {"fpr": round(float(flagged[~is_fake].mean()), 3)}
        for attack in ATTACKS:
            pick = np.array([c.attack in (None, attack) for c in cases])
            row[f"auc {attack}"] = round(roc_auc(is_fake[pick], scores[pick]), 3)
            row[f"tpr {attack}"] = round(
                float(flagged[[c.attack == attack for c in cases]].mean()), 3
            )
        figures[name] = row
        print(f"{name:15s} ({time.perf_counter() - started:.0f} s) " + json.dumps(row), flush=True)
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"-> {FIGURES}")


def gallery(data: Path, out: Path, seed: int) -> None:
    from medforensics.tamper.gallery import render_gallery

    names = {
        "siemens-B70f": ("cptac_lscc_C3N-00247_siemens",),
        "philips-L": ("lung_pet_ct_dx_A0001_philips",),
        "ge": ("lidc_idri_0002_single_slice",),
    }
    volumes = {}
    for name, folders in names.items():
        found = load(data, folders)
        volumes[name] = next(
            (v for v in found if v.attributes.get("ConvolutionKernel") == "L"), found[0]
        )
    overrides = {("philips-L", "gan-remove"): {"box": tumour_box(data, volumes["philips-L"])}}
    for path in render_gallery(volumes, out, seed, ("gan-inject", "gan-remove"), overrides):
        print(f"{path} {path.stat().st_size // 1024} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("train", "realism", "detect", "gallery"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--inpainter", type=Path, default=DEFAULT)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--texture-weight", type=float, default=10.0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    if args.what == "train":
        train(args.data, args.steps, args.out or args.inpainter, args.seed, args.texture_weight)
        return
    use_inpainter(args.inpainter)
    if args.what == "realism":
        realism(args.data, args.cases)
    elif args.what == "detect":
        detect(args.data, args.seed)
    else:
        gallery(args.data, args.out or Path("docs/gallery"), args.seed)


if __name__ == "__main__":
    main()
