"""Patch cascade: a patch classifier's heatmap, described by texture features, judged by an SVM.

A baseline in the style of the published small-region CT tamper detectors, which work in two
stages instead of one end-to-end network:

1. **patch classifier**: every 32×32 patch of the body (``features.TileGrid``: 32-pixel tiles
   every 16 pixels) is described by the handcrafted residual and texture features of
   ``features.volume_features`` and scored by a small model (logistic regression, or a
   one-hidden-layer perceptron), giving a per-patch probability: the *heatmap*;
2. **heatmap classifier**: each slice's heatmap, taken relative to its own median patch logit
   (the level of a whole map moves with scanner and slice context; an edit stands out within
   its slice), is summarised by ``HEATMAP_FEATURES`` (peak and top-k, spread and skew, area
   above logit margins, the largest connected suspicious region, grey-level co-occurrence
   contrast, homogeneity, energy and correlation of the quantised map), standardised,
   projected by PCA and scored by an SVM (linear by default, RBF on request: on the held-out
   GE scanner the RBF machine's 1 % validation threshold let through far more authentic slices);
3. the volume statistic is the largest slice decision; Platt scaling
   (``calibration.fit_platt``) turns it into a probability, and an operating point at 1 % false
   positives on authentic validation chunks gives the verdict. Findings are the heatmap's peaks,
   scored on the same scale (the calibrated decision of their slice, times the peak's share of
   that slice's strongest patch).

Stage 1 is the classical detector's tile model (``classical.ClassicalModel`` without its volume
statistic): the cascade differs from ``classical`` in judging the *shape and texture* of the
evidence across a slice instead of averaging its top tiles. The whole model (both stages,
standardisation, PCA, SVM support vectors, calibration, operating point, card) is one JSON file,
no pickle. Train one with ``medforensics.train.patch_cascade.train_patch_cascade``
(``benchmarks/bench_quality.py`` shows how).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from medforensics.detect.base import Detector
from medforensics.detect.calibration import PlattCalibration
from medforensics.detect.classical import (
    ClassicalModel,
    ModelFileError,
    cell_map,
    json_floats,
    layers_from_json,
    read_model_json,
    write_model_json,
)
from medforensics.detect.features import (
    CHUNK_SLICES,
    FEATURES_VERSION,
    TileGrid,
    feature_names,
)
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import ImageVolume

if TYPE_CHECKING:
    pass

MODEL_FORMAT = "medforensics-patch-cascade/1"
DEFAULT_MODEL = "patch-cascade.json"
#: fewer body patches than this in the whole image and it cannot be assessed
MIN_TILES = 16
#: fewer body patches than this on a slice and the slice gets no heatmap features
MIN_SLICE_TILES = 4
#: logit margins over the slice median whose exceeded area is a heatmap feature
AREA_MARGINS = (1.0, 2.0, 3.0)
#: margin over the slice median that makes a patch part of a suspicious region
REGION_MARGIN = 2.0
#: grey levels of the quantised heatmap for the co-occurrence features: one per logit unit,
#: from 2 below the slice median to 6 above
GLCM_LEVELS, GLCM_LOW = 8, -2.0
#: bumped whenever a heatmap feature is computed differently
HEATMAP_VERSION = 2
HEATMAP_FEATURES = (
    "peak",
    "top3",
    "top10",
    "mean_minus_median",
    "std",
    "skew",
    *(f"area_above_{m:.0f}" for m in AREA_MARGINS),
    "largest_region_log",
    "glcm_contrast",
    "glcm_homogeneity",
    "glcm_energy",
    "glcm_correlation",
)
#: a finding's score must reach this to be reported
_FINDING_FLOOR = 0.05


# --- stage 2: heatmap features --------------------------------------------------------------


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(values, -60.0, 60.0)))


def _glcm(levels: np.ndarray, valid: np.ndarray) -> tuple[float, float, float, float]:
    """Contrast, homogeneity, energy and correlation of a symmetric co-occurrence matrix.

    Pairs are horizontal and vertical neighbours that both lie in the body, so the zeros
    outside it never count as texture.
    """
    pairs = []
    for a, b, ok in (
        (levels[:, :-1], levels[:, 1:], valid[:, :-1] & valid[:, 1:]),
        (levels[:-1, :], levels[1:, :], valid[:-1, :] & valid[1:, :]),
    ):
        pairs.append(np.stack([a[ok], b[ok]], axis=1))
    both = np.concatenate(pairs)
    if both.shape[0] == 0:
        return 0.0, 1.0, 1.0, 0.0
    counts = np.zeros((GLCM_LEVELS, GLCM_LEVELS))
    np.add.at(counts, (both[:, 0], both[:, 1]), 1.0)
    counts = counts + counts.T
    p = counts / counts.sum()
    i, j = np.indices(p.shape)
    contrast = float(np.sum(p * (i - j) ** 2))
    homogeneity = float(np.sum(p / (1.0 + np.abs(i - j))))
    energy = float(np.sqrt(np.sum(p * p)))
    mu = float(np.sum(i * p))
    var = float(np.sum(p * (i - mu) ** 2))
    correlation = float(np.sum(p * (i - mu) * (j - mu)) / var) if var > 1e-12 else 0.0
    return contrast, homogeneity, energy, correlation


def slice_heatmap_features(slice_logits: np.ndarray) -> np.ndarray | None:
    """``HEATMAP_FEATURES`` of one slice's patch logits (NaN outside the body); None if too few.

    Every feature is measured on the logits minus the slice's median patch logit: the level of
    a whole map moves with the scanner, kernel and slice context (a single slice has no
    neighbours to compare with), while a manipulation stands out *within* its slice.
    """
    valid = np.isfinite(slice_logits)
    if int(valid.sum()) < MIN_SLICE_TILES:
        return None
    centred = slice_logits - float(np.median(slice_logits[valid]))
    values = centred[valid]
    ordered = np.sort(values)[::-1]
    mean, std = float(values.mean()), float(values.std())
    skew = float(np.mean((values - mean) ** 3) / std**3) if std > 1e-9 else 0.0
    regions, n_regions = ndimage.label(valid & (centred >= REGION_MARGIN))
    largest = int(np.bincount(regions.ravel())[1:].max()) if n_regions else 0
    levels = np.clip(np.floor(np.nan_to_num(centred) - GLCM_LOW), 0, GLCM_LEVELS - 1)
    return np.array(
        [
            ordered[0],
            ordered[:3].mean(),
            ordered[:10].mean(),
            mean,
            std,
            skew,
            *(float(np.mean(values >= m)) for m in AREA_MARGINS),
            math.log1p(largest),
            *_glcm(levels.astype(np.int64), valid),
        ],
        dtype=np.float64,
    )


def heatmap_features(tile_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice heatmap features ``(slices, n)`` (NaN rows where a slice has too few patches)
    and the mask of slices that have them."""
    rows = np.full((tile_logits.shape[0], len(HEATMAP_FEATURES)), np.nan)
    for z, plane in enumerate(tile_logits):
        described = slice_heatmap_features(plane)
        if described is not None:
            rows[z] = described
    return rows, np.isfinite(rows).all(axis=1)


