"""The classical baseline: handcrafted tile features and a small linear model.

It is the yardstick every deep model must beat, and a fast fallback. For each tile inside the
body (``features.volume_features``: noise residual levels, kurtosis, zero counts and local
spectrum, mostly relative to the tile's neighbours in the slice and in the adjacent slices):

1. the features are standardised and a logistic regression (or, if trained so, a one-hidden-layer
   perceptron) gives a tile logit;
2. the volume statistic is the mean of the ``top_k`` tile logits, minus ``tail_scale * ln(N /
   reference_tiles)``: the maximum of N authentic tiles grows like the log of N, and this keeps a
   300-slice series comparable with the short chunks the model was calibrated on;
3. Platt scaling turns the statistic into a probability, and an operating point fixed at 1 %
   false positives on authentic validation chunks gives the verdict;
4. every tile's logit, put through the same size correction and calibration, is that tile's
   probability: the anomaly map (on the ``stride`` grid, each cell the largest tile covering
   it), and its peaks after non-maximum suppression are the findings.

Everything the model needs (weights, feature standardisation, tiling, calibration, operating
point, model card) lives in one JSON file; ``train_classical`` makes one from ``TrainCase`` lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medforensics.detect.base import Detector
from medforensics.detect.calibration import PlattCalibration, fit_platt
from medforensics.detect.features import (
    CHUNK_SLICES,
    FEATURES_VERSION,
    TileFeatures,
    TileGrid,
    feature_names,
    tile_overlap,
    volume_features,
)
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import ImageVolume

if TYPE_CHECKING:
    from medforensics.train.cases import TrainCase

MODEL_FORMAT = "medforensics-classical/1"
DEFAULT_MODEL = "classical.json"
#: fewer valid tiles than this and the image cannot be assessed
MIN_TILES = 16
#: a tile is a positive training example when the attack changed at least this share of it
MIN_OVERLAP = 0.2

#: plain words for the feature families, used in finding details
_PLAIN = {
    "level_d1": "first-difference noise level",
    "level_d2": "second-difference noise level",
    "level_kv": "KV-filter noise level",
    "zeros_d1": "share of flat (zero-difference) pixels",
    "zeros_kv": "share of zero KV residuals",
    "log_kurtosis_kv": "noise kurtosis",
    "hf_share": "high-frequency power share",
    "spectral_slope": "spectral slope",
}


class ModelFileError(FileNotFoundError):
    """A classical model file is missing or unusable; the message says what to do."""


@dataclass
class ClassicalModel:
    """A trained classical detector, saved as one JSON file.

    Attributes:
        feature_names: the feature columns the weights expect, in order.
        grid: tiling the features were computed on.
        mean: per-feature mean used for standardisation.
        scale: per-feature standard deviation used for standardisation.
        layers: dense layers ``(weights (in, out), bias (out,))``, ReLU between them; one layer
            is a logistic regression.
        top_k: tile logits averaged into the volume statistic.
        tail_scale: growth of the top-k logits per unit of ``ln(tiles)`` on authentic data.
        reference_tiles: tile count the statistic is referred to (median of the calibration cases).
        calibration: Platt scaling of the statistic.
        operating_point: thresholds on the calibrated score.
        modalities: modalities the model was trained on.
        card: model card (data, preprocessing, metrics).
    """

    feature_names: tuple[str, ...]
    grid: TileGrid
    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    top_k: int = 3
    tail_scale: float = 1.0
    reference_tiles: int = 2000
    calibration: PlattCalibration = field(default_factory=lambda: PlattCalibration(1.0, 0.0))
    operating_point: OperatingPoint = field(default_factory=OperatingPoint)
    modalities: tuple[str, ...] = ("CT",)
    card: dict[str, Any] = field(default_factory=dict)

    # --- scoring ----------------------------------------------------------------------------

    def logits(self, matrix: np.ndarray) -> np.ndarray:
        """Tile logits for a ``(tiles, features)`` matrix."""
        hidden = (np.asarray(matrix, dtype=np.float64) - self.mean) / self.scale
        for index, (weights, bias) in enumerate(self.layers):
            hidden = hidden @ weights + bias
            if index < len(self.layers) - 1:
                hidden = np.maximum(hidden, 0.0)
        return np.asarray(hidden[:, 0])

    def tile_logits(self, features: TileFeatures, chunk_slices: int = CHUNK_SLICES) -> np.ndarray:
        """``(slices, tile_rows, tile_cols)`` logits, NaN outside the body.

        Scored ``chunk_slices`` slices at a time, so the float64 copies the model works on
        stay small; the result does not depend on it.
        """
        out = np.full(features.valid.shape, np.nan)
        step = max(chunk_slices, 1)
        for start in range(0, len(features.valid), step):
            part = slice(start, start + step)
            valid = features.valid[part]
            if valid.any():
                out[part][valid] = self.logits(features.values[part][valid])
        return out

    def tile_probabilities(self, tile_logits: np.ndarray) -> np.ndarray:
        """Each tile's calibrated probability: the score the volume would get from it alone.

        On the same scale as the volume score, so an authentic scan's map stays dark and the
        map's brightest cell matches the top finding. 0 outside the body.
        """
        finite = np.isfinite(tile_logits)
        n_tiles = int(finite.sum())
        shifted = np.where(finite, tile_logits, 0.0) - self.size_correction(max(n_tiles, 1))
        return np.where(finite, self.calibration(shifted), 0.0)

    def size_correction(self, n_tiles: int) -> float:
        return self.tail_scale * math.log(max(n_tiles, 1) / self.reference_tiles)

    def statistic(self, tile_logits: np.ndarray) -> float:
        """Mean of the top-k tile logits, referred to ``reference_tiles`` tiles (NaN if too few)."""
        values = tile_logits[np.isfinite(tile_logits)]
        if values.size < MIN_TILES:
            return math.nan
        top = np.partition(values, values.size - self.top_k)[-self.top_k :]
        return float(top.mean()) - self.size_correction(values.size)

    def features(
        self, volume: ImageVolume, workers: int = 1, chunk_slices: int = CHUNK_SLICES
    ) -> TileFeatures:
        """Tile features of ``volume``, streamed ``chunk_slices`` slices at a time."""
        return volume_features(
            volume.pixels,
            volume.modality,
            self.grid,
            workers=workers,
            chunk_slices=chunk_slices,
        )

    # --- persistence ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "features_version": FEATURES_VERSION,
            "feature_names": list(self.feature_names),
            "grid": asdict(self.grid),
            "scaler": {"mean": json_floats(self.mean), "scale": json_floats(self.scale)},
            "layers": [{"weights": json_floats(w), "bias": json_floats(b)} for w, b in self.layers],
            "statistic": {
                "top_k": self.top_k,
                "tail_scale": self.tail_scale,
                "reference_tiles": self.reference_tiles,
            },
            "calibration": asdict(self.calibration),
            "operating_point": asdict(self.operating_point),
            "modalities": list(self.modalities),
            "card": self.card,
        }

    def save(self, path: str | Path) -> Path:
        return write_model_json(self.to_dict(), path)

    @staticmethod
    def load(path: str | Path) -> ClassicalModel:
        """Read a model file written by ``save``.

        Raises:
            ModelFileError: the file is missing, not a classical model, or was made for
                other features than this version computes.
        """
        path = Path(path)
        payload = read_model_json(
            path,
            MODEL_FORMAT,
            "classical",
            "Train one with `medforensics train --model classical` (or "
            "medforensics.detect.classical.train_classical) and pass its path",
        )
        names = tuple(payload.get("feature_names", ()))
        version = payload.get("features_version")
        if names != feature_names() or version != FEATURES_VERSION:
            raise ModelFileError(
                f"{path}: was trained on features version {version} ({len(names)} columns), "
                f"but this version of medforensics computes version {FEATURES_VERSION} "
                f"({len(feature_names())} columns); retrain it with "
                "`medforensics train --model classical`"
            )
        stat = payload["statistic"]
        return ClassicalModel(
            feature_names=names,
            grid=TileGrid(**payload["grid"]),
            mean=np.asarray(payload["scaler"]["mean"], dtype=np.float64),
            scale=np.asarray(payload["scaler"]["scale"], dtype=np.float64),
            layers=layers_from_json(payload["layers"]),
            top_k=int(stat["top_k"]),
            tail_scale=float(stat["tail_scale"]),
            reference_tiles=int(stat["reference_tiles"]),
            calibration=PlattCalibration(**payload["calibration"]),
            operating_point=OperatingPoint(**payload["operating_point"]),
            modalities=tuple(payload.get("modalities", ("CT",))),
            card=dict(payload.get("card", {})),
        )


def tile_training_set(
    cases: Sequence[TrainCase],
    grid: TileGrid,
    rng: np.random.Generator,
    flat_share: float,
    max_negatives: int,
    unit: str = "tile",
) -> tuple[list[_CaseFeatures], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tile features of ``cases`` (a ``flat_share`` of them without slice context), the labelled
    tile examples with negatives subsampled to ``max_negatives``, and their standardisation.

    Returns:
        The per-case features, ``x``, ``y``, and the mean and scale of ``x``'s columns.
    """
    items = [
        _case_features(case, grid, slice_context=bool(rng.random() >= flat_share)) for case in cases
    ]
    x, y = _tile_examples(items, MIN_OVERLAP)
    if not y.any():
        raise ValueError(
            f"no tampered {unit} covers {MIN_OVERLAP:.0%} of a {grid.tile}-pixel {unit}; "
            f"use larger attacks or a smaller {unit}"
        )
    negatives = np.flatnonzero(y == 0)
    if negatives.size > max_negatives:
        keep = np.concatenate(
            [np.flatnonzero(y == 1), rng.choice(negatives, max_negatives, replace=False)]
        )
        x, y = x[keep], y[keep]
    mean = x.mean(axis=0).astype(np.float64)
    scale = x.std(axis=0).astype(np.float64)
    scale[scale < 1e-6] = 1.0
    return items, x, y, mean, scale


