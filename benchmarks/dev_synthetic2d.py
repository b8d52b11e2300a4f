"""Train and evaluate ``synthetic-2d``, the fully-synthetic radiograph / MR detector.

    python benchmarks/dev_synthetic2d.py            # evaluate only (leave-one-generator-out...)
    python benchmarks/dev_synthetic2d.py --ship     # ... and write models/synthetic-2d.json

What it does, all on CPU with one torch thread (the machine is shared):

1. authentic 2D images from the sources issue 6 may train on (never RG1_* nor Colin27, never
   the third-party fakes): MR files shipped with dicom3tools, nibabel and pydicom; the pynetdicom
   RT portal image; radiograph phantoms; AP and lateral projections of the two shared CT series
   (``samples.projection.ct_projection``); MR-like images simulated from those CT slices (tissue
   contrast, k-space truncation, Rician noise). CT is not the X-ray/MR evaluation set, so using
   it for radiograph- and MR-like training images is allowed;
2. benign variants of them (crops, flips, rescale 0.5-1.3 with bilinear / bicubic / Lanczos,
   8-bit conversion, the original integer grid kept otherwise);
3. four generator families per modality group (radiograph-like, MR), trained here on 64×64
   crops: ``vae-deconv`` and ``vae-resize`` (tamper.synthetic), ``gan`` and ``diffusion``
   (tamper.generators); fakes are their samples resized to an authentic image's size and value
   grid, a quarter of them with acquisition-like noise added, with the same benign variants;
4. leave-one-generator-out: a classifier trained on three families and one half of the
   authentic sources, tested on the fourth family and the other half (both ways round);
5. with ``--ship``: the classifier on all families (75 % of the base images), Platt calibration
   and the 1 %-FPR operating point on the other 25 %, written with its card;
6. the shipped model on held-out authentic images (RG1 CR as DICOM 16-bit, lossy J2K and 8-bit
   PNG; Colin27 slices) against fakes from the training generators, and on every third-party
   fake, image by image, beside real images of the same modality and format.

The printed report is also written to benchmarks/out/synthetic2d.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medforensics.detect.calibration import fit_platt
from medforensics.detect.spectral import noise_residual
from medforensics.detect.synthetic2d import (
    FEATURE_NAMES,
    Preprocessing,
    Synthetic2DDetector,
    Synthetic2DModel,
    fit_logistic,
    slice_features,
)
from medforensics.detect.types import OperatingPoint
from medforensics.evaluate.metrics import roc_auc, threshold_for_fpr, tpr_at_fpr
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples.phantom import chest_ct_phantom, radiograph_phantom
from medforensics.samples.projection import ct_projection
from medforensics.tamper.generators import (
    ALL_FAMILIES,
    fake_like,
    load_any,
    sample_unit,
    train_family,
    training_crops,
    unit_range,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VENV_SITE = next((REPO / ".venv" / "lib").glob("python3*/site-packages"), None)
MODEL_PATH = REPO / "src" / "medforensics" / "models" / "synthetic-2d.json"
REPORT_PATH = REPO / "benchmarks" / "out" / "synthetic2d.txt"
GEN_SIZE = 64
#: optimiser steps per family for the shipping run (0.5-2 min each on one thread)
GEN_STEPS = {"vae-deconv": 800, "vae-resize": 800, "gan": 1200, "diffusion": 900}
GEN_CONFIG: dict[str, dict[str, object]] = {
    "vae-deconv": {"latent": 32, "width": 8},
    "vae-resize": {"latent": 32, "width": 8},
    "gan": {"width": 8, "latent": 64},
    "diffusion": {"width": 8, "timesteps": 200, "sample_steps": 25},
}
GROUPS = ("xr", "mr")


# --- printing ---------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.start = time.perf_counter()

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def elapsed(self) -> str:
        return f"{time.perf_counter() - self.start:.0f} s"


# --- authentic sources ------------------------------------------------------------------------


@dataclass
class Base:
    """One authentic 2D image before augmentation."""

    pixels: np.ndarray
    group: str  # "xr" or "mr"
    source: str  # what it came from (the unit of the fold split)
    fold: int
    bits: int | None  # integer grid of the stored values (None: keep floats)
    name: str


def _first_volume(path: Path) -> ImageVolume:
    for item in load_paths([str(path)]):
        if isinstance(item, ImageVolume):
            return item
    raise FileNotFoundError(f"{path}: no image could be read")


def _bits(volume: ImageVolume) -> int:
    top = float(volume.pixels.max())
    return max(8, int(volume.bits_stored or 0), math.ceil(math.log2(max(top, 1.0) + 1)))


def mr_like(ct_slice: np.ndarray, rng: np.random.Generator, matrix: int) -> np.ndarray:
    """An MR-like magnitude image from a CT slice (HU): T1-ish contrast, k-space truncation,
    complex Gaussian noise (Rician magnitude), on a 12-bit grid, ``matrix`` pixels square."""
    from skimage.transform import resize

    hu = np.asarray(ct_slice, dtype=np.float64)
    contrast = np.interp(
        hu,
        [-1000, -700, -200, -80, -20, 30, 80, 250, 1000, 3000],
        [0.0, 0.04, 0.9, 0.95, 0.55, 0.45, 0.5, 0.35, 0.12, 0.08],
    )
    yy, xx = np.mgrid[0 : hu.shape[0], 0 : hu.shape[1]] / max(hu.shape)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    bias = 1.0 + 0.15 * np.sin(2 * np.pi * yy + phase[0]) * np.cos(2 * np.pi * xx + phase[1])
    clean = resize(contrast * bias, (matrix, matrix), order=1, anti_aliasing=True)
    # from nearly noise-free (averaged or denoised scans) to noisy
    sigma = float(np.exp(rng.uniform(np.log(0.002), np.log(0.04))))
    noisy = clean + sigma * (
        rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape)
    )
    # acquired matrix smaller than displayed: k-space zero-filled (sinc interpolation)
    kept = rng.uniform(0.5, 1.0)
    k = np.fft.fftshift(np.fft.fft2(noisy))
    half = int(matrix * kept / 2)
    mask = np.zeros_like(k, dtype=bool)
    c = matrix // 2
    mask[c - half : c + half, c - half : c + half] = True
    image = np.abs(np.fft.ifft2(np.fft.ifftshift(np.where(mask, k, 0))))
    gain = rng.uniform(1500, 3500)
    return np.clip(np.rint(image * gain), 0, 4095).astype(np.float32)


def authentic_bases(rng: np.random.Generator, log: Report) -> list[Base]:
    """Every authentic base image, with its modality group, source and fold."""
    import pydicom.data

    bases: list[Base] = []

    def add(pixels: np.ndarray, group: str, source: str, fold: int, bits: int | None, name: str):
        bases.append(Base(np.asarray(pixels, np.float32), group, source, fold, bits, name))

    # radiograph-like
    for k, size in enumerate((256, 384, 512, 640, 768, 896, 1024, 1280)):
        sigma = float(rng.uniform(1, 14))
        phantom = radiograph_phantom(size, np.random.default_rng(100 + k), noise_sigma=sigma)
        add(phantom[0], "xr", "phantom", k % 2, 12, f"radiograph_phantom {size} sigma {sigma:.0f}")
    rt_path = (VENV_SITE / "pynetdicom/tests/dicom_files/RTImageStorage.dcm") if VENV_SITE else None
    if rt_path is not None and rt_path.is_file():
        rt = _first_volume(rt_path)
        add(rt.pixels[0], "xr", "rtimage", 1, 16, "pynetdicom RTImageStorage.dcm")
    ct_series = [
        ("proj-philips", 0, SHARED / "lung_pet_ct_dx_A0001_philips"),
        ("proj-cptac", 1, SHARED / "cptac_lscc_C3N-00247_siemens"),
    ]
    ct_volumes: dict[str, list[ImageVolume]] = {}
    for source, fold, folder in ct_series:
        volumes = [v for v in load_paths([str(folder)]) if isinstance(v, ImageVolume)]
        ct_volumes[source] = volumes
        for v_index, volume in enumerate(volumes):
            for axis in (1, 2):
                for pixel_mm in (None, 0.4, 0.2):
                    photons = float(rng.choice([1500.0, 4000.0, 10000.0, 50000.0]))
                    blur = float(rng.uniform(0.5, 1.2))
                    dx = ct_projection(
                        volume, rng, axis, photons=photons, blur_sigma=blur, pixel_mm=pixel_mm
                    )
                    add(
                        dx.pixels[0],
                        "xr",
                        source,
                        fold,
                        12,
                        f"{source} r{v_index} ax{axis} {pixel_mm or 'native'}mm {photons:g}ph",
                    )
    # MR
    mr_files = [
        ("mr-0051", 0, Path("/usr/share/doc/dicom3tools/examples/0051.dcm")),
        ("mr-overlay", 0, Path(pydicom.data.get_testdata_file("examples_overlay.dcm") or "")),
        (
            "mr-slicethick",
            1,
            VENV_SITE / "nibabel/nicom/tests/data/slicethickness_empty_string.dcm"
            if VENV_SITE
            else Path(),
        ),
        ("mr-small", 1, Path(pydicom.data.get_testdata_file("MR_small.dcm") or "")),
        (
            "mr-example4d",
            1,
            VENV_SITE / "nibabel/tests/data/example4d.nii.gz" if VENV_SITE else Path(),
        ),
    ]
    for source, fold, path in mr_files:
        if not path.is_file():
            log(f"  (missing MR source {path}: left out)")
            continue
        volume = _first_volume(path)
        for z in range(volume.shape[0]):
            plane = volume.pixels[z]
            if float(plane.std()) > 0 and min(plane.shape) >= 48:
                add(plane, "mr", source, fold, _bits(volume), f"{path.name} slice {z}")
    for source, fold in (("proj-philips", 0), ("proj-cptac", 1)):
        if not ct_volumes[source]:
            log(f"  (no CT series for {source}: left out)")
            continue
        volume = ct_volumes[source][0]
        for z in np.linspace(4, volume.shape[0] - 5, 10).round().astype(int):
            matrix = int(rng.choice([192, 256, 320, 384, 512]))
            add(
                mr_like(volume.pixels[z], rng, matrix),
                "mr",
                source.replace("proj", "mrsim"),
                fold,
                12,
                f"MR-like from {source[5:]} CT slice {z}, {matrix}px",
            )
    return bases


# --- benign processing ------------------------------------------------------------------------

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def resize_image(pixels: np.ndarray, factor: float, method: str = "bilinear") -> np.ndarray:
    """Resize a float image by ``factor`` with Pillow (mode F), as viewers and converters do."""
    rows, cols = pixels.shape
    size = (max(8, round(cols * factor)), max(8, round(rows * factor)))
    image = Image.fromarray(np.asarray(pixels, np.float32), mode="F")
    return np.asarray(image.resize(size, _RESAMPLE[method]), dtype=np.float32)


def to_8bit(pixels: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Window (full range, or a percentile window) to 0..255 and round: an 8-bit export."""
    low, high = float(pixels.min()), float(pixels.max())
    if rng is not None and rng.random() < 0.5:
        low, high = np.percentile(pixels, [rng.uniform(0, 1), rng.uniform(99, 100)])
    scaled = (pixels - low) / max(high - low, 1e-9) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.float32)


