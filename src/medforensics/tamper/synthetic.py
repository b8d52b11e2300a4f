"""Fully synthetic slices: whole slices replaced by a generator's output (label ``synthetic``).

Two generator families, both small variational autoencoders that train on a CPU in minutes
from the user's own authentic slices, and differ only in how their decoder upsamples, the
trace global detectors latch on to:

* ``vae-deconv``: transposed convolutions (stride 2), the checkerboard-prone upsampler of
  DCGAN-style generators;
* ``vae-resize``: nearest-neighbour (or bilinear) resizing followed by a 3×3 convolution, the
  "resize-convolution" of later GANs and diffusion decoders.

A generator works at ``size``×``size`` pixels (128 by default); its output is resized to the
slice size with bilinear interpolation. In ``reconstruct`` mode the replaced slice is encoded and
a sample of its posterior decoded, so the fake keeps the anatomy of its neighbours; in ``sample``
mode the latent is drawn from the prior. With ``match_noise`` the slice gets fresh noise with the
NPS of the slice it replaces (``texture.estimate_noise``), the step a careful forger adds.

Where the generator comes from, in order: the constructor (``create_attack("synthetic",
generator=gen_or_path)``); ``params["generator_path"]``; the newest cached file of the family in
``cache_dir()`` (``train_generator(...)`` then ``save_to_cache(gen)``); or, with
``params["train_on_volume"]``, a tiny generator trained on the volume's own slices (not cached).
Otherwise the attack raises an ``AttackError`` that says how to get one (a generator trained
without being asked would be slow and silently different from run to run of the cache). With
generators in the cache, ``simulate(volume, "synthetic", seed)`` and ``make_cases(volumes,
["synthetic"], seed)`` need no options; ``params["family"]`` and ``params["generator"]`` record
which generator made each fake, for leave-one-generator-out evaluation. Torch is imported only
when a generator is built or used, so the attack registry works without it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import on_value_grid
from medforensics.tamper.base import Attack, AttackError, GroundTruth, Params, TamperResult
from medforensics.tamper.registry import register_attack
from medforensics.tamper.texture import estimate_noise, synthesize_noise
from medforensics.utils.optional import require

if TYPE_CHECKING:
    import torch

#: generator families: how the decoder upsamples
FAMILIES = ("vae-deconv", "vae-resize")
#: side of the spatial grid (4×4) the encoder ends on and the decoder starts from
_LATENT_GRID = 4
#: environment variable that moves the cache (default: $XDG_CACHE_HOME or ~/.cache)
CACHE_ENV = "MEDFORENSICS_CACHE"


def cache_dir() -> Path:
    """Where trained generators are cached: ``$MEDFORENSICS_CACHE/generators`` or the XDG cache."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "generators"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "medforensics" / "generators"


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator network and map its output to pixel values.

    Attributes:
        family: one of ``FAMILIES``.
        size: side of the square images the network sees and makes (a power of two >= 8).
        latent: latent dimensions.
        width: channels of the first encoder stage (doubling, capped at 8x).
        value_range: ``(low, high)`` pixel values mapped to [0, 1] (HU for CT).
        modality: modality of the training slices.
        upsample_mode: ``nearest`` or ``bilinear`` (``vae-resize`` only).
    """

    family: str
    size: int = 128
    latent: int = 64
    width: int = 8
    value_range: tuple[float, float] = (-1024.0, 1500.0)
    modality: str = "CT"
    upsample_mode: str = "nearest"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown generator family {self.family!r}; use one of {FAMILIES}")
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"generator size must be a power of two >= 8, got {self.size}")
        if self.upsample_mode not in ("nearest", "bilinear"):
            raise ValueError(f"upsample_mode must be nearest or bilinear, not {self.upsample_mode}")
        if not self.value_range[1] > self.value_range[0]:
            raise ValueError(f"value_range {self.value_range} is empty")

    @property
    def stages(self) -> int:
        return int(math.log2(self.size // _LATENT_GRID))

    def channels(self, stage: int) -> int:
        return self.width * min(2**stage, 8)


def _build_network(config: GeneratorConfig) -> torch.nn.ModuleDict:
    """Encoder (strided convs) + Gaussian head + decoder whose upsampler is the family's."""
    torch = require("torch", "the synthetic-slice generators")
    nn = torch.nn
    encoder: list[Any] = []
    in_ch = 1
    for stage in range(config.stages):
        out_ch = config.channels(stage)
        encoder += [nn.Conv2d(in_ch, out_ch, 4, 2, 1), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2)]
        in_ch = out_ch
    deepest = in_ch
    decoder: list[Any] = []
    for stage in reversed(range(config.stages)):
        out_ch = config.channels(max(stage - 1, 0))
        if config.family == "vae-deconv":
            decoder.append(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1))
        else:
            decoder += [
                nn.Upsample(scale_factor=2, mode=config.upsample_mode),
                nn.Conv2d(in_ch, out_ch, 3, 1, 1),
            ]
        decoder += [nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2)]
        in_ch = out_ch
    decoder += [nn.Conv2d(in_ch, 1, 3, 1, 1), nn.Sigmoid()]
    flat = deepest * _LATENT_GRID * _LATENT_GRID
    return nn.ModuleDict(
        {
            "encoder": nn.Sequential(*encoder, nn.Flatten()),
            "posterior": nn.Linear(flat, 2 * config.latent),
            "expand": nn.Linear(config.latent, flat),
            "decoder": nn.Sequential(
                nn.Unflatten(1, (deepest, _LATENT_GRID, _LATENT_GRID)), *decoder
            ),
        }
    )