def json_floats(values: np.ndarray) -> Any:
    """``values`` as nested lists of float64: JSON keeps them exactly, so a reloaded model
    scores the same."""
    return np.asarray(values, dtype=np.float64).tolist()


def write_model_json(payload: dict[str, Any], path: str | Path) -> Path:
    """Write a JSON model file (sorted keys, one space indent); returns its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return target


def read_model_json(path: Path, model_format: str, kind: str, how_to_train: str) -> dict[str, Any]:
    """The payload of a JSON model file of ``model_format``; ``ModelFileError`` naming the file
    and the problem (missing: with ``how_to_train``; unreadable; another kind of file)."""
    if not path.is_file():
        raise ModelFileError(f"{path}: no {kind} model file here. {how_to_train}")
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot be read as a model file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != model_format:
        found = payload.get("format") if isinstance(payload, dict) else "no object"
        raise ModelFileError(
            f"{path}: is not a {kind} model file (expected format {model_format!r}, "
            f"found {found!r})"
        )
    return payload


def layers_from_json(entries: list[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(weights, bias)`` float64 arrays of each stored layer."""
    return [
        (np.asarray(e["weights"], dtype=np.float64), np.asarray(e["bias"], dtype=np.float64))
        for e in entries
    ]


def default_model_path() -> Path:
    """Where the shipped model lives (``medforensics/models/classical.json``)."""
    return Path(str(resources.files("medforensics.models").joinpath(DEFAULT_MODEL)))