@dataclass
class HeatmapClassifier:
    """Stage 2: standardise → PCA → SVM decision, in numpy from exported scikit-learn numbers.

    Attributes:
        mean: per-feature mean of the training slices.
        scale: per-feature standard deviation.
        pca_mean: PCA centre (of the standardised features).
        components: ``(k, n_features)`` PCA axes.
        kernel: ``rbf`` or ``linear``.
        intercept: SVM bias.
        coef: ``(k,)`` weights of a linear SVM (empty for RBF).
        support_vectors: ``(m, k)`` support vectors of an RBF SVM (empty for linear).
        dual_coef: ``(m,)`` their signed dual coefficients.
        gamma: RBF width, ``exp(-gamma * |x - sv|^2)``.
    """

    mean: np.ndarray
    scale: np.ndarray
    pca_mean: np.ndarray
    components: np.ndarray
    kernel: str
    intercept: float
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    support_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    dual_coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gamma: float = 0.0

    def project(self, rows: np.ndarray) -> np.ndarray:
        standard = (np.asarray(rows, dtype=np.float64) - self.mean) / self.scale
        return np.asarray((standard - self.pca_mean) @ self.components.T)

    def decision(self, rows: np.ndarray) -> np.ndarray:
        """SVM decision values (positive = tampered side) for ``(n, n_features)`` rows."""
        projected = self.project(rows)
        if self.kernel == "linear":
            return np.asarray(projected @ self.coef + self.intercept)
        distances = (
            np.sum(projected**2, axis=1)[:, None]
            - 2.0 * projected @ self.support_vectors.T
            + np.sum(self.support_vectors**2, axis=1)[None, :]
        )
        kernel = np.exp(-self.gamma * np.maximum(distances, 0.0))
        return np.asarray(kernel @ self.dual_coef + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scaler": {"mean": json_floats(self.mean), "scale": json_floats(self.scale)},
            "pca": {"mean": json_floats(self.pca_mean), "components": json_floats(self.components)},
            "svm": {
                "kernel": self.kernel,
                "intercept": float(self.intercept),
                "coef": json_floats(self.coef),
                "support_vectors": json_floats(self.support_vectors),
                "dual_coef": json_floats(self.dual_coef),
                "gamma": float(self.gamma),
            },
        }

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> HeatmapClassifier:
        svm = raw["svm"]
        k = len(raw["pca"]["components"])
        return HeatmapClassifier(
            mean=np.asarray(raw["scaler"]["mean"], dtype=np.float64),
            scale=np.asarray(raw["scaler"]["scale"], dtype=np.float64),
            pca_mean=np.asarray(raw["pca"]["mean"], dtype=np.float64),
            components=np.asarray(raw["pca"]["components"], dtype=np.float64),
            kernel=str(svm["kernel"]),
            intercept=float(svm["intercept"]),
            coef=np.asarray(svm["coef"], dtype=np.float64),
            support_vectors=np.asarray(svm["support_vectors"], dtype=np.float64).reshape(-1, k),
            dual_coef=np.asarray(svm["dual_coef"], dtype=np.float64),
            gamma=float(svm["gamma"]),
        )