def on_grid(pixels: np.ndarray, bits: int | None) -> np.ndarray:
    if bits is None:
        return pixels.astype(np.float32)
    return np.clip(np.rint(pixels), 0, 2**bits - 1).astype(np.float32)


def benign_variant(
    pixels: np.ndarray, bits: int | None, rng: np.random.Generator, min_side: int = 64
) -> tuple[np.ndarray, str]:
    """A random benign version: crop, flip, rescale within clinical ranges, bit depth."""
    steps = []
    out = np.asarray(pixels, np.float32)
    if rng.random() < 0.6 and min(out.shape) > 2 * min_side:
        rows, cols = out.shape
        height = max(min_side, int(rows * rng.uniform(0.6, 1.0)))
        width = max(min_side, int(cols * rng.uniform(0.6, 1.0)))
        top, left = int(rng.integers(0, rows - height + 1)), int(rng.integers(0, cols - width + 1))
        out = out[top : top + height, left : left + width]
        steps.append("crop")
    if rng.random() < 0.5:
        out = out[:, ::-1]
        steps.append("flip")
    if rng.random() < 0.45:
        factor = float(rng.uniform(0.5, 1.3))
        method = str(rng.choice(list(_RESAMPLE)))
        if min(out.shape) * factor >= min_side:
            out = on_grid(resize_image(out, factor, method), bits)
            steps.append(f"x{factor:.2f} {method}")
    if rng.random() < 0.4:
        out = to_8bit(out, rng)
        steps.append("8-bit")
    return np.ascontiguousarray(out), "+".join(steps) or "as stored"