def cell_map(tile_values: np.ndarray, grid: TileGrid, shape: tuple[int, int]) -> np.ndarray:
    """Tile values spread onto the ``stride`` grid: each cell gets the largest covering tile."""
    m = grid.blocks_per_tile
    cells = np.zeros((tile_values.shape[0], shape[0] // grid.stride, shape[1] // grid.stride))
    n_r, n_c = tile_values.shape[1:]
    for dy in range(m):
        for dx in range(m):
            view = cells[:, dy : dy + n_r, dx : dx + n_c]
            np.maximum(view, tile_values, out=view)
    return cells.astype(np.float32)


@register_detector
class ClassicalDetector(Detector):
    """Handcrafted noise and spectrum features per tile, a linear model, calibrated (CT)."""

    name = "classical"
    modalities = ("CT",)

    def __init__(
        self,
        model: str | Path | ClassicalModel | None = None,
        max_findings: int = 5,
        workers: int = 1,
        chunk_slices: int = CHUNK_SLICES,
    ) -> None:
        """Load ``model`` (a path or a ``ClassicalModel``), by default the shipped one.

        ``workers`` threads measure slices; ``chunk_slices`` slices are processed at a time
        (it bounds the memory a long series needs, never changes a score).

        Raises:
            ModelFileError: no model given and none shipped, or the file is unusable.
        """
        if isinstance(model, ClassicalModel):
            self.model = model
        else:
            self.model = ClassicalModel.load(model if model is not None else default_model_path())
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
            "tile": self.model.grid.tile,
            "stride": self.model.grid.stride,
            **self.model.card,
        }

    def statistic(self, volume: ImageVolume) -> float:
        """The raw, uncalibrated volume statistic (NaN when the image cannot be assessed)."""
        features = self.model.features(volume, self.workers, self.chunk_slices)
        return self.model.statistic(self.model.tile_logits(features, self.chunk_slices))

    def detect(self, volume: ImageVolume) -> Detection:
        if not self.supports(volume):
            return Detection.not_assessed(
                self.name,
                f"this model was trained on {', '.join(self.model.modalities)} only; "
                f"a {volume.modality} image cannot be assessed with it",
            )
        features = self.model.features(volume, self.workers, self.chunk_slices)
        logits = self.model.tile_logits(features, self.chunk_slices)
        statistic = self.model.statistic(logits)
        if math.isnan(statistic):
            return Detection.not_assessed(
                self.name,
                f"only {features.n_valid} tiles of {self.model.grid.tile}x"
                f"{self.model.grid.tile} pixels lie inside the imaged body (at least "
                f"{MIN_TILES} are needed): too small or blank to assess",
            )
        score = self.model.calibration.probability(statistic)
        tile_prob = self.model.tile_probabilities(logits)
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.model.operating_point.verdict(score),
            findings=self._findings(features, tile_prob),
            anomaly_map=cell_map(tile_prob, self.model.grid, volume.shape[1:]),
            map_stride=self.model.grid.stride,
            notes=[
                f"top-{self.model.top_k} tile evidence {statistic:+.2f} (logit units, referred "
                f"to {self.model.reference_tiles} tiles) over {features.n_valid} tiles"
            ],
        )

    def _findings(self, features: TileFeatures, tile_prob: np.ndarray) -> list[Finding]:
        """Peaks of the tile probabilities (at least 0.05), non-maximum suppressed."""
        grid = self.model.grid
        order = np.argsort(np.where(features.valid, tile_prob, -1.0), axis=None)[::-1]
        taken: list[tuple[int, int, int]] = []
        findings: list[Finding] = []
        for flat in order:
            z, y, x = (int(v) for v in np.unravel_index(flat, tile_prob.shape))
            score = float(tile_prob[z, y, x])
            if not features.valid[z, y, x] or score < 0.05 or len(findings) >= self.max_findings:
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
                    detail=self._explain(features.values[z, y, x]),
                )
            )
        return findings

    def _explain(self, row: np.ndarray) -> str:
        """Name the relative feature that stands out most in this tile, in plain words."""
        names = self.model.feature_names
        copied = float(np.expm1(row[names.index("duplicated_keypoints")]))
        if copied >= 1:
            return (
                f"{copied:.0f} noise keypoint(s) here repeat exactly elsewhere in the image "
                "(same texture at a consistent offset, possibly flipped): copy-move or clone"
            )
        best, best_value = "", 0.0
        for index, name in enumerate(names):
            if not name.endswith(("_vs_plane", "_vs_slices")) or name.startswith("abs_"):
                continue
            if abs(float(row[index])) > abs(best_value):
                best, best_value = name, float(row[index])
        if not best:
            return "tile texture differs from what the model learnt for authentic tissue"
        base, _, against = best.rpartition("_vs_")
        where = "its neighbours in the slice" if against == "plane" else "the adjacent slices"
        direction = "higher" if best_value > 0 else "lower"
        return (
            f"{_PLAIN.get(base, base)} {direction} than {where} "
            f"({abs(best_value):.1f} robust spreads); local texture inconsistent"
        )


