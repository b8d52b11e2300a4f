"""``synthetic-2d``: is a radiograph or an MR image entirely made by a generator?

Generators make images at a few hundred pixels at most, learn the anatomy better than the
acquisition, and hand their output to a resize. What stays behind is in the finest scales, so
every slice is described by cheap, hand-made statistics, in two views of the same image:

* ``whole``: the slice area-downsampled by the smallest integer factor that brings its longer
  side to at most ``work_side`` (512) pixels, so a 1024² radiograph costs what a 512² one does;
* ``crop``: a native-resolution centre crop of at most ``crop_side`` (256) pixels square, where
  pixel-level noise and interpolation survive untouched.

Per view (32 features): the spectral fingerprint of ``detect.spectral`` (radial spectrum of the
noise residual in 8 bins, periodic up-sampling peaks and notches, Haar sub-band energies, noise
level), plus the residual's kurtosis; the spectral slope at low and high frequencies; the spread
of the local noise level over 16×16 tiles and how it follows the local signal (acquisition noise
is signal-dependent: quantum noise in X-ray, Rician in MR; a decoder's texture is not); the
share of exactly equal neighbours in mid-grey areas (a smooth image on an 8-bit grid is flat);
the residual's autocorrelation at lags 1 and 2 along rows and columns (interpolation and
checkerboards); and how strongly the residual's magnitude follows edges. One more feature
compares the value grid with the noise. Each slice is first mapped to [0, 1] by its 0.5 and
99.5 percentiles, so window, gain and bit depth drop out.

A logistic regression (weights, standardisation and feature names in
``models/synthetic-2d.json``) turns the features into a slice logit. The volume score is the
Platt-calibrated probability of the **mean** slice logit over the analysed slices (at most
``max_slices``, evenly spaced, blank slices skipped): the question is whether the whole series is
synthetic, not whether one slice is. The verdict uses an operating point set at <= 1 % false
positives on authentic validation images. The finding is ``global``: the most suspicious slice,
at its centre.

Limits (see the model card): trained on generators of four families trained here on the few
authentic images this project may use, and on simulated radiographs and MR. A fake given
acquisition-like noise afterwards, or re-rendered (a screen capture, a figure), may look
authentic; heavy processing of a real image (strong smoothing, upsampling by 2 or more) may
look generated.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from medforensics.detect import spectral
from medforensics.detect.base import Detector
from medforensics.detect.calibration import PlattCalibration
from medforensics.detect.registry import register_detector
from medforensics.detect.spectral import UPSAMPLING_FACTORS, noise_residual, wavelet_energies
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import ImageVolume

#: modalities the model is for: projection radiography (and secondary captures) and MR
MODALITIES = ("CR", "DX", "MG", "RF", "XA", "PX", "IO", "OT", "RTIMAGE", "MR")
DEFAULT_MODEL = "synthetic-2d.json"
#: radial frequency bins and Haar levels of the spectral features
_BINS, _LEVELS = 8, 3
_TILE = 16
_EPS = 1e-12
#: unit-range bounds of "mid-grey" pixels (away from clipped background and saturation)
_MID = (0.02, 0.98)


@dataclass(frozen=True)
class Preprocessing:
    """How slices are prepared; stored with the model so loading never relies on defaults.

    Attributes:
        work_side: longest side of the ``whole`` view after integer area-downsampling.
        crop_side: side of the native-resolution centre crop.
        min_side: slices with a shorter side are not assessed.
        max_slices: at most this many slices of a volume are analysed (evenly spaced).
        percentiles: the pixel percentiles mapped to 0 and 1.
    """

    work_side: int = 512
    crop_side: int = 256
    min_side: int = 48
    max_slices: int = 64
    percentiles: tuple[float, float] = (0.5, 99.5)


def _view_names(prefix: str) -> list[str]:
    return (
        [f"{prefix}radial_{k}" for k in range(_BINS)]
        + [f"{prefix}peak_x{f}" for f in UPSAMPLING_FACTORS]
        + [f"{prefix}haar_{lvl}_{band}" for lvl in range(_LEVELS) for band in ("h", "v", "d")]
        + [
            f"{prefix}{name}"
            for name in (
                "residual_level",
                "residual_kurtosis",
                "slope_low",
                "slope_high",
                "noise_spread",
                "noise_signal_slope",
                "tie_fraction",
                "residual_corr_row_1",
                "residual_corr_row_2",
                "residual_corr_col_1",
                "residual_corr_col_2",
                "edge_noise_coupling",
            )
        ]
    )


#: feature names, in the order of ``slice_features``
FEATURE_NAMES: tuple[str, ...] = (
    *_view_names("whole_"),
    *_view_names("crop_"),
    "grid_to_noise",
)


def pixel_sample(pixels: np.ndarray, count: int = 65536) -> np.ndarray:
    """About ``count`` pixels spread over the whole image, float64.

    The stride is coprime with the row length, so successive rows are sampled at different
    columns: a plain stride that divides the width samples the same columns in every row, and
    a blank border column then weighs as much as 1/64 of the image.
    """
    flat = np.asarray(pixels).ravel()
    step = max(1, flat.size // count)
    width = int(pixels.shape[-1]) if np.ndim(pixels) > 1 else 1
    while step > 1 and math.gcd(step, width) != 1:
        step += 1
    return flat[::step].astype(np.float64)


def _value_step(pixels: np.ndarray) -> float:
    """The spacing of the value grid the pixels lie on (1 for integers, ~0 for floats)."""
    sample = np.unique(pixels)
    if sample.size < 2:
        return 0.0
    return float(np.diff(sample).min())


def to_unit(image: np.ndarray, percentiles: tuple[float, float]) -> tuple[np.ndarray, float] | None:
    """``image`` mapped to [0, 1] by its percentiles (not clipped) and the grid step in those
    units; None for a blank image (no contrast, or almost no mid-grey pixels)."""
    pixels = np.asarray(image)
    sample = pixel_sample(pixels)
    low, high = (float(v) for v in np.percentile(sample, percentiles))
    if not high - low > 1e-9 * max(1.0, abs(high)):
        return None
    unit_sample = (sample - low) / (high - low)
    if np.mean((unit_sample > _MID[0]) & (unit_sample < _MID[1])) < 0.02:
        return None
    # float32 is exact for stored values up to 2**24 and halves the cost of every later step
    unit = (pixels.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    return unit.astype(np.float32, copy=False), _value_step(sample) / (high - low)


def _area_downsample(unit: np.ndarray, work_side: int) -> np.ndarray:
    factor = math.ceil(max(unit.shape) / work_side)
    if factor <= 1:
        return unit
    rows, cols = (unit.shape[0] // factor) * factor, (unit.shape[1] // factor) * factor
    total = np.zeros((rows // factor, cols // factor), dtype=np.float32)
    for dy in range(factor):  # strided sums: much faster than a reshape and mean
        for dx in range(factor):
            total += unit[dy:rows:factor, dx:cols:factor]
    return total / np.float32(factor * factor)


def _centre_crop(unit: np.ndarray, side: int) -> np.ndarray:
    rows, cols = unit.shape
    height, width = min(side, rows), min(side, cols)
    top, left = (rows - height) // 2, (cols - width) // 2
    return unit[top : top + height, left : left + width]


def _slopes(radial: np.ndarray) -> tuple[float, float]:
    """Slope of log power against log frequency over the lower and the upper half of the bins."""
    centres = np.log10((np.arange(radial.size) + 0.5) / radial.size * 0.5)
    half = radial.size // 2
    low = np.polyfit(centres[1:half], radial[1:half], 1)[0]
    high = np.polyfit(centres[half:], radial[half:], 1)[0]
    return float(low), float(high)


def _tile_noise(view: np.ndarray, residual: np.ndarray) -> tuple[float, float]:
    """Spread (IQR) of log local noise over mid-grey tiles, and its slope against log signal."""
    rows, cols = (view.shape[0] // _TILE) * _TILE, (view.shape[1] // _TILE) * _TILE
    if rows == 0 or cols == 0:
        return 0.0, 0.0
    grid = (rows // _TILE, _TILE, cols // _TILE, _TILE)
    means = view[:rows, :cols].reshape(grid).mean(axis=(1, 3)).ravel()
    sigmas = residual[:rows, :cols].reshape(grid).std(axis=(1, 3)).ravel()
    valid = (means > 0.05) & (means < 0.95) & (sigmas > 1e-9)
    if valid.sum() < 8:
        return 0.0, 0.0
    log_sigma = np.log10(sigmas[valid])
    spread = float(np.subtract(*np.percentile(log_sigma, [75, 25])))
    log_mean = np.log10(means[valid])
    if np.ptp(log_mean) < 1e-6:
        return spread, 0.0
    slope = float(np.polyfit(log_mean, log_sigma, 1)[0])
    return spread, float(np.clip(slope, -5.0, 5.0))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b)) / denominator if denominator > _EPS else 0.0


def _residual_correlations(residual: np.ndarray) -> list[float]:
    """Autocorrelation of the residual at lags 1 and 2 along rows and along columns.

    Detector blur correlates acquisition noise a little, interpolation a lot, and a transposed
    convolution's checkerboard alternates in sign from one pixel to the next.
    """
    z = residual - residual.mean()
    variance = float(np.mean(z * z))
    if variance < _EPS:
        return [0.0, 0.0, 0.0, 0.0]
    along_rows = [float(np.mean(z[:, :-lag] * z[:, lag:])) / variance for lag in (1, 2)]
    along_cols = [float(np.mean(z[:-lag] * z[lag:])) / variance for lag in (1, 2)]
    return along_rows + along_cols


def _edge_coupling(view: np.ndarray, residual: np.ndarray, mid: np.ndarray) -> float:
    """Correlation of |residual| with the local gradient magnitude over mid-grey pixels:
    generators put their errors at edges, acquisition noise does not care where edges are."""
    if mid.sum() < 64:
        return 0.0
    smooth = view - residual
    gradient = np.zeros_like(smooth)
    gradient[:, :-1] += np.abs(np.diff(smooth, axis=1))
    gradient[:-1] += np.abs(np.diff(smooth, axis=0))
    return _correlation(np.abs(residual[mid]), gradient[mid])


@functools.lru_cache(maxsize=8)
def _radial_bins(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``spectral.radial_log_spectrum`` with ``_BINS`` bins on a ``shape`` spectrum: the
    flat indices inside the bins, their bin, and the count per bin (read-only, cached)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    which = np.floor(radius / 0.5 * _BINS).astype(int).ravel()
    inside = np.flatnonzero(which < _BINS)
    counts = np.bincount(which[inside], minlength=_BINS)
    arrays = (inside, which[inside], counts)
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _spectral_features(residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``spectral.radial_log_spectrum(residual, _BINS)`` and ``spectral.upsampling_peaks(residual)``
    from one power spectrum: the same steps, value for value, but each of those functions would
    compute the spectrum (a quarter of the model's time) again."""
    power = spectral._power_spectrum(residual)
    inside, which, counts = _radial_bins(residual.shape)
    sums = np.bincount(which, weights=power.ravel()[inside], minlength=_BINS)
    log_power = np.log10(sums / np.maximum(counts, 1) + spectral._EPS)
    radial = log_power - log_power.mean()
    along_cols = power.mean(axis=0)  # frequencies along the column index
    along_rows = power.mean(axis=1)
    peaks = np.array(
        [
            0.5 * (spectral._peak_ratio(along_cols, f) + spectral._peak_ratio(along_rows, f))
            for f in UPSAMPLING_FACTORS
        ]
    )
    return radial, peaks