# --- generators and fakes ---------------------------------------------------------------------


def train_generators(
    bases: list[Base], seed: int, scale: float, cache: Path | None, log: Report
) -> dict[tuple[str, str], object]:
    """One generator per (group, family), trained on 64×64 crops of that group's images."""
    generators: dict[tuple[str, str], object] = {}
    for group in GROUPS:
        images = [b.pixels for b in bases if b.group == group]
        crops = training_crops(images, GEN_SIZE, 768, np.random.default_rng(seed + 11))
        digest = hashlib.sha256(crops.tobytes()).hexdigest()[:10]
        for family in ALL_FAMILIES:
            steps = max(5, int(GEN_STEPS[family] * scale))
            path = cache / f"{group}-{family}-{digest}-{steps}-{seed}.pt" if cache else None
            start = time.perf_counter()
            if path is not None and path.is_file():
                generators[(group, family)] = load_any(path)
                how = "loaded from cache"
            else:
                modality = "DX" if group == "xr" else "MR"
                generators[(group, family)] = train_family(
                    crops, family, seed, steps=steps, modality=modality, **GEN_CONFIG[family]
                )
                how = f"trained {steps} steps"
                if path is not None:
                    generators[(group, family)].save(path)  # type: ignore[attr-defined]
            log(f"  {group:3s} {family:11s} {how} in {time.perf_counter() - start:.0f} s")
    return generators


@dataclass
class Item:
    """One image the classifier sees."""

    pixels: np.ndarray
    label: int
    group: str
    source: str
    fold: int
    family: str  # "" for authentic
    noise: bool
    base: int  # index of the base image (authentic) or the template (fake)
    how: str


def make_fake(
    unit: np.ndarray, template: Base, rng: np.random.Generator, add_noise: bool
) -> tuple[np.ndarray, str]:
    """A generator output as a fake standing in for ``template``, then benign variants."""
    rows, cols = template.pixels.shape
    if rng.random() < 0.5:
        shape = (rows, cols)
        steps = [f"{rows}x{cols}"]
    else:  # close to the generator's own resolution
        side = GEN_SIZE * rng.uniform(1.0, 4.0)
        aspect = math.sqrt(rows / cols)
        shape = (max(48, round(side * aspect)), max(48, round(side / aspect)))
        steps = [f"{shape[0]}x{shape[1]}"]
    pixels = fake_like(unit, shape, unit_range(template.pixels), None)
    if add_noise:
        level = float(np.std(noise_residual(template.pixels))) * rng.uniform(0.5, 1.5)
        noise = rng.standard_normal(pixels.shape) * level
        if rng.random() < 0.5:
            from scipy import ndimage

            noise = ndimage.gaussian_filter(noise, rng.uniform(0.5, 1.0))
            noise *= level / max(float(noise.std()), 1e-9)
        pixels = pixels + noise.astype(np.float32)
        steps.append("noise")
    if template.bits is not None:
        pixels = np.clip(pixels, 0, None)
    pixels = on_grid(pixels, template.bits)
    variant, how = benign_variant(pixels, template.bits, rng)
    return variant, "+".join([*steps, how])