# --- training ---------------------------------------------------------------------------------


@dataclass
class _CaseFeatures:
    features: TileFeatures
    overlap: np.ndarray | None
    case: TrainCase


def _case_features(case: TrainCase, grid: TileGrid, slice_context: bool) -> _CaseFeatures:
    features = volume_features(
        case.volume.pixels, case.volume.modality, grid, slice_context=slice_context
    )
    overlap = tile_overlap(case.mask, grid) if case.mask is not None else None
    return _CaseFeatures(features, overlap, case)


def _tile_examples(
    items: Sequence[_CaseFeatures], min_overlap: float
) -> tuple[np.ndarray, np.ndarray]:
    """Positive tiles (attack covers >= ``min_overlap``) and every authentic tile."""
    rows: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for item in items:
        if item.overlap is None:
            rows.append(item.features.matrix())
            labels.append(np.zeros(item.features.n_valid, dtype=np.int8))
        else:
            positive = item.features.valid & (item.overlap >= min_overlap)
            rows.append(item.features.values[positive])
            labels.append(np.ones(int(positive.sum()), dtype=np.int8))
    return np.concatenate(rows), np.concatenate(labels)


def _context_weights(context: np.ndarray, labels: np.ndarray, bins: int = 10) -> np.ndarray:
    """Weights that give authentic tiles the positives' distribution of ``context``.

    Attacks are placed in particular tissue (mostly lung), so without this a model learns
    "lung tile = suspicious": useless, since every chest scan has lungs, and it would light up
    every lung in the anomaly map. Matching the tissue mix leaves only texture to learn from.
    """
    positives = context[labels == 1]
    edges = np.unique(np.quantile(positives, np.linspace(0, 1, bins + 1)[1:-1]))
    index = np.searchsorted(edges, context)
    n_bins = len(edges) + 1
    share_pos = np.bincount(index[labels == 1], minlength=n_bins) / max(int(labels.sum()), 1)
    share_neg = np.bincount(index[labels == 0], minlength=n_bins) / max(int((1 - labels).sum()), 1)
    ratio = share_pos / np.maximum(share_neg, 1e-9)
    weights = np.where(labels == 0, ratio[index], 1.0)
    negatives = labels == 0
    weights[negatives] /= max(float(weights[negatives].mean()), 1e-12)
    return weights