def _view_features(view: np.ndarray) -> tuple[np.ndarray, float]:
    """The features of one view (``_view_names`` order) and its residual's standard deviation."""
    residual = noise_residual(view)
    radial, peaks = _spectral_features(residual)
    haar = wavelet_energies(view, _LEVELS)
    mid = (view > _MID[0]) & (view < _MID[1])
    mid_res = residual[mid] if np.count_nonzero(mid) > 64 else residual.ravel()
    squared = (mid_res - mid_res.mean()) ** 2
    variance = float(squared.mean())
    res_std = math.sqrt(variance)
    kurtosis = float(np.mean(squared * squared)) / (variance**2 + _EPS)
    slope_low, slope_high = _slopes(radial)
    spread, signal_slope = _tile_noise(view, residual)
    pairs = mid[:, 1:] & mid[:, :-1]
    equal = view[:, 1:] == view[:, :-1]
    ties = float(np.count_nonzero(equal & pairs)) / max(int(np.count_nonzero(pairs)), 1)
    extras = [
        math.log10(res_std + _EPS),
        math.log10(max(kurtosis, 1.0)),
        slope_low,
        slope_high,
        spread,
        signal_slope,
        ties,
        *_residual_correlations(residual),
        _edge_coupling(view, residual, mid),
    ]
    return np.concatenate([radial, peaks, haar, extras]), res_std