def build_items(
    bases: list[Base],
    generators: dict[tuple[str, str], object],
    rng: np.random.Generator,
    per_source: int,
    per_family: int,
) -> list[Item]:
    items: list[Item] = []
    by_source: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, base in enumerate(bases):
        by_source[(base.group, base.source)].append(index)
    for (group, source), indices in sorted(by_source.items()):
        for k in range(per_source):
            index = indices[k % len(indices)] if k < len(indices) else int(rng.choice(indices))
            base = bases[index]
            pixels, how = benign_variant(base.pixels, base.bits, rng)
            items.append(Item(pixels, 0, group, source, base.fold, "", False, index, how))
    for group in GROUPS:
        templates = [i for i, b in enumerate(bases) if b.group == group]
        for family in ALL_FAMILIES:
            generator = generators[(group, family)]
            units = sample_unit(generator, per_family, seed=int(rng.integers(2**31)))  # type: ignore[arg-type]
            for unit in units:
                index = int(rng.choice(templates))
                template = bases[index]
                noisy = bool(rng.random() < 0.25)
                pixels, how = make_fake(unit, template, rng, noisy)
                items.append(
                    Item(
                        pixels, 1, group, template.source, template.fold, family, noisy, index, how
                    )
                )
    return items


def features_of(items: list[Item], prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    rows, keep = [], []
    for k, item in enumerate(items):
        vector = slice_features(item.pixels, prep)
        if vector is not None and np.all(np.isfinite(vector)):
            rows.append(vector)
            keep.append(k)
    return np.stack(rows), np.asarray(keep)


# --- evaluation -------------------------------------------------------------------------------


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    if len(np.unique(labels)) < 2:
        return math.nan
    return roc_auc(labels, scores)


def leave_one_generator_out(
    items: list[Item], x: np.ndarray, c: float, log: Report
) -> dict[str, dict[str, float]]:
    labels = np.array([i.label for i in items])
    folds = np.array([i.fold for i in items])
    families = np.array([i.family for i in items])
    groups = np.array([i.group for i in items])
    noisy = np.array([i.noise for i in items])
    results: dict[str, dict[str, float]] = {}
    log("family held out | AUC xr | AUC mr | AUC all | noise-added AUC | TPR@1%FPR all")
    for held in ALL_FAMILIES:
        scores = np.full(len(items), np.nan)
        test_mask = np.zeros(len(items), dtype=bool)
        for fold in (0, 1):
            train = (folds == fold) & ((labels == 0) | (families != held))
            test = (folds != fold) & ((labels == 0) | (families == held))
            mean, scale, coef, intercept = fit_logistic(x[train], labels[train], c)
            scores[test] = ((x[test] - mean) / scale) @ coef + intercept
            test_mask |= test
        # a fold's scores come from its own model: AUC within each fold, then averaged
        row: dict[str, float] = {}
        for name, subset in (
            ("xr", groups == "xr"),
            ("mr", groups == "mr"),
            ("all", np.ones(len(items), dtype=bool)),
        ):
            per_fold = [
                _auc(labels[m], scores[m])
                for fold in (0, 1)
                if (m := test_mask & subset & (folds != fold)).any()
            ]
            row[name] = float(np.nanmean(per_fold)) if per_fold else math.nan
        m_noise = test_mask & ((labels == 0) | noisy)
        row["noise"] = float(
            np.nanmean(
                [
                    _auc(labels[m_noise & (folds == f)], scores[m_noise & (folds == f)])
                    for f in (0, 1)
                ]
            )
        )
        row["tpr"] = float(
            np.mean(
                [
                    tpr_at_fpr(
                        labels[test_mask & (folds == f)], scores[test_mask & (folds == f)], 0.01
                    )
                    for f in (0, 1)
                ]
            )
        )
        results[held] = row
        log(
            f"{held:16s} | {row['xr']:.3f}  | {row['mr']:.3f}  | {row['all']:.3f}   | "
            f"{row['noise']:.3f}           | {row['tpr']:.3f}"
        )
    return results


def ship_model(
    items: list[Item], x: np.ndarray, bases: list[Base], c: float, seed: int, log: Report
) -> tuple[Synthetic2DModel, dict[str, object]]:
    """Classifier on 75 % of base images, Platt + 1 % FPR operating point on the other 25 %."""
    rng = np.random.default_rng(seed + 7)
    val_bases = {i for i in range(len(bases)) if rng.random() < 0.25}
    labels = np.array([i.label for i in items])
    val = np.array([i.base in val_bases for i in items])
    mean, scale, coef, intercept = fit_logistic(x[~val], labels[~val], c)
    logits = ((x - mean) / scale) @ coef + intercept
    calibration = fit_platt(logits[val], labels[val])
    probs = calibration(logits[val])
    authentic_val = probs[labels[val] == 0]
    manipulated_at = min(1.0, threshold_for_fpr(authentic_val, 0.01))
    point = OperatingPoint(
        manipulated_at=manipulated_at,
        authentic_below=min(manipulated_at, 0.5),
        target_fpr=0.01,
    )
    val_labels = labels[val]
    stats = {
        "validation_images": int(val.sum()),
        "validation_authentic": int((val_labels == 0).sum()),
        "validation_auc": round(_auc(val_labels, logits[val]), 4),
        "validation_fpr": round(float(np.mean(authentic_val >= manipulated_at)), 4),
        "validation_tpr": round(float(np.mean(probs[val_labels == 1] >= manipulated_at)), 4),
    }
    log(
        f"validation: {stats['validation_images']} images ({stats['validation_authentic']} "
        f"authentic), AUC {stats['validation_auc']:.3f}, operating point "
        f"{manipulated_at:.3f}: FPR {stats['validation_fpr']:.3f} TPR {stats['validation_tpr']:.3f}"
    )
    model = Synthetic2DModel(
        feature_names=list(FEATURE_NAMES),
        mean=mean,
        scale=scale,
        coef=coef,
        intercept=intercept,
        calibration=calibration,
        operating_point=point,
        preprocessing=Preprocessing(),
    )
    return model, stats


# --- held-out and third-party images ----------------------------------------------------------


def volume_of(pixels: np.ndarray, modality: str, label: str) -> ImageVolume:
    array = np.asarray(pixels, np.float32)
    return ImageVolume(label, "image", modality, array[None] if array.ndim == 2 else array)


def png_roundtrip(pixels: np.ndarray, folder: Path, name: str) -> ImageVolume:
    """Write an 8-bit PNG and read it back through the project's loader (modality OT)."""
    path = folder / f"{name}.png"
    Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)).save(path)
    return _first_volume(path)