def _fit_layers(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, hidden: int, seed: int, c: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fit on standardised tiles with classes weighted 50/50; return the dense layers."""
    weight = (
        weight
        * np.where(y == 1, 0.5 / max(int(y.sum()), 1), 0.5 / max(int((1 - y).sum()), 1))
        * y.size
    )
    if hidden <= 0:
        from sklearn.linear_model import LogisticRegression

        linear = LogisticRegression(C=c, max_iter=3000)
        linear.fit(x, y, sample_weight=weight)
        return [(linear.coef_.T.copy(), linear.intercept_.copy())]
    from sklearn.neural_network import MLPClassifier

    net = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        alpha=1.0 / c,
        max_iter=300,
        early_stopping=True,
        random_state=seed,
    )
    net.fit(x, y, sample_weight=weight)
    return [(w.copy(), b.copy()) for w, b in zip(net.coefs_, net.intercepts_, strict=True)]


def _tail_scale(authentic_logits: np.ndarray) -> float:
    """Mean excess over the 99th percentile: how fast the maximum of N tiles grows with ln N."""
    if authentic_logits.size < 200:
        return 1.0
    threshold = float(np.quantile(authentic_logits, 0.99))
    excess = authentic_logits[authentic_logits > threshold] - threshold
    return float(max(excess.mean(), 0.05)) if excess.size else 1.0


def train_classical(
    train_cases: Sequence[TrainCase],
    val_cases: Sequence[TrainCase],
    seed: int,
    *,
    grid: TileGrid | None = None,
    hidden: int = 0,
    regularisation: float = 0.1,
    max_negatives: int = 200_000,
    flat_share: float = 0.3,
    match_tissue: bool = True,
    top_k: int = 3,
    target_fpr: float = 0.01,
    inconclusive_fpr: float = 0.03,
    card: dict[str, Any] | None = None,
) -> ClassicalModel:
    """Train a classical model on tiles of ``train_cases``; calibrate it on ``val_cases``.

    Tiles of tampered cases that the attack covers by at least ``MIN_OVERLAP`` are positives;
    every tile of an authentic case is a negative (at most ``max_negatives``, drawn at random),
    weighted to the positives' tissue mix; the classes are weighted 50/50. On the validation
    cases the volume statistic is Platt-scaled and the operating point put at ``target_fpr`` of
    the authentic chunks (``inconclusive_fpr`` for the lower, "authentic" threshold).

    Args:
        train_cases: authentic and tampered cases (``medforensics.train.cases.make_cases``).
        val_cases: cases of other patients (or other chunks), with both labels.
        seed: makes tile sampling and the 2D augmentation reproducible.
        grid: tiling (default 32-pixel tiles every 16 pixels).
        hidden: hidden units of a one-layer perceptron; 0 trains a logistic regression.
        regularisation: inverse regularisation strength ``C``.
        max_negatives: cap on authentic tiles used for fitting.
        flat_share: share of training cases whose features are computed slice by slice
            (no adjacent-slice context), so single 2D slices are scored on familiar ground.
        match_tissue: weight authentic tiles so their mean intensity is distributed like the
            attacked tiles' (see ``_context_weights``).
        top_k: tile logits averaged into the volume statistic.
        target_fpr: false-positive rate of the "manipulated" threshold.
        inconclusive_fpr: false-positive rate of the "authentic" threshold.
        card: model card entries (data, preprocessing...); metrics are added to it.

    Raises:
        ValueError: when either set lacks authentic or tampered cases.
    """
    grid = grid or TileGrid()
    for label, cases in (("train", train_cases), ("validation", val_cases)):
        kinds = {case.label for case in cases}
        if kinds != {0, 1}:
            raise ValueError(
                f"{label} cases need both authentic and tampered chunks; got "
                f"{len(cases)} case(s) with labels {sorted(kinds)}"
            )
    rng = np.random.default_rng(seed)
    _, x, y, mean, scale = tile_training_set(train_cases, grid, rng, flat_share, max_negatives)
    weight = (
        _context_weights(x[:, feature_names().index("mean_intensity")], y)
        if match_tissue
        else np.ones(y.size)
    )
    layers = _fit_layers((x - mean) / scale, y, weight, hidden, seed, regularisation)
    model = ClassicalModel(
        feature_names=feature_names(),
        grid=grid,
        mean=mean,
        scale=scale,
        layers=layers,
        top_k=top_k,
    )
    return calibrate_classical(
        model,
        val_cases,
        target_fpr=target_fpr,
        inconclusive_fpr=inconclusive_fpr,
        card={
            **(card or {}),
            "training_tiles": {"positive": int(y.sum()), "negative": int((1 - y).sum())},
            "training_cases": _case_counts(train_cases),
        },
    )


def _case_counts(cases: Sequence[TrainCase]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for case in cases:
        key = case.attack or "authentic"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def calibrate_classical(
    model: ClassicalModel,
    val_cases: Sequence[TrainCase],
    target_fpr: float = 0.01,
    inconclusive_fpr: float = 0.03,
    card: dict[str, Any] | None = None,
) -> ClassicalModel:
    """Set the size correction, Platt calibration and operating point from validation cases."""
    from medforensics.evaluate import compute_metrics, threshold_for_fpr

    all_logits = [model.tile_logits(model.features(case.volume)) for case in val_cases]
    authentic = [
        lg[np.isfinite(lg)] for lg, c in zip(all_logits, val_cases, strict=True) if c.label == 0
    ]
    model.tail_scale = _tail_scale(np.concatenate(authentic))
    counts = [int(np.isfinite(lg).sum()) for lg in all_logits]
    model.reference_tiles = max(int(np.median(counts)), 1)
    statistics = np.array([model.statistic(lg) for lg in all_logits])
    labels = np.array([case.label for case in val_cases])
    keep = np.isfinite(statistics)
    statistics, labels = statistics[keep], labels[keep]
    attacks = [case.attack for case, kept in zip(val_cases, keep, strict=True) if kept]
    model.calibration = fit_platt(statistics, labels)
    probabilities = model.calibration(statistics)
    authentic_probs = probabilities[labels == 0]
    manipulated_at = min(threshold_for_fpr(authentic_probs, target_fpr), 1.0)
    authentic_below = min(threshold_for_fpr(authentic_probs, inconclusive_fpr), manipulated_at)
    model.operating_point = OperatingPoint(
        manipulated_at=float(manipulated_at),
        authentic_below=float(authentic_below),
        target_fpr=target_fpr,
    )
    overall = compute_metrics(labels, probabilities, threshold=manipulated_at)
    per_attack: dict[str, Any] = {}
    for attack in sorted({a for a in attacks if a}):
        chosen = np.array([a in (None, attack) for a in attacks])
        metrics = compute_metrics(labels[chosen], probabilities[chosen], threshold=manipulated_at)
        per_attack[attack] = {
            "auc": _round(metrics.roc_auc),
            "tpr_at_threshold": _round(metrics.at_threshold.recall),
            "cases": int(labels[chosen].sum()),
        }
    model.card = {
        **(card or model.card),
        "validation": {
            "authentic_cases": int((labels == 0).sum()),
            "manipulated_cases": int(labels.sum()),
            "auc": _round(overall.roc_auc),
            "tpr_at_threshold": _round(overall.at_threshold.recall),
            "per_attack": per_attack,
        },
    }
    return model


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)