def slice_features(
    image: np.ndarray, preprocessing: Preprocessing | None = None
) -> np.ndarray | None:
    """The ``FEATURE_NAMES`` vector of one 2D slice, or None when it is blank or too small."""
    prep = preprocessing or Preprocessing()
    pixels = np.asarray(image)
    if pixels.ndim != 2:
        raise ValueError(f"slice_features takes one 2D slice, got shape {pixels.shape}")
    if min(pixels.shape) < prep.min_side:
        return None
    mapped = to_unit(pixels, prep.percentiles)
    if mapped is None:
        return None
    unit, step = mapped
    whole_view = _area_downsample(unit, prep.work_side)
    crop_view = _centre_crop(unit, prep.crop_side)
    whole, whole_std = _view_features(whole_view)
    if crop_view.shape == whole_view.shape == unit.shape:  # a small image: the same view
        crop, crop_std = whole, whole_std
    else:
        crop, crop_std = _view_features(crop_view)
    grid_to_noise = math.log10(step + 1e-6) - math.log10(crop_std + 1e-6)
    return np.concatenate([whole, crop, [grid_to_noise]])


def analysed_slices(volume: ImageVolume, max_slices: int) -> list[int]:
    """Indices of the slices analysed: all, or ``max_slices`` evenly spaced."""
    n = volume.shape[0]
    if n <= max_slices:
        return list(range(n))
    return sorted({round(float(v)) for v in np.linspace(0, n - 1, max_slices)})


