"""Train the local forensic network (``detect.local_net``) on authentic scans + simulated attacks.

Each round draws fresh tampered twins from the attack simulator (new seeds every round, so the
network never sees the same fake twice), cuts 128×128 crops and trains on them:

* a crop around every manipulation (jittered), with a per-cell target: 1 where the attack
  changed more than a fifth of the cell, 0 where it changed nothing, ignored in between;
* the authentic crop at the same place (the pair teaches "what the attack changed", not "what
  anatomy looks like there");
* random authentic crops inside the body.

One slice in three is shown without its neighbours, so the network also works on single slices.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from medforensics.detect.local_net import (
    STRIDE,
    Prepared,
    ResidualFCN,
    ResidualFilter,
    prepare,
)
from medforensics.train.cases import TrainCase

log = logging.getLogger(__name__)

CROP = 128


@dataclass
class LocalTrainConfig:
    """Knobs of one training run (all recorded in the checkpoint)."""

    rounds: int = 6
    steps_per_round: int = 250
    batch: int = 24
    lr: float = 2e-3
    width: int = 32
    context_drop: float = 0.33
    random_negatives: int = 2  # random authentic crops per tampered crop
    seed: int = 0

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class CropSet:
    inputs: list[np.ndarray] = field(default_factory=list)  # (9, 128, 128) float16
    targets: list[np.ndarray] = field(default_factory=list)  # (16, 16) float32, NaN = ignore

    def add(self, x: torch.Tensor, target: np.ndarray) -> None:
        self.inputs.append(x.numpy().astype(np.float16))
        self.targets.append(target.astype(np.float32))

    def __len__(self) -> int:
        return len(self.inputs)


def _cell_target(mask: np.ndarray) -> np.ndarray:
    """Per-cell target of a 2D mask crop: 1 above 20 % changed, 0 when untouched, NaN between."""
    rows, cols = mask.shape[0] // STRIDE, mask.shape[1] // STRIDE
    frac = mask[: rows * STRIDE, : cols * STRIDE].reshape(rows, STRIDE, cols, STRIDE).mean((1, 3))
    target = np.full(frac.shape, np.nan, dtype=np.float32)
    target[frac >= 0.2] = 1.0
    target[frac == 0] = 0.0
    return target


def _crop_origin(
    centre: tuple[int, int], shape: tuple[int, int], rng: np.random.Generator, jitter: int
) -> tuple[int, int]:
    out = []
    for c, n in zip(centre, shape, strict=True):
        start = c - CROP // 2 + int(rng.integers(-jitter, jitter + 1))
        start = int(np.clip(start, 0, max(n - CROP, 0)))
        out.append(start - start % STRIDE)
    return out[0], out[1]


def _slice_input(
    volume_pixels: np.ndarray,
    modality: str,
    z: int,
    filters: ResidualFilter,
    context: bool,
) -> Prepared:
    return prepare(volume_pixels, modality, filters, start=z, stop=z + 1, context=context)


def crops_from_pair(
    authentic: TrainCase,
    tampered: TrainCase,
    filters: ResidualFilter,
    rng: np.random.Generator,
    out: CropSet,
    context_drop: float,
    random_negatives: int,
) -> None:
    """Add the crops of one authentic chunk and its tampered twin to ``out``."""
    assert tampered.mask is not None
    pixels_t = tampered.volume.pixels
    pixels_a = authentic.volume.pixels
    modality = tampered.volume.modality
    shape = pixels_t.shape[1:]
    if shape[0] < CROP or shape[1] < CROP:
        return
    touched = np.flatnonzero(tampered.mask.any(axis=(1, 2)))
    picks = touched if touched.size <= 2 else rng.choice(touched, size=2, replace=False)
    for z in (int(v) for v in picks):
        context = bool(rng.random() >= context_drop)
        ys, xs = np.nonzero(tampered.mask[z])
        centre = (int(ys.mean()), int(xs.mean()))
        r0, c0 = _crop_origin(centre, shape, rng, jitter=CROP // 3)
        window = (slice(r0, r0 + CROP), slice(c0, c0 + CROP))
        prep_t = _slice_input(pixels_t, modality, z, filters, context)
        target = _cell_target(tampered.mask[z][window])
        out.add(prep_t.residuals[0][(slice(None), *window)], target)
        prep_a = _slice_input(pixels_a, modality, z, filters, context)
        out.add(prep_a.residuals[0][(slice(None), *window)], np.zeros_like(target))
        body = np.argwhere(prep_a.cells[0])
        for _ in range(random_negatives if body.size else 0):
            cy, cx = body[int(rng.integers(len(body)))] * STRIDE + STRIDE // 2
            zr = int(rng.integers(pixels_a.shape[0]))
            prep_r = _slice_input(
                pixels_a, modality, zr, filters, bool(rng.random() >= context_drop)
            )
            r1, c1 = _crop_origin((int(cy), int(cx)), shape, rng, jitter=0)
            win = (slice(None), slice(r1, r1 + CROP), slice(c1, c1 + CROP))
            out.add(prep_r.residuals[0][win], np.zeros((CROP // STRIDE,) * 2, np.float32))


def _augment(
    x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, ...]:
    """Flips (rows, cols) of the whole batch; residual filters are symmetric under both."""
    if rng.random() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if rng.random() < 0.5:
        x, y = x.flip(-2), y.flip(-2)
    return x, y


def train_local(
    make_round: Callable[[int], Sequence[tuple[TrainCase, TrainCase]]],
    config: LocalTrainConfig,
    progress: Callable[[str], None] | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
) -> tuple[ResidualFCN, dict[str, object]]:
    """Train a ``ResidualFCN``; ``make_round(r)`` returns (authentic, tampered) pairs for round r.

    ``init_state`` starts from existing weights (fine-tuning a shipped model on a site's scans).
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    filters = ResidualFilter()
    net = ResidualFCN(width=config.width)
    if init_state is not None:
        net.load_state_dict(init_state)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    total_steps = config.rounds * config.steps_per_round
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=total_steps, pct_start=0.15
    )
    history: list[dict[str, float]] = []
    started = time.time()
    for round_index in range(config.rounds):
        crops = CropSet()
        for authentic, tampered in make_round(round_index):
            crops_from_pair(
                authentic,
                tampered,
                filters,
                rng,
                crops,
                config.context_drop,
                config.random_negatives,
            )
        if len(crops) < config.batch:
            raise ValueError(
                f"only {len(crops)} training crops in round {round_index}: need more authentic "
                f"slices of at least {CROP}x{CROP} pixels"
            )
        inputs = torch.from_numpy(np.stack(crops.inputs))
        targets = torch.from_numpy(np.stack(crops.targets))
        net.train()
        losses = []
        for _ in range(config.steps_per_round):
            idx = torch.from_numpy(rng.choice(len(crops), size=config.batch, replace=False))
            x = inputs[idx].float()
            y = targets[idx][:, None]
            x, y = _augment(x, y, rng)
            logits = net(x)
            valid = ~torch.isnan(y)
            positives = float((y[valid] > 0.5).sum())
            negatives = float((y[valid] < 0.5).sum())
            weight = torch.where(
                y > 0.5, torch.tensor(max(negatives / max(positives, 1.0), 1.0) ** 0.5), 1.0
            )
            loss = F.binary_cross_entropy_with_logits(logits[valid], y[valid], weight=weight[valid])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        entry = {
            "round": round_index,
            "crops": len(crops),
            "loss": float(np.mean(losses[-50:])),
            "seconds": round(time.time() - started, 1),
        }
        history.append(entry)
        message = (
            f"round {round_index + 1}/{config.rounds}: {len(crops)} crops, "
            f"loss {entry['loss']:.4f}, {entry['seconds']:.0f} s"
        )
        log.info(message)
        if progress:
            progress(message)
    net.eval()
    return net, {"history": history, "seconds": round(time.time() - started, 1)}


def finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)
