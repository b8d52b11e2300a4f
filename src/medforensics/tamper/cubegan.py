"""CT-GAN-style learned in-painting: ``gan-inject`` (label ``FM``) and ``gan-remove`` (``FB``).

Mirsky et al. (CT-GAN, USENIX Security 2019) trained pix2pix-style conditional GANs on cubes cut
from real scans: an injector on real nodules and a remover on healthy tissue, each completing a
cube whose centre was masked, then pasted the completed cube back into the scan. Here one small
generator does both. It completes a cube of ``depth`` slices × ``size``² pixels whose *hole* is
masked, from the cube's context and, optionally, a *hint*: a blurred map of how much denser (or
lighter) than its surroundings each voxel of the hole should be. It is trained on the site's own
authentic scans with random holes, half of them with the hint of what was really there and half
without, so that:

* ``gan-inject`` draws a nodule exactly like ``inject`` does (size, lobulation, spicules, ground
  glass...), turns its opacity times the density wanted into a hint, and lets the generator paint
  the lesion with the texture it learnt from real dense structures (vessels, real lesions);
* ``gan-remove`` gives no hint: the generator fills the hole with what it learnt healthy context
  looks like, including the chest wall or a vessel that continues into the hole.

Nothing is noise-matched by hand: the generator's own texture, smoothing and seams are what a
detector has to find, as with the real CT-GAN. That makes these attacks a different family from
the hand-built ``inject``/``remove`` (which synthesise noise with the measured NPS); evaluating a
detector on them without training on them is a test of generalisation.

The network (``_generator``) is a 3D U-Net that pools in-plane only, so it runs on any depth (a
single slice is repeated to ``depth``) and on holes larger than its training cubes. Losses: L1
inside the hole, a texture term (the fill's mean absolute Laplacian must match the real cube's,
or L1 alone converges to a smooth median) and a least-squares GAN term from a 3D PatchGAN
discriminator that sees the completed cube and the hole. A hole larger than the generator's
reach (a 5 cm tumour) is completed from the outside in, one ring per pass, each pass seeing the
rings before it as context. ``train_inpainter`` trains one
on a CPU in a few minutes; ``medforensics train-attack cube-gan`` does it from the command
line. A trained generator is a torch ``state_dict`` (read with ``weights_only=True``) plus a
JSON sidecar (config, card), kept in ``synthetic.cache_dir()`` like the synthetic-slice
generators, and found there by modality.
Torch is imported only when a generator is built or used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from scipy import ndimage

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import (
    ct_lung_mask,
    foreground_mask,
    on_value_grid,
)
from medforensics.tamper.base import Attack, AttackError, GroundTruth, Params, TamperResult
from medforensics.tamper.inject import LesionInjection, nodule_alpha
from medforensics.tamper.registry import register_attack
from medforensics.tamper.remove import LesionRemoval
from medforensics.tamper.synthetic import (
    cache_dir,
    load_weights,
    read_sidecar,
    save_weights,
    weights_identity,
)
from medforensics.tamper.texture import feather
from medforensics.utils.optional import require

if TYPE_CHECKING:
    import torch

FAMILY = "cube-gan"
#: input channels: context (hole blanked), hole, hint given, hint, noise (inside the hole)
IN_CHANNELS = 5
#: CT values mapped to [0, 1] (HU); other modalities use percentiles of the training scans
CT_RANGE = (-1024.0, 1024.0)
#: largest training hole radius, as a fraction of the cube side
HOLE_RADIUS = 0.35
#: a large hole is completed in rings this wide (fraction of the cube side), outside in
PEEL_RADIUS = 0.25


@dataclass(frozen=True)
class InpainterConfig:
    """What a cube in-painter was built for.

    Attributes:
        modality: the modality it was trained on (checked against the attacked volume).
        value_range: pixel values mapped to 0 and 1.
        depth: slices per training cube (odd); shorter volumes are repeated at their ends.
        size: in-plane side of a training cube, a multiple of 4.
        width: channels of the first stage.
        hint_scale: a difference of this many units (of ``value_range``) is a hint of 1.
        family: always ``cube-gan``.
    """

    modality: str
    value_range: tuple[float, float]
    depth: int = 5
    size: int = 48
    width: int = 12
    hint_scale: float = 0.5
    family: str = FAMILY

    def __post_init__(self) -> None:
        if self.size % 4 or self.size < 16:
            raise ValueError(f"size must be a multiple of 4 and at least 16, not {self.size}")
        if self.depth < 1 or self.depth % 2 == 0:
            raise ValueError(f"depth must be odd and at least 1, not {self.depth}")
        if self.value_range[1] <= self.value_range[0]:
            raise ValueError(f"value_range {self.value_range} is empty")


def _generator(config: InpainterConfig) -> torch.nn.ModuleDict:
    torch = require("torch", "the learned in-painting attacks")
    nn = torch.nn
    w = config.width

    def conv(cin: int, cout: int, dilation: int = 1) -> list[Any]:
        return [
            nn.Conv3d(
                cin, cout, 3, padding=(1, dilation, dilation), dilation=(1, dilation, dilation)
            ),
            nn.LeakyReLU(0.2),
        ]

    def down(cin: int, cout: int) -> list[Any]:
        return [nn.Conv3d(cin, cout, (3, 4, 4), stride=(1, 2, 2), padding=1), nn.LeakyReLU(0.2)]

    return nn.ModuleDict(
        {
            "enc1": nn.Sequential(*conv(IN_CHANNELS, w), *conv(w, w)),
            "enc2": nn.Sequential(*down(w, 2 * w), *conv(2 * w, 2 * w)),
            "mid": nn.Sequential(
                *down(2 * w, 4 * w), *conv(4 * w, 4 * w, 2), *conv(4 * w, 4 * w, 4)
            ),
            "up2": nn.Sequential(*conv(6 * w, 2 * w), *conv(2 * w, 2 * w)),
            "up1": nn.Sequential(*conv(3 * w, w), *conv(w, w)),
            "out": nn.Conv3d(w, 1, 1),
        }
    )


def _discriminator(config: InpainterConfig) -> torch.nn.Sequential:
    torch = require("torch", "the learned in-painting attacks")
    nn = torch.nn
    w = config.width
    return nn.Sequential(
        nn.Conv3d(2, w, (3, 4, 4), stride=(1, 2, 2), padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv3d(w, 2 * w, (3, 4, 4), stride=(1, 2, 2), padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv3d(2 * w, 2 * w, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv3d(2 * w, 1, 3, padding=1),
    )


def _forward(network: torch.nn.ModuleDict, inputs: torch.Tensor) -> torch.Tensor:
    """The completed cube ``(n, 1, d, h, w)``: context outside the hole, generated inside."""
    torch = require("torch", "the learned in-painting attacks")
    functional = torch.nn.functional
    e1 = network["enc1"](inputs)
    e2 = network["enc2"](e1)
    middle = network["mid"](e2)
    u2 = functional.interpolate(middle, scale_factor=(1, 2, 2), mode="nearest")
    u2 = network["up2"](torch.cat([u2, e2], dim=1))
    u1 = functional.interpolate(u2, scale_factor=(1, 2, 2), mode="nearest")
    u1 = network["up1"](torch.cat([u1, e1], dim=1))
    generated = network["out"](u1)
    context, hole = inputs[:, :1], inputs[:, 1:2]
    return context * (1 - hole) + generated * hole


def _inputs(
    context: np.ndarray, hole: np.ndarray, hint: np.ndarray | None, noise: np.ndarray
) -> np.ndarray:
    """Stack the generator's channels for ``(n, d, h, w)`` cubes in unit values."""
    holes = hole.astype(np.float32)
    given = np.zeros_like(holes) if hint is None else holes
    hints = np.zeros_like(holes) if hint is None else hint.astype(np.float32) * holes
    return np.stack(
        [context * (1 - holes), holes, given, hints, noise.astype(np.float32) * holes], axis=1
    )