@dataclass
class Synthetic2DModel:
    """Logistic regression on standardised features, its calibration and operating point.

    ``logit = intercept + coef · (features - mean) / scale``; the probability is
    ``calibration(logit)`` (Platt, fitted on validation slices).
    """

    feature_names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    calibration: PlattCalibration
    operating_point: OperatingPoint
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    card: dict[str, Any] = field(default_factory=dict)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Slice logits of an ``(n, features)`` matrix."""
        x = (np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean) / self.scale
        return np.asarray(x @ self.coef + self.intercept, dtype=np.float64)

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        payload = {
            "format": "medforensics synthetic-2d logistic model, version 1",
            "feature_names": self.feature_names,
            "scaler": {"mean": self.mean.tolist(), "scale": self.scale.tolist()},
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "calibration": asdict(self.calibration),
            "operating_point": asdict(self.operating_point),
            "preprocessing": asdict(self.preprocessing),
            "card": self.card,
        }
        target.write_text(json.dumps(payload, indent=1) + "\n")
        return target

    @staticmethod
    def load(path: str | Path) -> Synthetic2DModel:
        source = Path(path)
        try:
            payload = json.loads(source.read_text())
            names = list(payload["feature_names"])
            prep = dict(payload["preprocessing"])
            prep["percentiles"] = tuple(prep["percentiles"])
            model = Synthetic2DModel(
                feature_names=names,
                mean=np.asarray(payload["scaler"]["mean"], dtype=np.float64),
                scale=np.asarray(payload["scaler"]["scale"], dtype=np.float64),
                coef=np.asarray(payload["coef"], dtype=np.float64),
                intercept=float(payload["intercept"]),
                calibration=PlattCalibration(**payload["calibration"]),
                operating_point=OperatingPoint(**payload["operating_point"]),
                preprocessing=Preprocessing(**prep),
                card=dict(payload.get("card", {})),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{source}: not a readable synthetic-2d model ({exc}); write one with "
                "benchmarks/dev_synthetic2d.py --ship"
            ) from exc
        if tuple(names) != FEATURE_NAMES:
            raise ValueError(
                f"{source}: the model was trained on other features than this version of "
                "medforensics computes; retrain it with benchmarks/dev_synthetic2d.py --ship"
            )
        if not (model.mean.shape == model.scale.shape == model.coef.shape == (len(names),)):
            raise ValueError(f"{source}: scaler and coefficients do not match the feature list")
        return model


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, c: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Standardise and fit an L2 logistic regression (classes weighted equally).

    Returns:
        ``(mean, scale, coef, intercept)`` for ``Synthetic2DModel``.
    """
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    if len(np.unique(y)) < 2:
        raise ValueError("fit_logistic needs authentic (0) and synthetic (1) examples")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
    model.fit((x - mean) / scale, y)
    return mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0])


