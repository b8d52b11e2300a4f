"""Two more generator families for fully synthetic images: a small GAN and a tiny diffusion model.

``tamper.synthetic`` has two variational autoencoders; a synthetic-image detector trained on
one kind of generator learns that generator's traces, so the families here differ in how
they learn as well as in how they upsample:

* ``gan``: a DCGAN-style generator (latent -> 4×4 -> transposed convolutions, or nearest
  resize + 3×3 convolution with ``upsample="resize"``) trained against a small convolutional
  discriminator with the non-saturating loss;
* ``diffusion``: a DDPM (Ho et al. 2020) with a cosine noise schedule of ``timesteps`` steps
  (200 by default) and a tiny time-conditioned U-Net (resize-convolution decoder) predicting the
  noise; sampled with deterministic DDIM updates over ``sample_steps`` of them.

Both train on a CPU in minutes at 64×64 on crops of authentic images
(``training_crops``), work in [0, 1] and are saved like ``SliceGenerator``: a torch
``state_dict`` (``.pt``, read with ``weights_only=True``) and a JSON sidecar with the config and
a card. ``fake_like`` turns the output of any family (the VAEs included) into a fake of a
given size on the value grid of an authentic image: bilinear resize, then the image's robust
value range, rounded to its bit depth.

Importing this module imports torch (the ``ml`` extra); without it the import fails with an
error naming the extra.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medforensics.tamper.synthetic import FAMILIES as VAE_FAMILIES
from medforensics.tamper.synthetic import (
    SliceGenerator,
    TrainedGenerator,
    load_weights,
    read_sidecar,
    train_generator,
)
from medforensics.utils.optional import require

# the networks below subclass torch modules, so torch is needed at import; without it this
# raises the error that names the extra to install
require("torch", "the gan and diffusion generator families")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

#: the families defined here
FAMILIES = ("gan", "diffusion")
#: every generator family, the VAEs of ``tamper.synthetic`` first
ALL_FAMILIES = (*VAE_FAMILIES, *FAMILIES)
#: robust range of an authentic image that [0, 1] maps to (percentiles)
VALUE_PERCENTILES = (0.5, 99.5)
_UPSAMPLERS = ("deconv", "resize")


@dataclass(frozen=True)
class ImageGeneratorConfig:
    """Everything needed to rebuild a generator network (saved next to its weights).

    Attributes:
        family: ``gan`` or ``diffusion``.
        size: side of the square images made (a power of two >= 16).
        width: channels of the widest-resolution stage.
        latent: latent dimensions (``gan``).
        upsample: ``deconv`` (transposed convolution) or ``resize`` (``gan``; the diffusion
            U-Net always resizes).
        timesteps: noise steps of the diffusion process (``diffusion``).
        sample_steps: DDIM steps used when sampling (``diffusion``).
        modality: modality of the training images.
    """

    family: str
    size: int = 64
    width: int = 16
    latent: int = 64
    upsample: str = "deconv"
    timesteps: int = 200
    sample_steps: int = 40
    modality: str = "DX"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown generator family {self.family!r}; use one of {FAMILIES}")
        if self.size < 16 or self.size & (self.size - 1):
            raise ValueError(f"generator size must be a power of two >= 16, got {self.size}")
        if self.upsample not in _UPSAMPLERS:
            raise ValueError(f"upsample must be one of {_UPSAMPLERS}, not {self.upsample!r}")
        if not 1 <= self.sample_steps <= self.timesteps:
            raise ValueError(
                f"sample_steps ({self.sample_steps}) must be between 1 and timesteps "
                f"({self.timesteps})"
            )


# --- networks ---------------------------------------------------------------------------------


def _gan_generator(config: ImageGeneratorConfig) -> nn.Sequential:
    stages = int(math.log2(config.size // 4))
    channels = [config.width * 2 ** min(stages - k, 3) for k in range(stages + 1)]
    layers: list[nn.Module] = [
        nn.Linear(config.latent, channels[0] * 16),
        nn.Unflatten(1, (channels[0], 4, 4)),
        nn.BatchNorm2d(channels[0]),
        nn.ReLU(),
    ]
    for k in range(stages):
        if config.upsample == "deconv":
            layers.append(nn.ConvTranspose2d(channels[k], channels[k + 1], 4, 2, 1))
        else:
            layers += [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(channels[k], channels[k + 1], 3, 1, 1),
            ]
        layers += [nn.BatchNorm2d(channels[k + 1]), nn.ReLU()]
    layers += [nn.Conv2d(channels[-1], 1, 3, 1, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


def _gan_discriminator(config: ImageGeneratorConfig) -> nn.Sequential:
    stages = int(math.log2(config.size // 4))
    layers: list[nn.Module] = []
    in_ch = 1
    for k in range(stages):
        out_ch = config.width * 2 ** min(k, 3)
        # DCGAN: batch norm in every discriminator stage but the first (without it, the tiny
        # generator collapses to one checkerboarded image within a few hundred steps)
        norm: list[nn.Module] = [nn.BatchNorm2d(out_ch)] if k else []
        layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1), *norm, nn.LeakyReLU(0.2)]
        in_ch = out_ch
    layers += [nn.Flatten(), nn.Linear(in_ch * 16, 1)]
    return nn.Sequential(*layers)


def _time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the (float) timesteps ``t``, ``(n, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class _ResBlock(nn.Module):
    """Two 3×3 convolutions with group norm, SiLU and an added time embedding; residual."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(4, in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.time = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(4, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(t_emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class TinyUNet(nn.Module):
    """A three-level U-Net (``width``, 2×, 4× channels) conditioned on the diffusion timestep."""

    def __init__(self, width: int = 16, time_dim: int = 64) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        w1, w2, w3 = width, 2 * width, 4 * width
        self.stem = nn.Conv2d(1, w1, 3, 1, 1)
        self.enc1 = _ResBlock(w1, w1, time_dim)
        self.down1 = nn.Conv2d(w1, w1, 3, 2, 1)
        self.enc2 = _ResBlock(w1, w2, time_dim)
        self.down2 = nn.Conv2d(w2, w2, 3, 2, 1)
        self.mid = _ResBlock(w2, w3, time_dim)
        self.up2 = nn.Conv2d(w3, w2, 3, 1, 1)
        self.dec2 = _ResBlock(2 * w2, w2, time_dim)
        self.up1 = nn.Conv2d(w2, w1, 3, 1, 1)
        self.dec1 = _ResBlock(2 * w1, w1, time_dim)
        self.head = nn.Sequential(nn.GroupNorm(4, w1), nn.SiLU(), nn.Conv2d(w1, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t_emb = self.time_mlp(_time_features(t, self.time_dim))
        h1 = self.enc1(self.stem(x), t_emb)
        h2 = self.enc2(self.down1(h1), t_emb)
        h3 = self.mid(self.down2(h2), t_emb)
        u2 = self.up2(F.interpolate(h3, scale_factor=2.0, mode="nearest"))
        d2 = self.dec2(torch.cat([u2, h2], dim=1), t_emb)
        u1 = self.up1(F.interpolate(d2, scale_factor=2.0, mode="nearest"))
        d1 = self.dec1(torch.cat([u1, h1], dim=1), t_emb)
        out: torch.Tensor = self.head(d1)
        return out


def _build(config: ImageGeneratorConfig) -> nn.Module:
    """The network that is saved: the GAN's generator, or the diffusion model's U-Net."""
    if config.family == "gan":
        return _gan_generator(config)
    return TinyUNet(config.width)


def cosine_alpha_bar(timesteps: int) -> torch.Tensor:
    """Cumulative signal fraction ``alpha_bar[t]`` of the cosine schedule, ``t = 0..T-1``."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    alpha_bar = (f / f[0])[1:]
    return alpha_bar.clamp(1e-5, 0.9999).float()


# --- the generator object ---------------------------------------------------------------------


@dataclass
class ImageGenerator(TrainedGenerator):
    """A trained ``gan`` or ``diffusion`` generator: config, network and card."""

    config: ImageGeneratorConfig
    network: nn.Module
    card: dict[str, Any] = field(default_factory=dict)

    def sample(self, count: int, seed: int) -> np.ndarray:
        """``count`` images ``(count, size, size)`` float32 in [0, 1], the same for a seed."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        gen = torch.Generator().manual_seed(int(seed))
        self.network.eval()
        with torch.inference_mode():
            if self.family == "gan":
                noise = torch.randn(count, self.config.latent, generator=gen)
                images = self.network(noise)
            else:
                images = (self._ddim(count, gen) + 1.0) / 2.0
        return images.clamp(0.0, 1.0)[:, 0].numpy().astype(np.float32)

    def _ddim(self, count: int, gen: torch.Generator) -> torch.Tensor:
        """Deterministic DDIM sampling (eta 0) from Gaussian noise over ``sample_steps``."""
        cfg = self.config
        alpha_bar = cosine_alpha_bar(cfg.timesteps)
        steps = np.linspace(cfg.timesteps - 1, 0, cfg.sample_steps).round().astype(int)
        x = torch.randn(count, 1, cfg.size, cfg.size, generator=gen)
        for k, t in enumerate(steps):
            a_t = alpha_bar[t]
            eps = self.network(x, torch.full((count,), float(t)))
            x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1.0, 1.0)
            a_prev = alpha_bar[steps[k + 1]] if k + 1 < len(steps) else torch.tensor(1.0)
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        return x

    @staticmethod
    def load(path: str | Path) -> ImageGenerator:
        """Read a generator written by ``save`` (the ``.pt`` file or its ``.json`` sidecar)."""
        weights, meta = read_sidecar(path, "ImageGenerator")
        config = ImageGeneratorConfig(**meta["config"])
        network = load_weights(_build(config), weights)
        return ImageGenerator(config, network, dict(meta.get("card", {})))


# --- training ---------------------------------------------------------------------------------


def unit_range(image: np.ndarray) -> tuple[float, float]:
    """The robust value range ``(low, high)`` of an image that [0, 1] stands for."""
    pixels = np.asarray(image, dtype=np.float32)
    step = max(1, pixels.size // 65536)
    while step > 1 and math.gcd(step, pixels.shape[-1]) != 1:
        step += 1  # a stride dividing the width would sample the same columns in every row
    low, high = np.percentile(pixels.ravel()[::step], VALUE_PERCENTILES)
    return float(low), float(max(high, low + 1e-6))


def training_crops(
    images: Iterable[np.ndarray], size: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` random square crops of authentic 2D images, area-resized to ``size``, in [0, 1].

    Each crop covers 50-100 % of its image's shorter side, is flipped left-right half the time
    and is mapped to [0, 1] by its image's robust range (``unit_range``).
    """
    from skimage.transform import resize

    stack = [np.asarray(im, dtype=np.float32) for im in images]
    stack = [plane for im in stack for plane in ([im] if im.ndim == 2 else list(im))]
    if not stack:
        raise ValueError("training_crops needs at least one authentic image")
    ranges = [unit_range(im) for im in stack]
    # large images are shrunk once (a crop is at most 4× larger than ``size`` then): the same
    # crops, without anti-aliasing a megapixel for every one of them
    for k, image in enumerate(stack):
        if min(image.shape) > 4 * size:
            shape = tuple(round(s * 4 * size / min(image.shape)) for s in image.shape)
            stack[k] = resize(image, shape, order=1, anti_aliasing=True, preserve_range=True)
    crops = np.empty((count, size, size), dtype=np.float32)
    for k in range(count):
        which = int(rng.integers(len(stack)))
        image, (low, high) = stack[which], ranges[which]
        side = max(2, int(min(image.shape) * rng.uniform(0.5, 1.0)))
        top = int(rng.integers(0, image.shape[0] - side + 1))
        left = int(rng.integers(0, image.shape[1] - side + 1))
        crop = image[top : top + side, left : left + side]
        crop = resize(crop, (size, size), order=1, anti_aliasing=side > size, preserve_range=True)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops[k] = np.clip((crop - low) / (high - low), 0.0, 1.0)
    return crops


def train_image_generator(
    crops: np.ndarray,
    family: str,
    seed: int,
    *,
    steps: int = 1500,
    batch_size: int = 16,
    lr: float | None = None,
    progress: Callable[[str], None] | None = None,
    **config: Any,
) -> ImageGenerator:
    """Train a ``gan`` or ``diffusion`` generator on ``(n, size, size)`` crops in [0, 1].

    Args:
        crops: training images, e.g. from ``training_crops``; their side sets ``size``.
        family: ``gan`` or ``diffusion``.
        seed: seeds the weights, the batches and the noise; same seed, same generator.
        steps: optimiser steps (of the generator and the discriminator each, for ``gan``).
        batch_size: images per step.
        lr: Adam learning rate (default 2e-4 for ``gan``, 2e-3 for ``diffusion``).
        progress: called with a line of text every 250 steps.
        **config: other ``ImageGeneratorConfig`` fields (width, latent, upsample, timesteps,
            sample_steps, modality).
    """
    data = torch.from_numpy(np.asarray(crops, dtype=np.float32))
    if data.ndim != 3 or data.shape[1] != data.shape[2]:
        raise ValueError(f"crops must be (n, size, size), got shape {tuple(data.shape)}")
    cfg = ImageGeneratorConfig(family, size=int(data.shape[1]), **config)
    data = data[:, None]
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = _build(cfg)
        if family == "gan":
            _train_gan(network, cfg, data, rng, steps, batch_size, lr or 2e-4, progress)
        else:
            _train_diffusion(network, cfg, data, rng, steps, batch_size, lr or 2e-3, progress)
        network.eval()
    card = {"crops": len(data), "steps": steps, "batch_size": batch_size, "seed": seed}
    return ImageGenerator(cfg, network, card)


def _batch(data: torch.Tensor, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
    return data[torch.from_numpy(rng.integers(0, len(data), size=batch_size))]


def _train_gan(
    generator: nn.Module,
    cfg: ImageGeneratorConfig,
    data: torch.Tensor,
    rng: np.random.Generator,
    steps: int,
    batch_size: int,
    lr: float,
    progress: Callable[[str], None] | None,
) -> None:
    discriminator = _gan_discriminator(cfg)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    generator.train()
    for step in range(steps):
        real = _batch(data, rng, batch_size) * 2 - 1
        fake = generator(torch.randn(batch_size, cfg.latent)) * 2 - 1
        # non-saturating GAN losses: the discriminator calls real 1 and fake 0
        d_loss = (
            F.softplus(-discriminator(real)).mean()
            + F.softplus(discriminator(fake.detach())).mean()
        )
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-discriminator(fake)).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if progress is not None and (step + 1) % 250 == 0:
            progress(f"gan step {step + 1}/{steps}: D {d_loss.item():.3f} G {g_loss.item():.3f}")


def _train_diffusion(
    network: nn.Module,
    cfg: ImageGeneratorConfig,
    data: torch.Tensor,
    rng: np.random.Generator,
    steps: int,
    batch_size: int,
    lr: float,
    progress: Callable[[str], None] | None,
) -> None:
    alpha_bar = cosine_alpha_bar(cfg.timesteps)
    optimiser = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1))
    network.train()
    for step in range(steps):
        x0 = _batch(data, rng, batch_size) * 2 - 1
        t = torch.from_numpy(rng.integers(0, cfg.timesteps, size=batch_size))
        noise = torch.randn_like(x0)
        a = alpha_bar[t][:, None, None, None]
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(network(noisy, t.float()), noise)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress is not None and (step + 1) % 250 == 0:
            progress(f"diffusion step {step + 1}/{steps}: mse {loss.item():.4f}")


# --- any family, one interface ----------------------------------------------------------------


def sample_unit(generator: ImageGenerator | SliceGenerator, count: int, seed: int) -> np.ndarray:
    """``count`` images in [0, 1] at the generator's own size, from any family."""
    if isinstance(generator, ImageGenerator):
        return generator.sample(count, seed)
    size = generator.config.size
    low, high = generator.config.value_range
    pixels = generator.sample(count, seed, (size, size))
    return np.clip((pixels - low) / (high - low), 0.0, 1.0).astype(np.float32)


def train_family(
    crops: np.ndarray,
    family: str,
    seed: int,
    *,
    steps: int,
    batch_size: int = 16,
    modality: str = "DX",
    progress: Callable[[str], None] | None = None,
    **config: Any,
) -> ImageGenerator | SliceGenerator:
    """Train a generator of any family in ``ALL_FAMILIES`` on crops in [0, 1].

    The VAEs get the crops as slices with value range (0, 1), so every family maps to [0, 1]
    the same way.
    """
    if family in FAMILIES:
        return train_image_generator(
            crops,
            family,
            seed,
            steps=steps,
            batch_size=batch_size,
            progress=progress,
            modality=modality,
            **config,
        )
    if family in VAE_FAMILIES:
        size = int(np.asarray(crops).shape[-1])
        return train_generator(
            np.asarray(crops, dtype=np.float32),
            family,
            seed,
            size=size,
            steps=steps,
            batch_size=batch_size,
            modality=modality,
            value_range=(0.0, 1.0),
            progress=progress,
            **config,
        )
    raise ValueError(f"unknown generator family {family!r}; use one of {ALL_FAMILIES}")


def load_any(path: str | Path) -> ImageGenerator | SliceGenerator:
    """Load a generator of any family from its ``.pt`` / ``.json`` pair."""
    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar}: no generator sidecar; save generators with .save()")
    family = json.loads(sidecar.read_text())["config"]["family"]
    return ImageGenerator.load(path) if family in FAMILIES else SliceGenerator.load(path)


def fake_like(
    unit_image: np.ndarray,
    shape: Sequence[int],
    value_range: tuple[float, float],
    bits: int | None = None,
) -> np.ndarray:
    """A generator's [0, 1] output as a fake of ``shape`` on an authentic image's value grid.

    Args:
        unit_image: ``(size, size)`` in [0, 1] (``ImageGenerator.sample`` or ``sample_unit``).
        shape: ``(rows, cols)`` of the fake; bilinear resize (antialiased when shrinking).
        value_range: ``(low, high)`` pixel values that 0 and 1 map to, e.g. ``unit_range`` of
            the authentic image the fake stands in for.
        bits: round to integers and clip to ``[0, 2**bits - 1]``; None keeps floats.

    Returns:
        ``(rows, cols)`` float32 pixel values.
    """
    unit = torch.from_numpy(np.asarray(unit_image, dtype=np.float32))[None, None]
    rows, cols = int(shape[0]), int(shape[1])
    shrink = rows < unit.shape[-2] or cols < unit.shape[-1]
    resized = F.interpolate(
        unit, size=(rows, cols), mode="bilinear", align_corners=False, antialias=shrink
    )[0, 0].numpy()
    low, high = value_range
    pixels = np.clip(resized, 0.0, 1.0) * (high - low) + low
    if bits is not None:
        pixels = np.clip(np.rint(pixels), 0, 2**bits - 1)
    return pixels.astype(np.float32)