@dataclass
class CubeInpainter:
    """A trained cube in-painter: config, generator network and a card of its training."""

    config: InpainterConfig
    network: torch.nn.ModuleDict
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        return weights_identity(self.network)

    def describe(self) -> dict[str, Any]:
        return {
            "family": FAMILY,
            "modality": self.config.modality,
            "size": self.config.size,
            "depth": self.config.depth,
            "id": self.identity,
            **self.card,
        }

    def to_unit(self, pixels: np.ndarray) -> np.ndarray:
        low, high = self.config.value_range
        return ((np.asarray(pixels, dtype=np.float32) - low) / (high - low)).astype(np.float32)

    def to_pixels(self, unit: np.ndarray) -> np.ndarray:
        low, high = self.config.value_range
        return (unit * (high - low) + low).astype(np.float32)

    def complete(
        self, cube: np.ndarray, hole: np.ndarray, hint: np.ndarray | None, seed: int
    ) -> np.ndarray:
        """Complete one ``(d, h, w)`` cube of pixel values; ``h`` and ``w`` multiples of 4."""
        torch = require("torch", "the learned in-painting attacks")
        noise = np.random.default_rng(seed).standard_normal(cube.shape).astype(np.float32)
        inputs = _inputs(self.to_unit(cube)[None], hole[None], hint, noise[None])
        self.network.eval()
        with torch.inference_mode():
            out = _forward(self.network, torch.from_numpy(inputs))[0, 0].numpy()
        return self.to_pixels(out)

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (torch state_dict, ``.pt``) and its JSON sidecar (config, card)."""
        return save_weights(self.network, self.config, self.card, path)

    @staticmethod
    def load(path: str | Path) -> CubeInpainter:
        """Read an in-painter written by ``save`` (the ``.pt`` file or its ``.json`` sidecar)."""
        weights, meta = read_sidecar(path, "CubeInpainter")
        if meta.get("config", {}).get("family") != FAMILY:
            raise ValueError(f"{weights.with_suffix('.json')}: not a {FAMILY} in-painter")
        raw = dict(meta["config"])
        raw["value_range"] = tuple(raw["value_range"])
        config = InpainterConfig(**raw)
        network = load_weights(_generator(config), weights)
        return CubeInpainter(config, network, dict(meta.get("card", {})))


def save_to_cache(inpainter: CubeInpainter) -> Path:
    """Save in ``cache_dir()`` as ``cube-gan-MODALITY-ID.pt`` (+ sidecar)."""
    name = f"{FAMILY}-{inpainter.config.modality}-{inpainter.identity}.pt"
    return inpainter.save(cache_dir() / name)


def cached_inpainters(modality: str) -> list[Path]:
    """Cached in-painters for ``modality``, newest first."""
    folder = cache_dir()
    if not folder.is_dir():
        return []
    found = [
        p for p in folder.glob(f"{FAMILY}-{modality}-*.pt") if p.with_suffix(".json").is_file()
    ]
    return sorted(found, key=lambda p: (-p.stat().st_mtime_ns, p.name))


# --- cubes and holes ---------------------------------------------------------------------------


def _reflect(indices: np.ndarray, n: int) -> np.ndarray:
    """Indices folded back into ``0..n-1`` (mirror at both ends; any length)."""
    if n == 1:
        return np.zeros_like(indices)
    period = 2 * (n - 1)
    folded = np.mod(indices, period)
    return np.where(folded >= n, period - folded, folded)


def crop_indices(
    centre: tuple[int, int, int], shape: tuple[int, ...], depth: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays of a ``depth × size`` crop centred on ``centre``: slices repeated at the
    ends of the volume, rows and columns mirrored at the image border."""
    z, y, x = centre
    zi = np.clip(np.arange(z - depth // 2, z - depth // 2 + depth), 0, shape[0] - 1)
    yi = _reflect(np.arange(y - size[0] // 2, y - size[0] // 2 + size[0]), shape[1])
    xi = _reflect(np.arange(x - size[1] // 2, x - size[1] // 2 + size[1]), shape[2])
    return zi, yi, xi


def _hint_map(cube: np.ndarray, hole: np.ndarray, scale: float) -> np.ndarray:
    """How much denser (+) or lighter (-) than the ring around the hole each voxel is, blurred."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    ring = ndimage.binary_dilation(hole, structure, iterations=3) & ~hole
    reference = float(np.median(cube[ring])) if ring.any() else float(np.median(cube))
    hint = np.clip((cube - reference) / scale, -1.0, 1.0)
    return (ndimage.gaussian_filter(hint, (0.0, 1.5, 1.5)) * hole).astype(np.float32)


def _complete_peeling(
    inpainter: CubeInpainter,
    cube: np.ndarray,
    hole: np.ndarray,
    hint: np.ndarray | None,
    seed: int,
) -> np.ndarray:
    """Complete a hole of any size from the outside in.

    Each pass runs the generator on the whole remaining hole but keeps only its outer ring (up
    to ``PEEL_RADIUS × size`` pixels from the known context, about the reach it was trained
    for); the next pass sees that ring as context. A small hole is done in one pass.
    """
    width = max(2.0, PEEL_RADIUS * inpainter.config.size)
    current, remaining = cube.copy(), hole.copy()
    for step in range(64):
        completed = inpainter.complete(current, remaining, hint, seed + step)
        inside = np.stack(
            [cv2.distanceTransform(p.astype(np.uint8), cv2.DIST_L2, 5) for p in remaining]
        )
        ring = remaining & (inside <= width)
        if not ring.any() or ring.sum() == remaining.sum():
            ring = remaining
        current[ring] = completed[ring]
        remaining = remaining & ~ring
        if not remaining.any():
            break
    return current


def _random_hole(depth: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A rotated, lumpy ellipsoid near the cube's centre (the training holes)."""
    half_z = int(rng.integers(0, max(depth // 2, 1)))
    radii = rng.uniform(3.0, HOLE_RADIUS * size, 2)
    theta = rng.uniform(0.0, math.pi)
    centre = size / 2.0 + rng.uniform(-size / 8.0, size / 8.0, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - centre[0], xx - centre[1]
    u = dy * math.cos(theta) + dx * math.sin(theta)
    v = -dy * math.sin(theta) + dx * math.cos(theta)
    lumps = 1.0 + 0.15 * np.sin(rng.integers(2, 6) * np.arctan2(v, u) + rng.uniform(0, 6.3))
    plane = (u / radii[0]) ** 2 + (v / radii[1]) ** 2 <= lumps**2
    hole = np.zeros((depth, size, size), dtype=bool)
    for k in range(depth // 2 - half_z, depth // 2 + half_z + 1):
        shrink = 1.0 - 0.3 * abs(k - depth // 2) / max(half_z, 1)
        hole[k] = (u / (radii[0] * shrink)) ** 2 + (v / (radii[1] * shrink)) ** 2 <= lumps**2
    if not hole.any():
        hole[depth // 2] = plane
    return hole


def _training_sites(
    volume: ImageVolume, rng: np.random.Generator, count: int
) -> list[tuple[int, int, int]]:
    """Cube centres: in lung (CT; half on dense structures such as vessels) or foreground."""
    n = volume.shape[0]
    sites: list[tuple[int, int, int]] = []
    for _ in range(count * 3):
        if len(sites) >= count:
            break
        z = int(rng.integers(n // 10, n - n // 10)) if n >= 10 else int(rng.integers(n))
        image = volume.pixels[z]
        if volume.modality == "CT":
            region = ndimage.binary_fill_holes(ct_lung_mask(image))
            if rng.random() < 0.5:
                region = region & (image > -500.0)
        else:
            region = foreground_mask(image)
        ys, xs = np.nonzero(region)
        if len(ys) == 0:
            continue
        pick = int(rng.integers(len(ys)))
        sites.append((z, int(ys[pick]), int(xs[pick])))
    return sites


def training_cubes(
    volumes: Sequence[ImageVolume], config: InpainterConfig, seed: int, per_volume: int = 64
) -> np.ndarray:
    """``(n, depth, size, size)`` cubes in pixel values from plausible sites of ``volumes``."""
    rng = np.random.default_rng(seed)
    cubes = []
    for volume in volumes:
        for site in _training_sites(volume, rng, per_volume):
            zi, yi, xi = crop_indices(site, volume.shape, config.depth, (config.size, config.size))
            cubes.append(volume.pixels[np.ix_(zi, yi, xi)])
    if not cubes:
        raise ValueError("no training cube could be cut: no volume has lung or foreground")
    return np.stack(cubes).astype(np.float32)


def _value_range(volumes: Sequence[ImageVolume], modality: str) -> tuple[float, float]:
    if modality == "CT":
        return CT_RANGE
    sample = np.concatenate([v.pixels.ravel()[:: max(1, v.pixels.size // 50000)] for v in volumes])
    low, high = np.percentile(sample, [0.5, 99.5])
    return float(low), float(max(high, low + 1.0))


def _roughness(cubes: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """Mean absolute in-plane Laplacian inside each cube's hole, ``(n,)``."""
    torch = require("torch", "training the learned in-painting attacks")
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 1, 3, 3)
    rough = torch.abs(torch.nn.functional.conv3d(cubes, kernel, padding=(0, 1, 1))) * holes
    return rough.sum(dim=(1, 2, 3, 4)) / holes.sum(dim=(1, 2, 3, 4)).clamp(min=1.0)


def _augment(cubes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(cubes)
    for k, cube in enumerate(cubes):
        cube = np.rot90(cube, int(rng.integers(4)), axes=(1, 2))
        if rng.random() < 0.5:
            cube = cube[:, :, ::-1]
        if rng.random() < 0.5:
            cube = cube[::-1]
        out[k] = cube
    return out


def train_inpainter(
    volumes: Sequence[ImageVolume],
    seed: int = 0,
    *,
    steps: int = 600,
    batch_size: int = 6,
    lr: float = 1e-3,
    adv_weight: float = 0.05,
    texture_weight: float = 10.0,
    config: InpainterConfig | None = None,
    per_volume: int = 64,
    progress: Callable[[str], None] | None = None,
) -> CubeInpainter:
    """Train a cube in-painter on authentic ``volumes`` (one modality), reproducibly from ``seed``.

    Args:
        volumes: authentic scans of one modality (HU for CT).
        seed: seeds the cubes, the holes, the weights and the batches.
        steps: optimiser steps (600 take a few minutes on two cores at the defaults).
        batch_size: cubes per step.
        lr: Adam learning rate of both networks.
        adv_weight: weight of the GAN term against the L1 term inside the hole.
        texture_weight: weight of the texture term: the mean absolute Laplacian (in-plane)
            inside the hole must match the real cube's, so the fill is as grainy as the scan
            instead of the smooth median an L1 loss alone converges to.
        config: sizes; default: ``InpainterConfig`` for the volumes' modality.
        per_volume: training cubes cut from each volume.
        progress: called with a line of text every 50 steps.
    """
    torch = require("torch", "training the learned in-painting attacks")
    if not volumes:
        raise ValueError("train_inpainter needs at least one authentic volume")
    modalities = sorted({v.modality for v in volumes})
    if len(modalities) > 1:
        raise ValueError(
            f"train_inpainter needs volumes of one modality, got {', '.join(modalities)}"
        )
    if config is None:
        config = InpainterConfig(modalities[0], _value_range(volumes, modalities[0]))
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    low, high = config.value_range
    pool: np.ndarray = (training_cubes(volumes, config, seed, per_volume) - low) / (high - low)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        generator, critic = _generator(config), _discriminator(config)
        opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.999))
        generator.train()
        critic.train()
        l1_value = adv_value = texture_value = 0.0
        for step in range(steps):
            cubes = _augment(np.asarray(pool[rng.integers(0, len(pool), batch_size)]), rng)
            holes = np.stack([_random_hole(config.depth, config.size, rng) for _ in cubes])
            hints = np.stack(
                [_hint_map(c, h, config.hint_scale) for c, h in zip(cubes, holes, strict=True)]
            )
            given = (rng.random(batch_size) < 0.5).astype(np.float32).reshape(-1, 1, 1, 1)
            hints *= given  # half of the cubes without a hint
            noise = rng.standard_normal(cubes.shape).astype(np.float32)
            inputs = _inputs(cubes, holes, hints, noise)
            inputs[:, 2] *= given
            x = torch.from_numpy(inputs)
            real = torch.from_numpy(np.ascontiguousarray(cubes[:, None]))
            hole_t = x[:, 1:2]
            fake = _forward(generator, x)
            d_real = critic(torch.cat([real, hole_t], dim=1))
            d_fake = critic(torch.cat([fake.detach(), hole_t], dim=1))
            loss_d = 0.5 * (torch.mean((d_real - 1) ** 2) + torch.mean(d_fake**2))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            l1 = torch.sum(torch.abs(fake - real) * hole_t) / hole_t.sum().clamp(min=1.0)
            adv = torch.mean((critic(torch.cat([fake, hole_t], dim=1)) - 1) ** 2)
            texture = torch.mean(torch.abs(_roughness(fake, hole_t) - _roughness(real, hole_t)))
            loss_g = l1 + adv_weight * adv + texture_weight * texture
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            l1_value, adv_value, texture_value = l1.item(), adv.item(), texture.item()
            if progress is not None and (step + 1) % 50 == 0:
                progress(
                    f"{FAMILY} step {step + 1}/{steps}: L1 in hole {l1_value * (high - low):.1f} "
                    f"(pixel units), texture {texture_value * (high - low):.1f}, "
                    f"adversarial {adv_value:.3f}"
                )
        generator.eval()
    inpainter = CubeInpainter(config, generator)
    inpainter.card = {
        "trained_on": sorted({v.input for v in volumes}),
        "volumes": len(volumes),
        "cubes": len(pool),
        "steps": steps,
        "seed": seed,
        "adv_weight": adv_weight,
        "texture_weight": texture_weight,
        "final_l1_in_hole": round(l1_value * (high - low), 2),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    return inpainter


# --- the attacks -------------------------------------------------------------------------------


def paint(
    inpainter: CubeInpainter,
    volume: ImageVolume,
    hole: np.ndarray,
    hint: np.ndarray | None,
    seed: int,
    feather_px: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Complete ``hole`` (bool, the volume's shape) with the generator; returns pixels, mask.

    The cube around the hole keeps at least ``size / 4`` pixels and ``depth // 2`` slices of
    context on each side; the completed values are blended in over ``feather_px`` pixels and put
    on the volume's value grid.
    """
    config = inpainter.config
    grow = math.ceil(feather_px)
    if grow:
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = ndimage.generate_binary_structure(2, 1)
        hole = ndimage.binary_dilation(hole, structure, iterations=grow)
    zs, ys, xs = (np.flatnonzero(hole.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    if len(zs) == 0:
        raise AttackError(f"the region to in-paint in {volume.input} is empty")
    margin = max(config.size // 4, 8)
    side = (
        int(4 * math.ceil((ys[-1] - ys[0] + 1 + 2 * margin) / 4)),
        int(4 * math.ceil((xs[-1] - xs[0] + 1 + 2 * margin) / 4)),
    )
    depth = max(config.depth, int(zs[-1] - zs[0] + 1) + 2 * (config.depth // 2))
    depth += 1 - depth % 2
    centre = (
        int((zs[0] + zs[-1]) // 2),
        int(ys[0] + (ys[-1] - ys[0] + 1) // 2),
        int(xs[0] + (xs[-1] - xs[0] + 1) // 2),
    )
    zi, yi, xi = crop_indices(centre, volume.shape, depth, side)
    # a voxel of the crop may be written back only where it is the volume's own (not a repeat)
    z_own = zi == np.arange(centre[0] - depth // 2, centre[0] - depth // 2 + depth)
    y_own = yi == np.arange(centre[1] - side[0] // 2, centre[1] - side[0] // 2 + side[0])
    x_own = xi == np.arange(centre[2] - side[1] // 2, centre[2] - side[1] // 2 + side[1])
    own = z_own[:, None, None] & y_own[None, :, None] & x_own[None, None, :]
    local_hole = hole[np.ix_(zi, yi, xi)] & own
    cube = volume.pixels[np.ix_(zi, yi, xi)]
    local_hint = None if hint is None else hint[np.ix_(zi, yi, xi)] * local_hole
    completed = _complete_peeling(inpainter, cube, local_hole, local_hint, seed)
    alpha = feather(local_hole, feather_px) if feather_px > 0 else local_hole.astype(np.float32)
    blended = cube * (1 - alpha) + completed * alpha
    pixels = volume.pixels.copy()
    index = np.nonzero(local_hole)
    targets = (zi[index[0]], yi[index[1]], xi[index[2]])
    pixels[targets] = on_value_grid(volume.pixels, blended[index])
    mask = np.zeros(volume.shape, dtype=bool)
    mask[targets] = pixels[targets] != volume.pixels[targets]
    return pixels, mask


def _missing(name: str, volume: ImageVolume) -> AttackError:
    return AttackError(
        f"attack {name!r} on {volume.input}: no trained {FAMILY} in-painter for "
        f"{volume.modality} in {cache_dir()}. Train one on authentic scans of the site with "
        f"`medforensics train-attack {FAMILY} --authentic DIR --modality {volume.modality}` (a "
        f"few minutes on two cores), pass one with create_attack({name!r}, inpainter=PATH) or "
        "params inpainter_path=PATH, or set train_on_volume=true to train a tiny one on this "
        "volume itself"
    )


class _LearnedInpainting(Attack):
    """Shared by ``gan-inject`` and ``gan-remove``: where the in-painter comes from."""

    def __init__(self, inpainter: CubeInpainter | str | Path | None = None) -> None:
        if inpainter is None or isinstance(inpainter, CubeInpainter):
            self.inpainter = inpainter
        else:
            self.inpainter = CubeInpainter.load(inpainter)

    @staticmethod
    def _common(rng: np.random.Generator) -> Params:
        return {
            "inpainter_path": None,
            "train_on_volume": False,
            "train_steps": 150,
            "noise_seed": int(rng.integers(2**31 - 1)),
            "feather_px": round(float(rng.uniform(0.0, 2.5)), 2),
        }

    def _inpainter_for(self, volume: ImageVolume, params: Params) -> CubeInpainter:
        if params.get("inpainter_path"):
            try:
                inpainter = CubeInpainter.load(params["inpainter_path"])
            except (FileNotFoundError, ValueError) as exc:
                raise AttackError(str(exc)) from exc
        elif self.inpainter is not None:
            inpainter = self.inpainter
        elif cached := cached_inpainters(volume.modality):
            inpainter = CubeInpainter.load(cached[0])
        elif params.get("train_on_volume"):
            inpainter = train_inpainter(
                [volume], int(params["noise_seed"]), steps=int(params["train_steps"])
            )
            inpainter.card["trained_on"] = "the attacked volume itself"
        else:
            raise _missing(self.name, volume)
        if inpainter.config.modality != volume.modality:
            raise AttackError(
                f"attack {self.name!r} on {volume.input}: the in-painter was trained on "
                f"{inpainter.config.modality} scans, this is {volume.modality}; train one on "
                f"{volume.modality} scans"
            )
        return inpainter

    def _result(
        self,
        volume: ImageVolume,
        params: Params,
        inpainter: CubeInpainter,
        hole: np.ndarray,
        hint: np.ndarray | None,
        centre: tuple[int, int, int],
    ) -> TamperResult:
        pixels, mask = paint(
            inpainter, volume, hole, hint, int(params["noise_seed"]), float(params["feather_px"])
        )
        if not mask.any():
            raise AttackError(
                f"attack {self.name!r} on {volume.input}: the generator changed no pixel at "
                f"{list(centre)}; the in-painter may be untrained"
            )
        if not mask[centre]:
            hits = np.argwhere(mask)
            distance = np.abs(hits - np.asarray(centre)).sum(axis=1)
            centre = tuple(int(v) for v in hits[int(np.argmin(distance))])  # type: ignore[assignment]
        recorded = {**params, "inpainter": inpainter.describe()}
        return TamperResult(pixels, GroundTruth(self.name, self.label, recorded, centre, mask))


@register_attack
class GanInjection(_LearnedInpainting):
    """Inject a nodule drawn like ``inject``'s, painted by the learned in-painter (label FM)."""

    name = "gan-inject"
    label = "FM"

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        params = LesionInjection().sample_params(volume, rng)
        params.update(self._common(rng))
        if volume.modality != "CT":
            params["hint_strength"] = round(float(rng.uniform(0.3, 0.8)), 3)
        return params

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        inpainter = self._inpainter_for(volume, params)
        box, alpha, core = nodule_alpha(volume, params)
        hole = np.zeros(volume.shape, dtype=bool)
        hole[box] = alpha > 0.05
        if not hole.any():
            raise AttackError(f"attack 'gan-inject' on {volume.input}: the nodule is empty")
        background = (
            float(np.median(volume.pixels[box][alpha < 0.05]))
            if (alpha < 0.05).any()
            else float(np.median(volume.pixels[box]))
        )
        low, high = inpainter.config.value_range
        if volume.modality == "CT":
            kind = params["nodule_type"]
            if kind == "part-solid":
                density = params["ggo_hu"] + (params["solid_hu"] - params["ggo_hu"]) * core
            else:
                density = np.full(
                    alpha.shape, params["ggo_hu" if kind == "ground-glass" else "solid_hu"]
                )
            strength = (density - background) / (high - low) / inpainter.config.hint_scale
        else:
            strength = np.sign(params.get("contrast", 1.0)) * float(params["hint_strength"])
        hint = np.zeros(volume.shape, dtype=np.float32)
        hint[box] = np.clip(alpha * strength, -1.0, 1.0)
        centre = tuple(int(c) for c in params["centre"])
        return self._result(volume, params, inpainter, hole, hint, centre)  # type: ignore[arg-type]


@register_attack
class GanRemoval(_LearnedInpainting):
    """Erase a region (a real finding's box, or a sampled site) with the learned in-painter (FB)."""

    name = "gan-remove"
    label = "FB"

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        drawn = LesionRemoval().sample_params(volume, rng)
        params = {k: drawn[k] for k in ("box", "source", "placement", "margin_px")}
        params.update(self._common(rng))
        return params

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        z0, z1, y0, y1, x0, x1 = (int(v) for v in params["box"])
        if not (0 <= z0 < z1 <= volume.shape[0] and 0 <= y0 < y1 and 0 <= x0 < x1):
            raise AttackError(
                f"removal box {params['box']} is empty or outside the {volume.shape} image"
            )
        inpainter = self._inpainter_for(volume, params)
        margin = float(params["margin_px"])
        radii = (
            (y1 - y0) / 2.0 * math.sqrt(2.0) * 0.85 + margin,
            (x1 - x0) / 2.0 * math.sqrt(2.0) * 0.85 + margin,
        )
        cy, cx = (y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0
        yy, xx = np.ogrid[0 : volume.shape[1], 0 : volume.shape[2]]
        plane = ((yy - cy) / radii[0]) ** 2 + ((xx - cx) / radii[1]) ** 2 <= 1.0
        hole = np.zeros(volume.shape, dtype=bool)
        hole[z0:z1] = plane
        centre = ((z0 + z1 - 1) // 2, round(cy), round(cx))
        return self._result(volume, params, inpainter, hole, None, centre)