def _default_model_path() -> Path:
    return Path(str(resources.files("medforensics.models").joinpath(DEFAULT_MODEL)))


@register_detector
class Synthetic2DDetector(Detector):
    """Whole-image generator traces in radiographs and MR (fully synthetic images)."""

    name = "synthetic-2d"
    modalities = MODALITIES

    def __init__(self, model: str | Path | Synthetic2DModel | None = None) -> None:
        if isinstance(model, Synthetic2DModel):
            self.model = model
        else:
            path = Path(model) if model is not None else _default_model_path()
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: the synthetic-2d model is missing; train it with "
                    "python benchmarks/dev_synthetic2d.py --ship"
                )
            self.model = Synthetic2DModel.load(path)

    @property
    def operating_point(self) -> OperatingPoint:
        return self.model.operating_point

    def describe(self) -> dict[str, object]:
        return {"name": self.name, **self.model.card}

    def slice_logits(self, volume: ImageVolume) -> dict[int, float]:
        """Logit of every analysed, non-blank slice, by slice index."""
        prep = self.model.preprocessing
        rows, indices = [], []
        for z in analysed_slices(volume, prep.max_slices):
            features = slice_features(volume.pixels[z], prep)
            if features is not None and np.all(np.isfinite(features)):
                rows.append(features)
                indices.append(z)
        if not rows:
            return {}
        return dict(zip(indices, self.model.logits(np.stack(rows)).tolist(), strict=True))

    def detect(self, volume: ImageVolume) -> Detection:
        if not self.supports(volume):
            return Detection.not_assessed(
                self.name,
                f"synthetic-2d is built for radiographs and MR ({', '.join(MODALITIES)}); "
                f"this image is {volume.modality}",
            )
        prep = self.model.preprocessing
        _, rows, cols = volume.shape
        if min(rows, cols) < prep.min_side:
            return Detection.not_assessed(
                self.name,
                f"the image is {rows}x{cols} pixels; synthetic-2d needs at least "
                f"{prep.min_side} pixels on each side to measure fine-scale traces",
            )
        logits = self.slice_logits(volume)
        if not logits:
            return Detection.not_assessed(
                self.name, "every slice is blank (no contrast to analyse): cannot assess"
            )
        mean_logit = float(np.mean(list(logits.values())))
        score = self.model.calibration.probability(mean_logit)
        worst = max(logits, key=lambda z: logits[z])
        notes = [
            f"fully-synthetic score from the mean logit {mean_logit:.2f} of {len(logits)} "
            f"analysed slice(s) of {volume.shape[0]}",
        ]
        if volume.shape[0] > prep.max_slices:
            notes.append(f"{prep.max_slices} evenly spaced slices were analysed")
        detail = (
            "whole image has the fine-scale statistics of generated images "
            f"(slice logit {logits[worst]:.2f})"
        )
        findings = [
            Finding(
                kind="global",
                score=self.model.calibration.probability(logits[worst]),
                slice=worst,
                row=rows // 2,
                col=cols // 2,
                detail=detail,
            )
        ]
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.operating_point.verdict(score),
            findings=findings,
            notes=notes,
        )
