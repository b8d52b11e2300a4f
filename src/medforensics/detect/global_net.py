"""Global detectors: is a whole slice generated or globally altered? One MONAI network per slice.

Three detectors share one pipeline and differ only in the network:

* ``global-cnn``: a small MONAI ``DenseNet`` (2 input channels: the windowed slice and its
  high-pass residual, where generators leave their traces);
* ``global-vit``: a small MONAI ``ViT`` (patch 16, hidden 192, 4 layers) on the same input;
* ``densenet121-slice``: MONAI ``DenseNet121`` on the windowed slice alone, 256×256, one
  channel, the seed project's whole-slice classifier, kept as the baseline.

Each slice is resized to the model's size (256) after windowing, scored by the network (a
logit), and calibrated to a probability by Platt scaling fitted on validation slices. The
volume score is a second Platt map of the mean of the ``top_k`` highest slice logits (the
maximum by default), and the verdict comes from an operating point chosen at 1 % false
positives on validation volumes. Every slice whose probability is notable becomes a ``global``
finding naming it.

A model is saved as a torch ``state_dict`` (``NAME.pt``) plus a JSON sidecar (``NAME.json``)
holding the network's constructor arguments, preprocessing, calibration, operating point and
model card, so loading never depends on this module's defaults. Train one with
``train_global``; see ``benchmarks/dev_global.py``.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medforensics.detect.base import Detector
from medforensics.detect.calibration import PlattCalibration, fit_platt
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import ImageVolume
from medforensics.utils.optional import require

if TYPE_CHECKING:
    import torch

    from medforensics.train.cases import TrainCase

#: MONAI network classes a checkpoint may name
_NETWORK_CLASSES = ("DenseNet", "DenseNet121", "ViT")
#: slice probability below which a slice is not reported as a finding
_FINDING_FLOOR = 0.05


class CheckpointNotFoundError(FileNotFoundError):
    """A global detector has no weights to load; the message says how to get some."""


@dataclass(frozen=True)
class SlicePreprocessing:
    """How a slice becomes network input; stored with the weights.

    Attributes:
        size: side of the square input (slices are resized, aspect ratio not kept).
        window: ``(low, high)`` pixel values mapped to [-1, 1] (HU for CT); None maps each
            slice's 1st to 99th percentile instead (modalities without absolute units).
        residual: add a second channel, the 3×3 high-pass residual of the resized slice.
        residual_gain: factor on the residual (CT noise is about 1 % of the window).
    """

    size: int = 256
    window: tuple[float, float] | None = (-1024.0, 1024.0)
    residual: bool = True
    residual_gain: float = 20.0

    @property
    def channels(self) -> int:
        return 2 if self.residual else 1

    def __call__(self, slices: np.ndarray) -> torch.Tensor:
        """``(n, rows, cols)`` pixel values -> ``(n, channels, size, size)`` float32 tensor."""
        torch = require("torch", "the global detectors")
        functional = torch.nn.functional
        pixels = torch.from_numpy(np.asarray(slices, dtype=np.float32))
        if self.window is not None:
            low = torch.full((pixels.shape[0], 1, 1), self.window[0])
            high = torch.full((pixels.shape[0], 1, 1), self.window[1])
        else:
            flat = pixels.reshape(pixels.shape[0], -1)
            sample = flat[:, :: max(1, flat.shape[1] // 65536)]  # quantile is slow on 512²
            low = torch.quantile(sample, 0.01, dim=1).view(-1, 1, 1)
            high = torch.quantile(sample, 0.99, dim=1).view(-1, 1, 1)
        unit = ((pixels - low) / torch.clamp(high - low, min=1e-6)).clamp(0.0, 1.0)[:, None]
        if tuple(unit.shape[-2:]) != (self.size, self.size):
            shrink = unit.shape[-2] > self.size or unit.shape[-1] > self.size
            unit = functional.interpolate(
                unit, (self.size, self.size), mode="bilinear", align_corners=False, antialias=shrink
            )
        image = unit * 2.0 - 1.0
        if not self.residual:
            return image.contiguous()
        padded = functional.pad(image, (1, 1, 1, 1), mode="replicate")
        residual = image - functional.avg_pool2d(padded, 3, stride=1)
        return torch.cat([image, (residual * self.residual_gain).clamp(-4.0, 4.0)], dim=1)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> SlicePreprocessing:
        window = raw.get("window")
        return SlicePreprocessing(
            size=int(raw["size"]),
            window=None if window is None else (float(window[0]), float(window[1])),
            residual=bool(raw["residual"]),
            residual_gain=float(raw.get("residual_gain", 20.0)),
        )


def default_network(arch: str, preprocessing: SlicePreprocessing) -> dict[str, Any]:
    """The MONAI class and constructor arguments of ``arch`` for this preprocessing."""
    channels, size = preprocessing.channels, preprocessing.size
    if arch == "global-cnn":
        kwargs: dict[str, Any] = {
            "spatial_dims": 2,
            "in_channels": channels,
            "out_channels": 1,
            "init_features": 24,
            "growth_rate": 12,
            "block_config": [2, 4, 6, 4],
            "bn_size": 2,
        }
        return {"class": "DenseNet", "kwargs": kwargs}
    if arch == "global-vit":
        kwargs = {
            "in_channels": channels,
            "img_size": [size, size],
            "patch_size": [16, 16],
            "hidden_size": 192,
            "mlp_dim": 768,
            "num_layers": 4,
            "num_heads": 3,
            "classification": True,
            "num_classes": 1,
            "post_activation": None,
            "spatial_dims": 2,
        }
        return {"class": "ViT", "kwargs": kwargs}
    if arch == "densenet121-slice":
        kwargs = {"spatial_dims": 2, "in_channels": channels, "out_channels": 1}
        return {"class": "DenseNet121", "kwargs": kwargs}
    raise KeyError(f"unknown global architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")


#: registry name -> default preprocessing (the network follows from it)
ARCHITECTURES: dict[str, SlicePreprocessing] = {
    "global-cnn": SlicePreprocessing(),
    "global-vit": SlicePreprocessing(),
    "densenet121-slice": SlicePreprocessing(residual=False),
}


def build_network(spec: dict[str, Any]) -> torch.nn.Module:
    """Instantiate the MONAI network a spec (``{"class": ..., "kwargs": ...}``) names."""
    if spec["class"] not in _NETWORK_CLASSES:
        raise ValueError(
            f"network class {spec['class']!r} is not one of {', '.join(_NETWORK_CLASSES)}"
        )
    if spec["class"] == "ViT":
        require("einops", "the global-vit detector (MONAI's ViT)")
    nets = require("monai.networks.nets", "the global detectors")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["kwargs"].items()}
    network: torch.nn.Module = getattr(nets, spec["class"])(**kwargs)
    return network


def _logits(network: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    output = network(batch)
    if isinstance(output, tuple):  # MONAI's ViT returns (logits, hidden states)
        output = output[0]
    return output.reshape(-1)


@dataclass
class GlobalModel:
    """A trained global detector: network, preprocessing, calibration and model card.

    Attributes:
        arch: registry name (``global-cnn``, ``global-vit``, ``densenet121-slice``).
        network: the torch module, in eval mode.
        network_spec: MONAI class and constructor arguments of ``network``.
        preprocessing: how slices become input.
        slice_calibration: slice logit -> probability.
        volume_calibration: top-k mean of slice logits -> volume probability.
        operating_point: thresholds on the volume probability.
        top_k: slices averaged for the volume statistic.
        modalities: modalities it was trained on (empty: any).
        card: model card (data, attribution, figures, intended use, limits).
    """

    arch: str
    network: torch.nn.Module
    network_spec: dict[str, Any]
    preprocessing: SlicePreprocessing
    slice_calibration: PlattCalibration
    volume_calibration: PlattCalibration
    operating_point: OperatingPoint
    top_k: int = 1
    modalities: tuple[str, ...] = ()
    card: dict[str, Any] = field(default_factory=dict)

    def sidecar(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "network": self.network_spec,
            "preprocessing": self.preprocessing.to_json(),
            "slice_calibration": asdict(self.slice_calibration),
            "volume_calibration": asdict(self.volume_calibration),
            "operating_point": asdict(self.operating_point),
            "top_k": self.top_k,
            "modalities": list(self.modalities),
            "card": self.card,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``PATH.pt`` (state_dict) and ``PATH.json`` (everything else)."""
        torch = require("torch", "the global detectors")
        weights = Path(path).with_suffix(".pt")
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.state_dict(), weights)
        text = json.dumps(self.sidecar(), indent=2, sort_keys=True) + "\n"
        weights.with_suffix(".json").write_text(text)
        return weights

    @staticmethod
    def load(path: str | Path) -> GlobalModel:
        """Read a model written by ``save`` (give the ``.pt`` or the ``.json``)."""
        torch = require("torch", "the global detectors")
        weights = Path(path).with_suffix(".pt")
        sidecar_path = weights.with_suffix(".json")
        for needed in (weights, sidecar_path):
            if not needed.is_file():
                raise CheckpointNotFoundError(
                    f"{needed}: not found; a global detector checkpoint is a .pt state_dict "
                    "with a .json sidecar of the same name, both written by GlobalModel.save()"
                )
        try:
            meta = json.loads(sidecar_path.read_text())
            network = build_network(meta["network"])
            state = torch.load(weights, weights_only=True, map_location="cpu")
            network.load_state_dict(state)
        except (KeyError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
            raise ValueError(f"{weights}: cannot load this checkpoint: {exc}") from exc
        network.eval()
        return GlobalModel(
            arch=meta["arch"],
            network=network,
            network_spec=meta["network"],
            preprocessing=SlicePreprocessing.from_json(meta["preprocessing"]),
            slice_calibration=PlattCalibration(**meta["slice_calibration"]),
            volume_calibration=PlattCalibration(**meta["volume_calibration"]),
            operating_point=OperatingPoint(**meta["operating_point"]),
            top_k=int(meta.get("top_k", 1)),
            modalities=tuple(meta.get("modalities", ())),
            card=dict(meta.get("card", {})),
        )


def slice_logits(model: GlobalModel, pixels: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """Raw network logit per slice of ``(slices, rows, cols)`` or one ``(rows, cols)`` image.

    Slices are preprocessed and scored ``batch_size`` at a time, so memory stays at one batch
    of network input whatever the series length; ``pixels`` is only read.
    """
    torch = require("torch", "the global detectors")
    stack = pixels[None] if pixels.ndim == 2 else pixels
    if stack.ndim != 3:
        raise ValueError(f"expected (rows, cols) or (slices, rows, cols), got {pixels.shape}")
    model.network.eval()
    out = np.empty(stack.shape[0], dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, stack.shape[0], batch_size):
            batch = model.preprocessing(stack[start : start + batch_size])
            out[start : start + batch.shape[0]] = _logits(model.network, batch).double().numpy()
    return out


def volume_statistic(logits: np.ndarray, top_k: int) -> float:
    """Mean of the ``top_k`` highest slice logits (the maximum when ``top_k`` is 1)."""
    k = max(1, min(top_k, logits.size))
    return float(np.mean(np.sort(logits)[-k:]))


def _shipped_checkpoint(arch: str) -> Path | None:
    """The weights shipped in ``medforensics/models`` for ``arch``, if any."""
    entry = resources.files("medforensics.models").joinpath(f"{arch}.pt")
    if not entry.is_file():
        return None
    return Path(str(entry))


class GlobalSliceDetector(Detector):
    """Per-slice network scores, calibrated; subclasses name the architecture."""

    modalities = ()

    def __init__(
        self,
        checkpoint: str | Path | GlobalModel | None = None,
        batch_size: int = 8,
        max_findings: int = 5,
    ) -> None:
        self.batch_size = batch_size
        self.max_findings = max_findings
        if isinstance(checkpoint, GlobalModel):
            self.model = checkpoint
        else:
            path = Path(checkpoint) if checkpoint is not None else _shipped_checkpoint(self.name)
            if path is None:
                raise CheckpointNotFoundError(
                    f"detector {self.name!r} has no shipped weights "
                    f"(medforensics/models/{self.name}.pt). Pass checkpoint=PATH to a model "
                    f"saved by GlobalModel.save(), or train one: medforensics.detect.global_net."
                    f"train_global({self.name!r}, train_cases, val_cases, seed=0, epochs=5) "
                    "(benchmarks/dev_global.py shows how to build the cases)"
                )
            self.model = GlobalModel.load(path)
        if self.model.arch != self.name:
            raise ValueError(
                f"checkpoint holds a {self.model.arch!r} model, not {self.name!r}; load it with "
                f"create_detector({self.model.arch!r}, checkpoint=...)"
            )

    def supports(self, volume: ImageVolume) -> bool:
        return not self.model.modalities or volume.modality in self.model.modalities

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "network": self.model.network_spec["class"],
            "input": self.model.preprocessing.to_json(),
            "top_k": self.model.top_k,
            **self.model.card,
        }

    def slice_probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Calibrated probability that each slice is generated / globally manipulated."""
        logits = slice_logits(self.model, pixels, self.batch_size)
        return self.model.slice_calibration(logits)

    def save(self, path: str | Path) -> Path:
        return self.model.save(path)

    def detect(self, volume: ImageVolume) -> Detection:
        logits = slice_logits(self.model, volume.pixels, self.batch_size)
        probabilities = np.asarray(self.model.slice_calibration(logits), dtype=np.float64)
        score = self.model.volume_calibration.probability(
            volume_statistic(logits, self.model.top_k)
        )
        _, rows, cols = volume.shape
        order = np.argsort(-probabilities, kind="stable")
        findings = [
            Finding(
                kind="global",
                score=float(probabilities[z]),
                slice=int(z),
                row=rows // 2,
                col=cols // 2,
                detail=(
                    f"whole slice {int(z)} looks generated or globally altered "
                    f"(slice probability {probabilities[z]:.2f})"
                ),
            )
            for z in order[: self.max_findings]
            if probabilities[z] >= _FINDING_FLOOR
        ]
        top = int(order[0])
        notes = [
            f"most suspicious slice {top} of {volume.shape[0]} (probability "
            f"{probabilities[top]:.2f}); volume score from the top-{self.model.top_k} slice "
            f"logits of a {self.model.network_spec['class']} network"
        ]
        verdict = self.model.operating_point.verdict(score)
        if not self.supports(volume):
            verdict = "inconclusive"
            notes.append(
                f"trained on {', '.join(self.model.modalities)} images, this is "
                f"{volume.modality}: the score is not calibrated for it"
            )
        return Detection(self.name, score, verdict, findings, notes=notes)


@register_detector
class GlobalCnnDetector(GlobalSliceDetector):
    """Small MONAI DenseNet on the windowed slice plus its high-pass residual."""

    name = "global-cnn"


@register_detector
class GlobalVitDetector(GlobalSliceDetector):
    """Small MONAI ViT (patch 16, hidden 192) on the windowed slice plus its residual."""

    name = "global-vit"


@register_detector
class DenseNet121SliceDetector(GlobalSliceDetector):
    """MONAI DenseNet121 on the windowed 256×256 slice: the seed project's baseline."""

    name = "densenet121-slice"


_DETECTOR_CLASSES: dict[str, type[GlobalSliceDetector]] = {
    cls.name: cls for cls in (GlobalCnnDetector, GlobalVitDetector, DenseNet121SliceDetector)
}


def load_global(path: str | Path) -> GlobalSliceDetector:
    """The right detector class for a saved global model, whatever its architecture."""
    model = GlobalModel.load(path)
    return _DETECTOR_CLASSES[model.arch](model)


@dataclass
class TrainResult:
    """What ``train_global`` returns.

    Attributes:
        detector: the trained, calibrated detector (save it with ``detector.save(path)``).
        history: one dict per epoch (loss, validation slice AUC).
        validation: slice and volume AUC on the validation cases, and the operating point's
            false-positive and true-positive rates there.
    """

    detector: GlobalSliceDetector
    history: list[dict[str, float]]
    validation: dict[str, Any]


def _slice_index(cases: Sequence[TrainCase]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(case index, slice index, label) of every slice; a slice is positive if masked anywhere."""
    case_ids, slice_ids, labels = [], [], []
    for c, case in enumerate(cases):
        touched: np.ndarray = (
            np.asarray(case.mask.any(axis=(1, 2)))
            if case.mask is not None
            else np.zeros(case.volume.shape[0], dtype=bool)
        )
        for z in range(case.volume.shape[0]):
            case_ids.append(c)
            slice_ids.append(z)
            labels.append(int(touched[z]))
    return np.asarray(case_ids), np.asarray(slice_ids), np.asarray(labels)


def _case_label(case: TrainCase) -> int:
    return int(case.mask is not None and bool(case.mask.any()))


def _balanced_draw(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` slice indices, each class equally likely (with replacement only if needed)."""
    weights = np.where(labels == 1, 0.5 / max(labels.sum(), 1), 0.5 / max((1 - labels).sum(), 1))
    weights = weights / weights.sum()
    return rng.choice(labels.size, size=count, replace=count > labels.size, p=weights)


def train_global(
    arch: str,
    train_cases: Sequence[TrainCase],
    val_cases: Sequence[TrainCase],
    seed: int,
    epochs: int = 5,
    *,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    slices_per_epoch: int | None = None,
    preprocessing: SlicePreprocessing | None = None,
    network: dict[str, Any] | None = None,
    top_k: int = 1,
    target_fpr: float = 0.01,
    card: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train and calibrate a global detector on cases from ``medforensics.train.cases``.

    Slices are labelled positive when their case's mask touches them. Each epoch draws
    ``slices_per_epoch`` slices (default: all) with the classes balanced, flips half of them
    left-right, and minimises the logistic loss with AdamW under a cosine schedule. Afterwards
    Platt scaling is fitted on the validation slices (slice probability) and on the validation
    volumes' top-k statistic (volume probability), and the operating point is set where at most
    ``target_fpr`` of the authentic validation volumes are called manipulated.

    Args:
        arch: ``global-cnn``, ``global-vit`` or ``densenet121-slice``.
        train_cases: cases to learn from.
        val_cases: cases to calibrate on; they need authentic and manipulated cases.
        seed: seeds the weights, the draws and the flips.
        epochs: passes of ``slices_per_epoch`` slices.
        batch_size: slices per optimiser step.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        slices_per_epoch: slices drawn per epoch (default: as many as there are).
        preprocessing: overrides the architecture's default input.
        network: overrides of the MONAI constructor arguments (e.g. ``{"num_layers": 2}``).
        top_k: slices averaged for the volume statistic.
        target_fpr: false-positive rate of the operating point on validation volumes.
        card: model card entries stored with the weights (data, attribution, intended use).
        progress: called with one line per epoch.
    """
    from medforensics.evaluate import roc_auc, threshold_for_fpr

    torch = require("torch", "training a global detector")
    if arch not in ARCHITECTURES:
        raise KeyError(
            f"unknown global architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}"
        )
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    prep = preprocessing or ARCHITECTURES[arch]
    spec = default_network(arch, prep)
    spec["kwargs"].update(network or {})
    case_ids, slice_ids, labels = _slice_index(train_cases)
    if labels.min() == labels.max():
        raise ValueError("train_cases need both authentic and manipulated slices")
    rng = np.random.default_rng(seed)
    per_epoch = slices_per_epoch or labels.size
    steps = epochs * math.ceil(per_epoch / batch_size)
    history: list[dict[str, float]] = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build_network(spec)
        optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15
        )
        loss_fn = torch.nn.BCEWithLogitsLoss()
        model = GlobalModel(
            arch,
            net,
            spec,
            prep,
            PlattCalibration(1.0, 0.0),
            PlattCalibration(1.0, 0.0),
            OperatingPoint(),
            top_k,
            tuple(sorted({c.volume.modality for c in train_cases})),
        )
        for epoch in range(epochs):
            net.train()
            drawn = _balanced_draw(labels, per_epoch, rng)
            losses = []
            for start in range(0, drawn.size, batch_size):
                chosen = drawn[start : start + batch_size]
                if chosen.size < 2 and spec["class"] != "ViT":
                    continue  # batch norm cannot train on one slice
                pixels = np.stack(
                    [train_cases[case_ids[i]].volume.pixels[slice_ids[i]] for i in chosen]
                )
                batch = prep(pixels)
                flip = torch.from_numpy(rng.random(chosen.size) < 0.5)[:, None, None, None]
                batch = torch.where(flip, batch.flip(-1), batch)
                target = torch.from_numpy(labels[chosen].astype(np.float32))
                loss = loss_fn(_logits(net, batch), target)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                if schedule.last_epoch + 1 < schedule.total_steps:
                    schedule.step()
                losses.append(float(loss.item()))
            val_logits = [slice_logits(model, c.volume.pixels, batch_size) for c in val_cases]
            val_labels = _slice_index(val_cases)[2]
            entry = {
                "epoch": float(epoch + 1),
                "loss": float(np.mean(losses)) if losses else math.nan,
                "val_slice_auc": roc_auc(val_labels, np.concatenate(val_logits)),
            }
            history.append(entry)
            if progress is not None:
                progress(
                    f"{arch} epoch {epoch + 1}/{epochs}: loss {entry['loss']:.4f}, "
                    f"validation slice AUC {entry['val_slice_auc']:.3f}"
                )
    net.eval()
    all_logits = np.concatenate(val_logits)
    case_labels = np.asarray([_case_label(c) for c in val_cases])
    if case_labels.min() == case_labels.max() or val_labels.min() == val_labels.max():
        raise ValueError("val_cases need authentic and manipulated cases to calibrate on")
    model.slice_calibration = fit_platt(all_logits, val_labels.astype(np.float64))
    statistics = np.asarray([volume_statistic(v, top_k) for v in val_logits])
    model.volume_calibration = fit_platt(statistics, case_labels.astype(np.float64))
    volume_scores = model.volume_calibration(statistics)
    threshold = min(threshold_for_fpr(volume_scores[case_labels == 0], target_fpr), 1.0)
    model.operating_point = OperatingPoint(
        manipulated_at=threshold, authentic_below=min(threshold, 0.5), target_fpr=target_fpr
    )
    called = volume_scores >= threshold
    validation = {
        "slices": int(val_labels.size),
        "positive_slices": int(val_labels.sum()),
        "volumes": int(case_labels.size),
        "manipulated_volumes": int(case_labels.sum()),
        "slice_auc": round(roc_auc(val_labels, all_logits), 4),
        "volume_auc": round(roc_auc(case_labels, statistics), 4),
        "fpr_at_operating_point": round(float(called[case_labels == 0].mean()), 4),
        "tpr_at_operating_point": round(float(called[case_labels == 1].mean()), 4),
    }
    model.card = {
        **(card or {}),
        "training": {
            "seed": seed,
            "epochs": epochs,
            "slices_per_epoch": per_epoch,
            "train_slices": int(labels.size),
            "train_positive_slices": int(labels.sum()),
            "attacks": sorted({c.attack for c in train_cases if c.attack}),
            "scanners": sorted({c.scanner for c in train_cases}),
        },
        "validation": validation,
    }
    return TrainResult(_DETECTOR_CLASSES[arch](model), history, validation)