# --- the model ------------------------------------------------------------------------------


@dataclass
class PatchCascadeModel:
    """Both stages, calibration and operating point; saved as one JSON file.

    Attributes:
        patches: stage 1, the patch (tile) classifier; only its features, standardisation and
            layers are used.
        heatmap: stage 2, the per-slice heatmap classifier.
        calibration: Platt scaling of the volume statistic (largest slice decision).
        operating_point: thresholds on the calibrated score.
        modalities: modalities the model was trained on.
        card: model card (data, settings, validation figures).
    """

    patches: ClassicalModel
    heatmap: HeatmapClassifier
    calibration: PlattCalibration = field(default_factory=lambda: PlattCalibration(1.0, 0.0))
    operating_point: OperatingPoint = field(default_factory=OperatingPoint)
    modalities: tuple[str, ...] = ("CT",)
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def grid(self) -> TileGrid:
        return self.patches.grid

    def slice_decisions(self, tile_logits: np.ndarray) -> np.ndarray:
        """Each slice's SVM decision (NaN for slices with too few body patches)."""
        rows, described = heatmap_features(tile_logits)
        decisions = np.full(tile_logits.shape[0], np.nan)
        if described.any():
            decisions[described] = self.heatmap.decision(rows[described])
        return decisions

    def statistic(self, tile_logits: np.ndarray) -> float:
        """The largest slice decision; NaN when the image has too few body patches."""
        decisions = self.slice_decisions(tile_logits)
        if int(np.isfinite(tile_logits).sum()) < MIN_TILES or not np.isfinite(decisions).any():
            return math.nan
        return float(np.nanmax(decisions))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "features_version": FEATURES_VERSION,
            "heatmap_version": HEATMAP_VERSION,
            "feature_names": list(self.patches.feature_names),
            "heatmap_feature_names": list(HEATMAP_FEATURES),
            "grid": asdict(self.grid),
            "patches": {
                "scaler": {
                    "mean": json_floats(self.patches.mean),
                    "scale": json_floats(self.patches.scale),
                },
                "layers": [
                    {"weights": json_floats(w), "bias": json_floats(b)}
                    for w, b in self.patches.layers
                ],
            },
            "heatmap": self.heatmap.to_dict(),
            "calibration": asdict(self.calibration),
            "operating_point": asdict(self.operating_point),
            "modalities": list(self.modalities),
            "card": self.card,
        }

    def save(self, path: str | Path) -> Path:
        return write_model_json(self.to_dict(), path)

    @staticmethod
    def load(path: str | Path) -> PatchCascadeModel:
        """Read a model file written by ``save``.

        Raises:
            ModelFileError: the file is missing, not a patch-cascade model, or made for other
                features than this version computes.
        """
        path = Path(path)
        payload = read_model_json(
            path,
            MODEL_FORMAT,
            "patch-cascade",
            "Train one with medforensics.train.patch_cascade.train_patch_cascade(cases, "
            "seed=0) on medforensics.train.cases.make_cases(...) cases and save it with "
            "model.save(PATH) (benchmarks/bench_quality.py does both), then pass model=PATH",
        )
        names = tuple(payload.get("feature_names", ()))
        if (
            names != feature_names()
            or payload.get("features_version") != FEATURES_VERSION
            or tuple(payload.get("heatmap_feature_names", ())) != HEATMAP_FEATURES
            or payload.get("heatmap_version") != HEATMAP_VERSION
        ):
            raise ModelFileError(
                f"{path}: was trained on patch features version "
                f"{payload.get('features_version')} / heatmap features version "
                f"{payload.get('heatmap_version')}, but this version of medforensics computes "
                f"{FEATURES_VERSION} / {HEATMAP_VERSION}; retrain it with train_patch_cascade"
            )
        try:
            patches = ClassicalModel(
                feature_names=names,
                grid=TileGrid(**payload["grid"]),
                mean=np.asarray(payload["patches"]["scaler"]["mean"], dtype=np.float64),
                scale=np.asarray(payload["patches"]["scaler"]["scale"], dtype=np.float64),
                layers=layers_from_json(payload["patches"]["layers"]),
            )
            return PatchCascadeModel(
                patches=patches,
                heatmap=HeatmapClassifier.from_dict(payload["heatmap"]),
                calibration=PlattCalibration(**payload["calibration"]),
                operating_point=OperatingPoint(**payload["operating_point"]),
                modalities=tuple(payload.get("modalities", ("CT",))),
                card=dict(payload.get("card", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"{path}: a patch-cascade model file with a missing or malformed entry "
                f"({type(exc).__name__}: {exc}); retrain it with train_patch_cascade"
            ) from exc


def default_model_path() -> Path:
    """Where a shipped model would live (``medforensics/models/patch-cascade.json``)."""
    return Path(str(resources.files("medforensics.models").joinpath(DEFAULT_MODEL)))


# --- the detector ---------------------------------------------------------------------------


@register_detector
class PatchCascadeDetector(Detector):
    """Patch classifier → heatmap → texture features → PCA + SVM, calibrated (CT)."""

    name = "patch-cascade"
    modalities = ("CT",)

    def __init__(
        self,
        model: str | Path | PatchCascadeModel | None = None,
        max_findings: int = 5,
        workers: int = 1,
        chunk_slices: int = CHUNK_SLICES,
    ) -> None:
        """Load ``model`` (a path or a ``PatchCascadeModel``), by default the shipped one.

        Raises:
            ModelFileError: no model given and none shipped (none is, yet), or the file is
                unusable; the message says how to train one.
        """
        if isinstance(model, PatchCascadeModel):
            self.model = model
        else:
            self.model = PatchCascadeModel.load(
                model if model is not None else default_model_path()
            )
        if chunk_slices < 1:
            raise ValueError(f"chunk_slices must be at least 1, got {chunk_slices}")
        self.max_findings = max_findings
        self.workers = workers
        self.chunk_slices = chunk_slices

    def supports(self, volume: ImageVolume) -> bool:
        return volume.modality in self.model.modalities

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "patch": self.model.grid.tile,
            "stride": self.model.grid.stride,
            "svm_kernel": self.model.heatmap.kernel,
            "pca_components": int(self.model.heatmap.components.shape[0]),
            **self.model.card,
        }

    def tile_logits(self, volume: ImageVolume) -> np.ndarray:
        """Stage 1: ``(slices, tile_rows, tile_cols)`` patch logits, NaN outside the body."""
        features = self.model.patches.features(volume, self.workers, self.chunk_slices)
        return self.model.patches.tile_logits(features, self.chunk_slices)

    def statistic(self, volume: ImageVolume) -> float:
        """The raw, uncalibrated volume statistic (NaN when the image cannot be assessed)."""
        return self.model.statistic(self.tile_logits(volume))

    def detect(self, volume: ImageVolume) -> Detection:
        if not self.supports(volume):
            return Detection.not_assessed(
                self.name,
                f"this model was trained on {', '.join(self.model.modalities)} only; "
                f"a {volume.modality} image cannot be assessed with it",
            )
        logits = self.tile_logits(volume)
        decisions = self.model.slice_decisions(logits)
        n_tiles = int(np.isfinite(logits).sum())
        if n_tiles < MIN_TILES or not np.isfinite(decisions).any():
            tile = self.model.grid.tile
            return Detection.not_assessed(
                self.name,
                f"only {n_tiles} patches of {tile}x{tile} pixels lie inside the imaged body "
                f"(at least {MIN_TILES}, and {MIN_SLICE_TILES} on one slice, are needed): "
                "too small or blank to assess",
            )
        statistic = float(np.nanmax(decisions))
        score = self.model.calibration.probability(statistic)
        slice_scores = np.where(
            np.isfinite(decisions), self.model.calibration(np.nan_to_num(decisions)), 0.0
        )
        patch_prob = np.where(np.isfinite(logits), _sigmoid(np.nan_to_num(logits)), 0.0)
        top = int(np.nanargmax(decisions))
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.model.operating_point.verdict(score),
            findings=self._findings(patch_prob, slice_scores),
            anomaly_map=cell_map(patch_prob, self.model.grid, volume.shape[1:]),
            map_stride=self.model.grid.stride,
            notes=[
                f"slice {top} of {volume.shape[0]} has the most suspicious heatmap (SVM decision "
                f"{statistic:+.2f}); {n_tiles} patches scored by the patch classifier, whose "
                "probabilities are the anomaly map"
            ],
        )

    def _findings(self, patch_prob: np.ndarray, slice_scores: np.ndarray) -> list[Finding]:
        """Heatmap peaks, scored by their slice's calibrated score and their share of its peak."""
        peak = patch_prob.max(axis=(1, 2), keepdims=True)
        ranked = slice_scores[:, None, None] * patch_prob / np.maximum(peak, 1e-12)
        order = np.argsort(ranked, axis=None, kind="stable")[::-1]
        grid = self.model.grid
        taken: list[tuple[int, int, int]] = []
        findings: list[Finding] = []
        for flat in order:
            z, y, x = (int(v) for v in np.unravel_index(flat, ranked.shape))
            score = float(ranked[z, y, x])
            if score < _FINDING_FLOOR or len(findings) >= self.max_findings:
                break
            if any(
                abs(z - tz) <= 1 and abs(y - ty) <= 2 and abs(x - tx) <= 2 for tz, ty, tx in taken
            ):
                continue
            taken.append((z, y, x))
            findings.append(
                Finding(
                    kind="local",
                    score=score,
                    slice=z,
                    row=grid.centre(y),
                    col=grid.centre(x),
                    radius=grid.tile / 2,
                    detail=(
                        f"patch classifier probability {patch_prob[z, y, x]:.2f} for this "
                        f"{grid.tile}x{grid.tile} patch; the heatmap of slice {z} scores "
                        f"{slice_scores[z]:.2f} (residual and texture inconsistency)"
                    ),
                )
            )
        return findings