def _resize(images: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(n, 1, h, w)``; antialiased when shrinking."""
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) == shape:
        return images
    shrink = shape[0] < images.shape[-2] or shape[1] < images.shape[-1]
    return F.interpolate(images, size=shape, mode="bilinear", align_corners=False, antialias=shrink)


def weights_identity(network: torch.nn.Module) -> str:
    """A short hash of a network's weights (names and values), to trace which one made a fake."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def save_weights(
    network: torch.nn.Module, config: Any, card: dict[str, Any], path: str | Path
) -> Path:
    """Write ``network``'s state_dict to ``path`` (as ``.pt``) and a JSON sidecar beside it with
    the (dataclass) ``config``, the ``card`` and the weights' ``id``; the format every generator
    of the simulator is saved in."""
    torch = require("torch", "saving a generator")
    target = Path(path).with_suffix(".pt")
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), target)
    sidecar = {"config": asdict(config), "card": card, "id": weights_identity(network)}
    target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return target


def read_sidecar(path: str | Path, what: str) -> tuple[Path, dict[str, Any]]:
    """The weights file written by ``save_weights`` (``path`` is it or its sidecar) and the
    sidecar's content; ``what`` names the class in the error when either file is missing."""
    weights = Path(path).with_suffix(".pt")
    sidecar = weights.with_suffix(".json")
    if not weights.is_file() or not sidecar.is_file():
        raise FileNotFoundError(
            f"{weights}: weights or their sidecar {sidecar.name} are missing; write both with "
            f"{what}.save()"
        )
    return weights, json.loads(sidecar.read_text())


def load_weights(network: Any, weights: Path) -> Any:
    """``network`` with the state_dict of ``weights`` (read with ``weights_only=True``), in eval."""
    torch = require("torch", "loading a generator")
    network.load_state_dict(torch.load(weights, weights_only=True, map_location="cpu"))
    network.eval()
    return network