def lunggen_tiles(path: Path) -> list[np.ndarray]:
    """The 4 DDPM tiles of a LungGen figure (950×277; tile frames found on epoch 11), inset."""
    figure = _first_volume(path).pixels[0]
    if figure.shape != (277, 950):
        raise ValueError(f"{path}: expected a 950x277 figure, got {figure.shape[::-1]}")
    boxes = [(14, 241), (245, 473), (477, 705), (708, 937)]
    return [figure[37:261, left + 3 : right - 3] for left, right in boxes]


def braintrain_tiles(path: Path) -> list[tuple[str, np.ndarray]]:
    """(label, tile) of braintrain.png: rows 2 and 5 are Gen. (fake), 3 and 6 Orig. (real)."""
    from scipy import ndimage

    figure = _first_volume(path).pixels[0]
    labelled, _ = ndimage.label(figure < 245)
    boxes = [
        (s[0].start, s[0].stop, s[1].start, s[1].stop)
        for s in ndimage.find_objects(labelled)
        if s is not None and s[0].stop - s[0].start > 100 and s[1].stop - s[1].start > 100
    ]
    tops = sorted({b[0] for b in boxes})
    rows: list[int] = []
    for top in tops:
        if not rows or top - rows[-1] > 50:
            rows.append(top)
    out = []
    for top, bottom, left, right in sorted(boxes, key=lambda b: (b[0] // 50, b[2])):
        row = min(range(len(rows)), key=lambda r: abs(rows[r] - top))
        kind = ("cond", "fake", "real")[row % 3]
        if kind != "cond":
            out.append((kind, figure[top + 2 : bottom - 2, left + 2 : right - 2]))
    # block by block: the fake of pair k is tile k among the fakes, its original tile k of reals
    return out


@dataclass
class Scored:
    """One image scored by the shipped model, for the image-by-image table."""

    table: str  # which comparison it belongs to
    what: str
    label: int  # 1 fake, 0 real
    shape: str
    score: float
    verdict: str


class Scorer:
    """Scores volumes with the detector and keeps every row."""

    def __init__(self, detector: Synthetic2DDetector) -> None:
        self.detector = detector
        self.rows: list[Scored] = []

    def __call__(self, volume: ImageVolume, table: str, what: str, label: int) -> None:
        detection = self.detector.detect(volume)
        shape = "x".join(str(s) for s in volume.shape[1:])
        if volume.shape[0] > 1:
            shape = "x".join(str(s) for s in volume.shape)
        self.rows.append(Scored(table, what, label, shape, detection.score, detection.verdict))

    def summary(self, *tables: str) -> dict[str, object]:
        rows = [r for r in self.rows if r.table in tables]
        labels = np.array([r.label for r in rows])
        scores = np.array([r.score for r in rows])
        at = self.detector.operating_point.manipulated_at
        fakes, reals = scores[labels == 1], scores[labels == 0]
        return {
            "fakes": int(fakes.size),
            "fakes_flagged": int((fakes >= at).sum()),
            "real": int(reals.size),
            "real_flagged": int((reals >= at).sum()),
            "auc": round(_auc(labels, scores), 4),
            "median_score_fake": round(float(np.median(fakes)), 4) if fakes.size else None,
            "median_score_real": round(float(np.median(reals)), 4) if reals.size else None,
        }


def held_out_and_third_party(
    detector: Synthetic2DDetector,
    generators: dict[tuple[str, str], object],
    seed: int,
    log: Report,
) -> dict[str, object]:
    rng = np.random.default_rng(seed + 99)
    rg1_path = SHARED / "pydicom_data_samples" / "RG1_UNCR.dcm"
    colin_path = SHARED / "brain_mri_t1_colin27_mricron_data" / "ch2.nii.gz"
    if not rg1_path.is_file() or not colin_path.is_file():
        log("held-out data missing: skipped")
        return {}
    score = Scorer(detector)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rg1 = _first_volume(rg1_path)
        rg1_pixels = rg1.pixels[0]
        rg1_8 = to_8bit(rg1_pixels)
        colin = _first_volume(colin_path)
        colin_slices = list(range(20, colin.shape[0] - 20, 10))
        _held_out_images(score, folder, rg1, rg1_8, colin, colin_slices)
        _held_out_fakes(score, generators, rng, rg1_pixels, rg1_8, colin, colin_slices)
        _third_party(score, folder, rg1_pixels, colin, colin_slices)

    results: dict[str, object] = {}
    log("")
    log("== held-out authentic images (never trained on) vs fakes of the training generators")
    for group, real_table in (("xr", "held-out CR"), ("mr", "held-out MR")):
        for fake_table in (f"fake ({group})", f"fake+noise ({group})"):
            merged = f"{real_table} vs {fake_table}"
            results[merged] = summary = score.summary(real_table, fake_table)
            log(
                f"{merged:34s}: AUC {summary['auc']:.3f}; real flagged manipulated "
                f"{summary['real_flagged']}/{summary['real']}; fakes flagged "
                f"{summary['fakes_flagged']}/{summary['fakes']}"
            )
    colin_row = next(r for r in score.rows if r.what.startswith("Colin27 whole volume"))
    results["colin27_volume"] = {"score": round(colin_row.score, 4), "verdict": colin_row.verdict}
    log(f"Colin27 as one volume (mean slice logit): {colin_row.score:.3f} {colin_row.verdict}")
    log("")
    log("== third-party fakes beside real images of the same modality and format")
    third: dict[str, object] = {}
    for table in sorted({r.table for r in score.rows if r.table.startswith("3rd-party")}):
        third[table] = summary = score.summary(table)
        log(
            f"{table:22s}: fakes flagged {summary['fakes_flagged']}/{summary['fakes']}, real "
            f"flagged {summary['real_flagged']}/{summary['real']}, AUC {summary['auc']}, median "
            f"score fake {summary['median_score_fake']} real {summary['median_score_real']}"
        )
    results["third_party"] = third
    log("")
    log(
        "== image by image (verdict manipulated at score >= "
        f"{detector.operating_point.manipulated_at:.3f}, authentic below "
        f"{detector.operating_point.authentic_below:.3f})"
    )
    log(f"{'set':22s} | {'image':48s} | truth | {'size':11s} | score | verdict")
    for r in score.rows:
        truth = "fake" if r.label else "real"
        log(
            f"{r.table:22s} | {r.what[:48]:48s} | {truth:5s} | {r.shape:11s} | {r.score:.3f} "
            f"| {r.verdict}"
        )
    return results


def _held_out_images(
    score: Scorer,
    folder: Path,
    rg1: ImageVolume,
    rg1_8: np.ndarray,
    colin: ImageVolume,
    colin_slices: list[int],
) -> None:
    """RG1 (DICOM, lossy J2K, 8-bit PNG, resized) and Colin27 (volume, slices, resized PNG)."""
    table = "held-out CR"
    score(rg1, table, "RG1_UNCR.dcm (DICOM, 15 bits stored)", 0)
    score(_first_volume(SHARED / "pydicom_data_samples" / "RG1_J2KI.dcm"), table,
          "RG1_J2KI.dcm (lossy JPEG 2000 copy)", 0)  # fmt: skip
    score(png_roundtrip(rg1_8, folder, "rg1"), table, "RG1 as 8-bit PNG", 0)
    for factor in (0.5, 0.75, 1.25):
        resized = to_8bit(resize_image(rg1.pixels[0], factor, "bicubic"))
        score(png_roundtrip(resized, folder, f"rg1_{factor}"), table,
              f"RG1 x{factor} bicubic 8-bit PNG", 0)  # fmt: skip
    for factor in (0.75, 1.25):
        resized = on_grid(resize_image(rg1.pixels[0], factor), 16)
        score(volume_of(resized, "CR", "rg1"), table, f"RG1 x{factor} bilinear 16-bit", 0)
    table = "held-out MR"
    score(colin, "held-out MR volume", "Colin27 whole volume ch2.nii.gz", 0)
    for k, z in enumerate(colin_slices):
        plane = colin.pixels[z]
        score(volume_of(plane, "MR", "colin"), table, f"Colin27 slice {z}", 0)
        factor = (0.75, 1.25)[k % 2]
        resized = to_8bit(resize_image(plane, factor, "bicubic"))
        score(png_roundtrip(resized, folder, f"colin{z}"), table,
              f"Colin27 slice {z} x{factor} 8-bit PNG", 0)  # fmt: skip


def _held_out_fakes(
    score: Scorer,
    generators: dict[tuple[str, str], object],
    rng: np.random.Generator,
    rg1_pixels: np.ndarray,
    rg1_8: np.ndarray,
    colin: ImageVolume,
    colin_slices: list[int],
) -> None:
    """Fakes of every training generator standing in for the held-out images: 10 clean and
    4 with the template's noise level added, per family and modality group."""
    templates = {
        "xr": [(rg1_pixels, 16, "CR"), (rg1_8, 8, "OT")],
        "mr": [(colin.pixels[z], 8, "MR") for z in colin_slices[::2]],
    }
    for group in GROUPS:
        for family in ALL_FAMILIES:
            generator = generators[(group, family)]
            units = sample_unit(generator, 14, int(rng.integers(2**31)))  # type: ignore[arg-type]
            for k, unit in enumerate(units):
                pixels_t, bits, modality = templates[group][k % len(templates[group])]
                fake = fake_like(unit, pixels_t.shape, unit_range(pixels_t), bits)
                what = f"{family} fake as {modality} {bits}-bit"
                table = f"fake ({group})"
                if k >= 10:
                    level = float(np.std(noise_residual(pixels_t)))
                    fake = on_grid(fake + rng.normal(0, level, fake.shape), bits)
                    what, table = f"{what} + noise", f"fake+noise ({group})"
                score(volume_of(fake, modality, what), table, what, 1)


def _third_party(
    score: Scorer, folder: Path, rg1_pixels: np.ndarray, colin: ImageVolume, colin_slices: list[int]
) -> None:
    """Every third-party fake, and real images prepared the same way (size, 8-bit PNG)."""
    medigan = SHARED / "fake_medigan_samples"
    for name, what, table in (
        ("00019_v1_1024.png", "PGGAN chest X-ray 1024", "3rd-party CXR 1024"),
        ("00019_thumb.png", "PGGAN chest X-ray thumbnail", "3rd-party CXR 128"),
        ("00017.png", "DCGAN lung-nodule patch", "3rd-party CXR 128"),
        ("00021.png", "CycleGAN T1->T2 brain MRI", "3rd-party MRI 224x192"),
    ):
        if (medigan / name).is_file():
            score(_first_volume(medigan / name), table, f"medigan {name} ({what})", 1)
    side = min(rg1_pixels.shape)
    real_1024 = to_8bit(resize_image(rg1_pixels, 1024 / max(rg1_pixels.shape), "lanczos"))
    score(png_roundtrip(real_1024, folder, "r1024"), "3rd-party CXR 1024",
          "RG1 resized to 1024 px, 8-bit PNG", 0)  # fmt: skip
    crops = ((0.1, 0.1, 0.8), (0.3, 0.05, 0.4), (0.3, 0.55, 0.4), (0.0, 0.0, 1.0))
    for k, (top, left, fraction) in enumerate(crops):
        r0, c0, span = int(top * side), int(left * side), int(fraction * side)
        crop = rg1_pixels[r0 : r0 + span, c0 : c0 + span]
        small = resize_image(crop, 128 / span, "lanczos")
        score(png_roundtrip(to_8bit(small), folder, f"r128_{k}"), "3rd-party CXR 128",
              f"RG1 crop {k} at 128 px, 8-bit PNG", 0)  # fmt: skip
        # drawn like a LungGen figure tile: a 128 px image shown at about 224 px
        tile = to_8bit(resize_image(small, 224 / 128))
        score(png_roundtrip(tile, folder, f"rtile_{k}"), "3rd-party CXR figure tile",
              f"RG1 crop {k}, 128 px drawn at 224 px", 0)  # fmt: skip
    for z in colin_slices[1::2]:
        as_8bit = Image.fromarray(to_8bit(colin.pixels[z]).astype(np.uint8))
        mri = np.asarray(as_8bit.resize((192, 224), Image.BILINEAR), np.float32)
        score(png_roundtrip(mri, folder, f"c224_{z}"), "3rd-party MRI 224x192",
              f"Colin27 slice {z} at 224x192, 8-bit PNG", 0)  # fmt: skip
    lunggen = sorted((SHARED / "fake_lunggen_ddpm_cxr_figures").glob("lunggen_epoch*.png"))
    for path in lunggen:
        for k, tile in enumerate(lunggen_tiles(path)):
            score(volume_of(tile, "OT", path.name), "3rd-party CXR figure tile",
                  f"{path.stem} tile {k + 1} (DDPM)", 1)  # fmt: skip
    brain = SHARED / "fake_ctgan_figures" / "braintrain.png"
    if brain.is_file():
        seen: dict[str, int] = defaultdict(int)
        for kind, tile in braintrain_tiles(brain):
            seen[kind] += 1
            what = f"braintrain pair {seen[kind]} " + ("Gen. (GAN)" if kind == "fake" else "Orig.")
            score(volume_of(tile, "MR", what), "3rd-party braintrain", what, int(kind == "fake"))


def speed(detector: Synthetic2DDetector, log: Report) -> dict[str, float]:
    radiograph = radiograph_phantom(1024, np.random.default_rng(5))
    dx = volume_of(radiograph[0], "DX", "speed")
    detector.detect(dx)
    start = time.perf_counter()
    for _ in range(10):
        detector.detect(dx)
    per_dx = (time.perf_counter() - start) / 10
    ct = chest_ct_phantom(32, 256, np.random.default_rng(6))
    mr = volume_of(np.clip(ct + 1024, 0, 4095).round(), "MR", "speed")
    start = time.perf_counter()
    detector.detect(mr)
    per_mr = (time.perf_counter() - start) / 32
    log(
        f"speed: {1 / per_dx:.1f} radiographs/s at 1024x1024, {1 / per_mr:.1f} MR slices/s at "
        f"256x256 (one process, this shared 2-core machine)"
    )
    return {
        "radiographs_per_s_1024": round(1 / per_dx, 1),
        "mr_slices_per_s_256": round(1 / per_mr, 1),
    }


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ship", action="store_true", help="write models/synthetic-2d.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of generator steps and images (0.05 for a smoke test)",
    )
    parser.add_argument("--c", type=float, default=0.05, help="inverse L2 strength")
    parser.add_argument(
        "--cache", type=Path, default=None, help="folder to keep trained generators in between runs"
    )
    parser.add_argument("--out", type=Path, default=REPORT_PATH)
    parser.add_argument(
        "--save-features",
        type=Path,
        default=None,
        help="write the feature matrix and item labels (.npz) for experiments",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    log = Report()
    rng = np.random.default_rng(args.seed)
    log(
        f"dev_synthetic2d.py seed {args.seed} scale {args.scale} C {args.c}"
        f"{' --ship' if args.ship else ''}"
    )
    log("")
    log("== authentic training sources (not held out)")
    bases = authentic_bases(rng, log)
    counts: dict[tuple[str, str, int], int] = defaultdict(int)
    for base in bases:
        counts[(base.group, base.source, base.fold)] += 1
    for (group, source, fold), n in sorted(counts.items()):
        log(f"  {group} {source:14s} fold {fold}: {n} base images")
    log("")
    log(f"== generators: {GEN_SIZE}x{GEN_SIZE}, one per modality group and family")
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    generators = train_generators(bases, args.seed, args.scale, args.cache, log)
    per_source = max(8, int(120 * args.scale))
    per_family = max(8, int(150 * args.scale))
    items = build_items(bases, generators, rng, per_source, per_family)
    prep = Preprocessing()
    start = time.perf_counter()
    x, keep = features_of(items, prep)
    items = [items[k] for k in keep]
    n_auth = sum(1 for i in items if i.label == 0)
    log(
        f"features: {len(items)} images ({n_auth} authentic, {len(items) - n_auth} fake), "
        f"{x.shape[1]} features, {time.perf_counter() - start:.0f} s   [{log.elapsed()}]"
    )
    if args.save_features is not None:
        columns = ("label", "group", "source", "fold", "family", "noise", "base")
        np.savez(args.save_features, x=x, **{c: [getattr(i, c) for i in items] for c in columns})
    log("")
    log(
        "== leave-one-generator-out (train: 3 families + one half of the authentic sources; "
        "test: the 4th family + the other half; AUC averaged over both halves)"
    )
    log(
        "  noise-added AUC: only the held-out family's fakes with noise added; TPR@1%FPR: at "
        "the threshold giving 1 % FPR on that half's authentic images (an oracle threshold)"
    )
    logo = leave_one_generator_out(items, x, args.c, log)
    log(f"[{log.elapsed()}]")
    log("")
    log("== shipped model: all four families")
    model, stats = ship_model(items, x, bases, args.c, args.seed, log)
    detector = Synthetic2DDetector(model)
    held = held_out_and_third_party(detector, generators, args.seed, log)
    log("")
    timing = speed(detector, log)
    order = np.argsort(-np.abs(model.coef))[:10]
    log(
        "largest standardised weights: "
        + ", ".join(f"{FEATURE_NAMES[k]} {model.coef[k]:+.2f}" for k in order)
    )
    model.card = {
        "detector": "synthetic-2d",
        "task": "fully synthetic (AI-generated) radiographs and MR images; slice features, "
        "volume score = Platt(mean slice logit)",
        "command": "python benchmarks/dev_synthetic2d.py --ship"
        + (f" --seed {args.seed}" if args.seed else "")
        + (f" --scale {args.scale}" if args.scale != 1.0 else ""),
        "classifier": f"scikit-learn LogisticRegression (L2, C={args.c}, balanced classes) on "
        f"{len(FEATURE_NAMES)} standardised features",
        "preprocessing": "each slice mapped to [0,1] by its 0.5/99.5 percentiles; whole view = "
        "integer area-downsample to <= 512 px; crop view = native 256 px centre "
        "crop; at most 64 evenly spaced slices per volume, blank ones skipped",
        "generator_families": {
            family: {
                "steps": max(5, int(GEN_STEPS[family] * args.scale)),
                "size": GEN_SIZE,
                **GEN_CONFIG[family],
            }
            for family in ALL_FAMILIES
        },
        "fakes": "generator samples bilinear-resized to an authentic image's size (half) or to "
        "1-4x the generator size (half), mapped to its 0.5-99.5 percentile range and "
        "integer grid; 25 % with Gaussian noise of the image's residual level added; "
        "then the same benign variants as authentic images",
        "benign_augmentation": "crop 60-100 %, flip, rescale 0.5-1.3 (Pillow bilinear/bicubic/"
        "Lanczos), 8-bit export (full range or percentile window)",
        "trained_on": [
            "../shared/data/lung_pet_ct_dx_A0001_philips (TCIA Lung-PET-CT-Dx, CC BY 4.0): "
            "simulated AP/lateral radiographs and MR-like slices",
            "../shared/data/cptac_lscc_C3N-00247_siemens (TCIA CPTAC-LSCC, CC BY 3.0): "
            "simulated AP/lateral radiographs and MR-like slices",
            "pynetdicom tests/dicom_files/RTImageStorage.dcm (RT portal image, MIT)",
            "dicom3tools examples/0051.dcm (MR, BSD-style)",
            "nibabel tests/data/example4d.nii.gz and nicom/tests/data/"
            "slicethickness_empty_string.dcm (MR, MIT)",
            "pydicom test files examples_overlay.dcm, MR_small.dcm (MR, MIT)",
            "medforensics.samples.radiograph_phantom (synthetic phantoms, authentic class)",
        ],
        "not_trained_on": "RG1_* CR and Colin27 (held out); the third-party fakes in "
        "../shared/data/fake_* (test only); nibabel 0.dcm/1.dcm are a "
        "synthetic stripe pattern, not anatomy, and were left out",
        "attribution": "Data from The Cancer Imaging Archive (TCIA; Clark et al., J Digit "
        "Imaging 2013): Lung-PET-CT-Dx (DOI 10.7937/TCIA.2020.NNC20461), "
        "CPTAC-LSCC (DOI 10.7937/K9/TCIA.2018.6EMUB5L2)",
        "leave_one_generator_out": {
            k: {m: round(v, 4) for m, v in row.items()} for k, row in logo.items()
        },
        "validation": stats,
        "held_out": held,
        "speed": timing,
        "intended_use": "screening radiographs and MR series for fully AI-generated images, "
        "beside the pixel-tamper detectors; a high score says the fine-scale "
        "statistics are those of resized generator output. Not for clinical or "
        "legal decisions on its own.",
        "limits": "authentic training data are few (a handful of real MR and one RT image, "
        "the rest simulated from two CT patients and phantoms); generators are small "
        "and trained here; the operating point comes from validation images of the "
        "same sources, so the false-positive rate on other scanners can be higher "
        "(see held_out); images re-rendered in figures or screenshots are out of "
        "scope; a generated image with added acquisition-like noise is harder "
        "(leave_one_generator_out.noise).",
        "seed": args.seed,
    }
    if args.ship:
        model.save(MODEL_PATH)
        log(f"wrote {MODEL_PATH.relative_to(REPO)}")
    log(f"total {log.elapsed()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(log.lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
