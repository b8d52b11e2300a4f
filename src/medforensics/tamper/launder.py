"""Laundering: post-processing that hides tamper traces, applied to the whole image.

Each operation is a pair of functions in ``LAUNDER_OPS``: one draws its parameters from the
generator, the other applies them. ``launder_result`` runs a list of them after any attack and
records them under ``truth.params["laundering"]``; because laundering touches every pixel, the
ground-truth mask stays the attack's own footprint (a detector is asked to find the attack,
not the laundering). Run alone, as the ``launder`` attack, the mask is the whole image.

The lossy re-encodings work like an attacker's export: JPEG goes through an 8-bit windowed
image (pixels outside the window keep their values, since a clipped lung window would give the
game away at once); JPEG 2000 goes through a 16-bit image of the full range.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
from PIL import Image

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import value_range
from medforensics.tamper.base import Attack, GroundTruth, Params, TamperResult
from medforensics.tamper.registry import register_attack
from medforensics.tamper.texture import highpass

Sampler = Callable[[ImageVolume, np.random.Generator], Params]
Applier = Callable[[np.ndarray, ImageVolume, Params, np.random.Generator], np.ndarray]

#: CT windows (centre, width) an attacker might export through
CT_WINDOWS = {"lung": (-600.0, 1500.0), "mediastinum": (40.0, 400.0), "wide": (300.0, 2200.0)}


def _per_slice(pixels: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.stack([fn(plane) for plane in pixels]).astype(np.float32)


def _window(volume: ImageVolume, rng: np.random.Generator) -> tuple[float, float]:
    if volume.modality == "CT":
        name = list(CT_WINDOWS)[int(rng.integers(len(CT_WINDOWS)))]
        return CT_WINDOWS[name]
    low, high = np.percentile(
        volume.pixels, [float(rng.uniform(0.5, 2)), float(rng.uniform(98, 99.8))]
    )
    return float((low + high) / 2), float(max(high - low, 1.0))


def _sample_resample(volume: ImageVolume, rng: np.random.Generator) -> Params:
    return {
        "factor": round(float(rng.uniform(0.5, 0.9)), 3),
        "interpolation": ("linear", "cubic", "area")[int(rng.integers(3))],
    }


def _resample(
    pixels: np.ndarray, volume: ImageVolume, p: Params, rng: np.random.Generator
) -> np.ndarray:
    down = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}[
        p["interpolation"]
    ]

    def one(plane: np.ndarray) -> np.ndarray:
        small = cv2.resize(plane, None, fx=p["factor"], fy=p["factor"], interpolation=down)
        return cv2.resize(small, (plane.shape[1], plane.shape[0]), interpolation=cv2.INTER_CUBIC)

    return _per_slice(pixels, one)


def _sample_smooth(volume: ImageVolume, rng: np.random.Generator) -> Params:
    return {"sigma_px": round(float(rng.uniform(0.4, 1.2)), 3)}


def _smooth(
    pixels: np.ndarray, volume: ImageVolume, p: Params, rng: np.random.Generator
) -> np.ndarray:
    return _per_slice(pixels, lambda plane: cv2.GaussianBlur(plane, (0, 0), p["sigma_px"]))


def _sample_noise(volume: ImageVolume, rng: np.random.Generator) -> Params:
    level = float(np.median(np.abs(highpass(volume.pixels[volume.shape[0] // 2])))) * 1.4826
    return {"sigma": round(max(level, 1.0) * float(rng.uniform(0.2, 0.6)), 3)}


def _noise(
    pixels: np.ndarray, volume: ImageVolume, p: Params, rng: np.random.Generator
) -> np.ndarray:
    return (pixels + rng.normal(0.0, p["sigma"], pixels.shape)).astype(np.float32)


def _sample_requantise(volume: ImageVolume, rng: np.random.Generator) -> Params:
    return {"step": int((2, 4, 8, 16)[int(rng.integers(4))])}


def _requantise(
    pixels: np.ndarray, volume: ImageVolume, p: Params, rng: np.random.Generator
) -> np.ndarray:
    return (np.round(pixels / p["step"]) * p["step"]).astype(np.float32)


def _sample_jpeg(volume: ImageVolume, rng: np.random.Generator) -> Params:
    centre, width = _window(volume, rng)
    return {"window": [centre, width], "quality": int(rng.integers(60, 96))}


def _jpeg(
    pixels: np.ndarray, volume: ImageVolume, p: Params, rng: np.random.Generator
) -> np.ndarray:
    centre, width = p["window"]
    low, high = centre - width / 2, centre + width / 2

    def one(plane: np.ndarray) -> np.ndarray:
        gray = np.round(np.clip((plane - low) / width * 255.0, 0, 255)).astype(np.uint8)
        ok, encoded = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(p["quality"])])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG image")
        decoded_u8 = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
        if decoded_u8 is None:
            raise RuntimeError("OpenCV could not decode the JPEG image it wrote")
        decoded = decoded_u8.astype(np.float32)
        inside = (plane > low) & (plane < high)
        return np.where(inside, low + decoded / 255.0 * width, plane)

    return _per_slice(pixels, one)


def _sample_jpeg2000(volume: ImageVolume, rng: np.random.Generator) -> Params:
    return {"rate": round(float(rng.uniform(5.0, 40.0)), 2)}


def _jpeg2000(
    pixels: np.ndarray, volume: ImageVolume, p: Params, rng: np.random.Generator
) -> np.ndarray:
    low = float(np.floor(min(pixels.min(), 0.0)))

    def one(plane: np.ndarray) -> np.ndarray:
        stored = np.clip(np.round(plane - low), 0, 65535).astype(np.uint16)
        buffer = io.BytesIO()
        Image.fromarray(stored).save(
            buffer,
            format="JPEG2000",
            quality_mode="rates",
            quality_layers=[p["rate"]],
            irreversible=True,
        )
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32)
        return decoded + low

    return _per_slice(pixels, one)


def _sample_window(volume: ImageVolume, rng: np.random.Generator) -> Params:
    if volume.modality == "CT":  # export through a wide display window and back
        width = float(rng.uniform(1500.0, 4096.0))
        return {
            "clip": [-1024.0, round(-1024.0 + width, 1)],
            "levels": int((256, 1024, 4096)[int(rng.integers(3))]),
        }
    return {
        "contrast": round(float(rng.uniform(0.9, 1.1)), 4),
        "brightness": round(float(rng.uniform(-0.02, 0.02)), 4),
        "gamma": round(float(rng.uniform(0.9, 1.1)), 4),
    }


def _window_level(
    pixels: np.ndarray, volume: ImageVolume, p: Params, rng: np.random.Generator
) -> np.ndarray:
    if "clip" in p:
        low, high = p["clip"]
        step = (high - low) / (p["levels"] - 1)
        return (low + np.round((np.clip(pixels, low, high) - low) / step) * step).astype(np.float32)
    low, high = float(pixels.min()), float(pixels.max())
    span = max(high - low, 1.0)
    unit = np.clip((pixels - low) / span, 0.0, 1.0) ** p["gamma"]
    return (low + (unit * p["contrast"] + p["brightness"]) * span).astype(np.float32)


#: name -> (draw parameters, apply them)
LAUNDER_OPS: dict[str, tuple[Sampler, Applier]] = {
    "resample": (_sample_resample, _resample),
    "smooth": (_sample_smooth, _smooth),
    "noise": (_sample_noise, _noise),
    "requantise": (_sample_requantise, _requantise),
    "jpeg": (_sample_jpeg, _jpeg),
    "jpeg2000": (_sample_jpeg2000, _jpeg2000),
    "window": (_sample_window, _window_level),
}


def sample_laundering(
    volume: ImageVolume, names: list[str], rng: np.random.Generator
) -> list[Params]:
    """Parameters for each named operation, in order; ``{"op": name, ...}`` dicts."""
    unknown = [name for name in names if name not in LAUNDER_OPS]
    if unknown:
        raise KeyError(f"unknown laundering {', '.join(unknown)}; known: {', '.join(LAUNDER_OPS)}")
    return [{"op": name, **LAUNDER_OPS[name][0](volume, rng)} for name in names]


def apply_laundering(
    pixels: np.ndarray, volume: ImageVolume, steps: list[Params], rng: np.random.Generator
) -> np.ndarray:
    """Apply sampled laundering ``steps`` to a copy of ``pixels``, clipped to the valid range."""
    low, high = value_range(volume)
    out = pixels.astype(np.float32, copy=True)
    for step in steps:
        out = LAUNDER_OPS[step["op"]][1](out, volume, step, rng)
    return np.clip(out, low, high).astype(np.float32)


def launder_result(
    result: TamperResult, volume: ImageVolume, names: list[str], rng: np.random.Generator
) -> TamperResult:
    """Launder a tampered image; the mask stays the attack's, the steps join its params."""
    steps = sample_laundering(volume, names, rng)
    pixels = apply_laundering(result.pixels, volume, steps, rng)
    laundering: list[Any] = [*result.truth.params.get("laundering", []), *steps]
    return replace(result, pixels=pixels, truth=result.truth.with_params(laundering=laundering))


@register_attack
class Launder(Attack):
    """Laundering on its own, on an authentic image: the mask is the whole image."""

    name = "launder"
    label = "laundering"
    modalities = ()

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        count = int(rng.integers(1, 3))
        names = [str(n) for n in rng.choice(list(LAUNDER_OPS), size=count, replace=False)]
        return {"steps": sample_laundering(volume, names, rng)}

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        pixels = apply_laundering(volume.pixels, volume, params["steps"], rng)
        mask = np.ones(volume.shape, dtype=bool)
        centre = tuple(n // 2 for n in volume.shape)
        truth = GroundTruth(self.name, self.label, dict(params), centre, mask)  # type: ignore[arg-type]
        return TamperResult(pixels=pixels, truth=truth)