class TrainedGenerator:
    """What every whole-image generator has: a ``config`` with ``family`` and ``size``, a
    ``network`` and a ``card``; its weights hash, description and ``save``."""

    config: Any
    network: Any
    card: dict[str, Any]

    @property
    def family(self) -> str:
        return str(self.config.family)

    @property
    def identity(self) -> str:
        """A short hash of the weights, recorded in ground truth so fakes can be traced."""
        return weights_identity(self.network)

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "size": self.config.size, "id": self.identity, **self.card}

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (torch state_dict, ``.pt``) and its JSON sidecar (config, card)."""
        return save_weights(self.network, self.config, self.card, path)


@dataclass
class SliceGenerator(TrainedGenerator):
    """A trained VAE generator: its config, network and a card saying what it was trained on."""

    config: GeneratorConfig
    network: torch.nn.ModuleDict
    card: dict[str, Any] = field(default_factory=dict)

    def to_unit(self, pixels: np.ndarray) -> torch.Tensor:
        """``(n, rows, cols)`` pixel values -> ``(n, 1, size, size)`` tensor in [0, 1]."""
        torch = require("torch", "the synthetic-slice generators")
        low, high = self.config.value_range
        unit = np.clip((np.asarray(pixels, dtype=np.float32) - low) / (high - low), 0.0, 1.0)
        size = self.config.size
        return _resize(torch.from_numpy(unit)[:, None], (size, size))

    def to_pixels(self, unit: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
        """``(n, 1, size, size)`` in [0, 1] -> ``(n, rows, cols)`` pixel values, float32."""
        low, high = self.config.value_range
        resized = _resize(unit, shape).clamp(0.0, 1.0)[:, 0].numpy()
        return (resized * (high - low) + low).astype(np.float32)

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.network["decoder"](self.network["expand"](latent))

    def sample(
        self, count: int, seed: int, shape: tuple[int, int], temperature: float = 1.0
    ) -> np.ndarray:
        """``count`` slices decoded from the prior, ``(count, rows, cols)`` pixel values."""
        torch = require("torch", "the synthetic-slice generators")
        noise = torch.randn(
            count, self.config.latent, generator=torch.Generator().manual_seed(seed)
        )
        self.network.eval()
        with torch.inference_mode():
            return self.to_pixels(self._decode(noise * temperature), shape)

    def reconstruct(self, pixels: np.ndarray, seed: int, temperature: float = 1.0) -> np.ndarray:
        """Encode ``(n, rows, cols)`` slices, decode a posterior sample; same shape out."""
        torch = require("torch", "the synthetic-slice generators")
        gen = torch.Generator().manual_seed(seed)
        self.network.eval()
        with torch.inference_mode():
            stats = self.network["posterior"](self.network["encoder"](self.to_unit(pixels)))
            mean, log_var = stats.chunk(2, dim=1)
            noise = torch.randn(mean.shape, generator=gen)
            latent = mean + temperature * torch.exp(0.5 * log_var) * noise
            rows, cols = pixels.shape[-2:]
            return self.to_pixels(self._decode(latent), (int(rows), int(cols)))

    @staticmethod
    def load(path: str | Path) -> SliceGenerator:
        """Read a generator written by ``save`` (the ``.pt`` file or its ``.json`` sidecar)."""
        weights, meta = read_sidecar(path, "SliceGenerator")
        raw = dict(meta["config"])
        raw["value_range"] = tuple(raw["value_range"])
        config = GeneratorConfig(**raw)
        network = load_weights(_build_network(config), weights)
        return SliceGenerator(config, network, dict(meta.get("card", {})))


def _training_stack(slices: Iterable[np.ndarray]) -> list[np.ndarray]:
    stack: list[np.ndarray] = []
    for item in slices:
        array = np.asarray(item, dtype=np.float32)
        stack.extend([array] if array.ndim == 2 else list(array))
    if not stack:
        raise ValueError("train_generator needs at least one authentic slice")
    return stack


def train_generator(
    slices: Iterable[np.ndarray],
    family: str,
    seed: int,
    *,
    size: int = 128,
    latent: int = 64,
    width: int = 8,
    steps: int = 600,
    batch_size: int = 8,
    lr: float = 2e-3,
    beta: float = 0.05,
    modality: str = "CT",
    value_range: tuple[float, float] | None = None,
    upsample_mode: str = "nearest",
    progress: Callable[[str], None] | None = None,
) -> SliceGenerator:
    """Train a generator of ``family`` on authentic slices, reproducibly from ``seed``.

    Args:
        slices: 2D slices or 3D stacks of them, in pixel units (HU for CT).
        family: one of ``FAMILIES``.
        seed: seeds the weights, the batches and the flips.
        size: working resolution (128 trains in about a minute on two cores at the defaults).
        latent: latent dimensions.
        width: channels of the first stage.
        steps: optimiser steps.
        batch_size: slices per step.
        lr: Adam learning rate.
        beta: weight of the KL term (small: sharper reconstructions, a less regular prior).
        modality: recorded, and checked against the volumes the attack is used on.
        value_range: pixel values mapped to [0, 1]; default: the 0.1 and 99.9 percentiles.
        upsample_mode: ``nearest`` or ``bilinear`` for ``vae-resize``.
        progress: called with a line of text every 100 steps.
    """
    torch = require("torch", "training a synthetic-slice generator")
    stack = _training_stack(slices)
    if value_range is None:
        sample = np.concatenate([s.ravel()[:: max(1, s.size // 20000)] for s in stack])
        low, high = np.percentile(sample, [0.1, 99.9])
        value_range = (float(low), float(max(high, low + 1.0)))
    config = GeneratorConfig(
        family, size, latent, width, value_range, modality, upsample_mode=upsample_mode
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = _build_network(config)
        generator = SliceGenerator(config, network)
        data = torch.cat([generator.to_unit(s[None]) for s in stack])
        rng = np.random.default_rng(seed)
        optimiser = torch.optim.Adam(network.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1))
        network.train()
        pixels_per_image = float(size * size)
        for step in range(steps):
            index = torch.from_numpy(rng.integers(0, len(data), size=batch_size))
            batch = data[index]
            flip = torch.from_numpy(rng.random(batch_size) < 0.5)
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            mean, log_var = network["posterior"](network["encoder"](batch)).chunk(2, dim=1)
            latent_sample = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
            recon = network["decoder"](network["expand"](latent_sample))
            mse = torch.mean((recon - batch) ** 2) * pixels_per_image
            kl = -0.5 * torch.mean(torch.sum(1 + log_var - mean**2 - log_var.exp(), dim=1))
            loss = mse + beta * kl
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            if progress is not None and (step + 1) % 100 == 0:
                progress(
                    f"{family} step {step + 1}/{steps}: mse {mse.item():.2f} kl {kl.item():.1f}"
                )
        network.eval()
    generator.card = {"slices": len(stack), "steps": steps, "seed": seed, "beta": beta}
    return generator


def save_to_cache(generator: SliceGenerator) -> Path:
    """Save ``generator`` in ``cache_dir()`` as ``FAMILY-SIZEpx-ID.pt`` (+ sidecar)."""
    name = f"{generator.family}-{generator.config.size}px-{generator.identity}.pt"
    return generator.save(cache_dir() / name)


def cached_generators(family: str | None = None) -> list[Path]:
    """Cached generator files (newest first), of one family or all."""
    folder = cache_dir()
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.glob("*.pt")
        if path.with_suffix(".json").is_file()
        and (family is None or path.name.startswith(f"{family}-"))
    ]
    return sorted(found, key=lambda p: (-p.stat().st_mtime_ns, p.name))


def _missing_generator(family: str, volume: ImageVolume) -> AttackError:
    return AttackError(
        f"attack 'synthetic' on {volume.input}: no trained {family!r} generator in "
        f"{cache_dir()} (set {CACHE_ENV} to look elsewhere). Train one from authentic slices "
        "with medforensics.tamper.synthetic.train_generator(slices, "
        f"{family!r}, seed=0) and save_to_cache(generator), pass one with "
        "create_attack('synthetic', generator=PATH_OR_GENERATOR) or params "
        "generator_path=PATH, or set train_on_volume=true to train a tiny one on this "
        "volume's own slices (about a minute on two cores)"
    )


@register_attack
class SyntheticSlices(Attack):
    """Replace one or more whole slices by a generator's output."""

    name = "synthetic"
    label = "synthetic"
    modalities = ()

    def __init__(self, generator: SliceGenerator | str | Path | None = None) -> None:
        if generator is None or isinstance(generator, SliceGenerator):
            self.generator = generator
        else:
            self.generator = SliceGenerator.load(generator)

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        n = volume.shape[0]
        count = int(rng.integers(1, min(3, n) + 1))
        start = int(rng.integers(0, n - count + 1))
        if self.generator is not None:
            families: tuple[str, ...] = (self.generator.family,)
        else:
            cached = tuple(f for f in FAMILIES if cached_generators(f))
            families = cached or FAMILIES
        return {
            "family": families[int(rng.integers(len(families)))],
            "slices": list(range(start, start + count)),
            "mode": "reconstruct" if rng.random() < 0.75 else "sample",
            "temperature": round(float(rng.uniform(0.5, 1.0)), 3),
            "latent_seed": int(rng.integers(2**31 - 1)),
            "match_noise": bool(rng.random() < 0.5),
            "generator_path": None,
            "train_on_volume": False,
            "train_steps": 300,
            "train_size": 128,
        }

    def _generator_for(self, volume: ImageVolume, params: Params) -> SliceGenerator:
        family = str(params["family"])
        if self.generator is not None and self.generator.family == family:
            generator = self.generator
        elif params.get("generator_path"):
            try:
                generator = SliceGenerator.load(params["generator_path"])
            except FileNotFoundError as exc:
                raise AttackError(str(exc)) from exc
        elif cached := cached_generators(family):
            generator = SliceGenerator.load(cached[0])
        elif params.get("train_on_volume"):
            generator = train_generator(
                volume.pixels,
                family,
                seed=int(params["latent_seed"]),
                size=int(params["train_size"]),
                steps=int(params["train_steps"]),
                modality=volume.modality,
            )
            generator.card["trained_on"] = "the attacked volume itself"
        else:
            raise _missing_generator(family, volume)
        if generator.family != family:
            raise AttackError(
                f"generator {params.get('generator_path') or generator.identity} is of family "
                f"{generator.family!r}, but params ask for {family!r}"
            )
        if generator.config.modality != volume.modality:
            raise AttackError(
                f"attack 'synthetic' on {volume.input}: the generator was trained on "
                f"{generator.config.modality} slices, this is {volume.modality}; train one on "
                f"{volume.modality} slices"
            )
        return generator

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        n, rows, cols = volume.shape
        replaced = [int(z) for z in params["slices"]]
        if (
            not replaced
            or any(not 0 <= z < n for z in replaced)
            or len(set(replaced)) < len(replaced)
        ):
            raise AttackError(f"slices {replaced} must be distinct indices within 0..{n - 1}")
        generator = self._generator_for(volume, params)
        seed, temperature = int(params["latent_seed"]), float(params["temperature"])
        if params["mode"] == "reconstruct":
            fakes = generator.reconstruct(volume.pixels[replaced], seed, temperature)
        elif params["mode"] == "sample":
            fakes = generator.sample(len(replaced), seed, (rows, cols), temperature)
        else:
            raise AttackError(f"mode must be 'reconstruct' or 'sample', not {params['mode']!r}")
        noise_sigmas = []
        if params["match_noise"]:
            for k, z in enumerate(replaced):
                try:
                    model = estimate_noise(volume.pixels[z])
                except ValueError:  # a blank slice has no noise to match
                    noise_sigmas.append(0.0)
                    continue
                fakes[k] += synthesize_noise((rows, cols), model, rng)
                noise_sigmas.append(round(model.sigma, 2))
        pixels = volume.pixels.copy()
        pixels[replaced] = on_value_grid(volume.pixels, fakes)
        mask = np.zeros(volume.shape, dtype=bool)
        mask[replaced] = True
        centre = (replaced[len(replaced) // 2], rows // 2, cols // 2)
        recorded = {**params, "generator": generator.describe()}
        if noise_sigmas:
            recorded["noise_sigma"] = noise_sigmas
        truth = GroundTruth(self.name, self.label, recorded, centre, mask)
        return TamperResult(pixels=pixels, truth=truth)
