"""Grad-CAM and occlusion sensitivity for the network detectors, with MONAI ``visualize``.

Which detectors can be explained, and how:

* the global slice detectors (``global-cnn``, ``global-vit``, ``densenet121-slice``): the slice
  goes through the model's own preprocessing (window, resize, residual channel), so the map is
  computed on exactly the tensor the network scores. Grad-CAM uses the last spatial layer of the
  DenseNets (``class_layers.relu``); for the ViT it uses the patch tokens entering the last
  transformer block, laid out on their patch grid (the tokens leaving the last block reach the
  logit only through the class token, so their gradient is zero). Occlusion fades a square of
  the network input towards zero (MONAI's ``gaussian`` mode: mid-grey, no residual);
* ``ct-local``: the explained score is the slice's largest body-cell logit, the detector's
  volume statistic restricted to one slice. Grad-CAM uses the last convolution block; since the
  head is a 1×1 convolution this is the cell-logit map itself (less its bias, clipped at zero),
  so it agrees with the detector's own anomaly map by construction. Occlusion sets a square of
  the noise residual to zero: measured on simulator attacks, that lowers the logit, whereas
  replacing it by white reference noise raises it everywhere (real CT noise is correlated, so
  white noise looks edited to the network);
* ``auto``: explained through the first explainable detector it routes the volume to
  (``ct-local`` for CT); its other routes (``copy-move``, ``noise-residual``) have no network.

Every map is ``(rows, cols)`` float32 in [0, 1] at the image's resolution: 1 where the network's
decision depends most, 0 where not at all (occlusion: no drop of the score). Maps are upsampled
bilinearly from the layer or input grid. Only the slice and its neighbours are read, the volume
is never modified, and the result is the same on every call.
"""

from __future__ import annotations

import copy
import functools
import math
import sys
import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from medforensics.detect.base import Detector
from medforensics.io.types import ImageVolume
from medforensics.utils.optional import require

if TYPE_CHECKING:
    import torch

Method = Literal["gradcam", "occlusion"]
METHODS: tuple[Method, ...] = get_args(Method)
#: the detectors this module explains, for messages
EXPLAINED = ("global-cnn", "global-vit", "densenet121-slice", "ct-local", "auto (CT)")
#: occlusion drops below this (in logit units) are rounding, not evidence
_MIN_DROP = 1e-6
#: default occlusion (square / shorter side, stride / square) by network class, chosen so one
#: 512×512 slice takes a few seconds on two cores: 15×15 positions for the small global nets
#: (~7 ms a call), 7×7 for DenseNet121 (~90 ms a call); ct-local uses 8×8 (full resolution)
_OCCLUSION_GRIDS = {"DenseNet121": (1 / 4, 1 / 2)}


class NotExplainable(ValueError):
    """A detector (or this image) has no network whose decision a saliency map could show."""


def explainable(detector: Detector, volume: ImageVolume | None = None) -> bool:
    """Whether ``saliency`` can explain ``detector`` (on ``volume``, when given).

    For ``auto`` without a volume: whether any of its routes leads to an explainable detector.
    """
    if volume is not None:
        try:
            _resolve(detector, volume)
        except NotExplainable:
            return False
        return True
    if _family(detector) == "auto":
        auto: Any = detector
        names = {name for route in auto.routes.values() for name in route}
        return any(
            sub is not None and _family(sub) in ("global", "local")
            for sub in (auto._get(name) for name in sorted(names))
        )
    return _family(detector) in ("global", "local")


def saliency(
    detector: Detector,
    volume: ImageVolume,
    slice_index: int,
    method: Method = "gradcam",
    *,
    mask_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """Where on one slice the detector's network found its evidence.

    Args:
        detector: a network detector, or ``auto`` (explained through the detector it uses).
        volume: the image; only ``slice_index`` and its neighbours are read.
        slice_index: 0-based slice.
        method: ``gradcam`` or ``occlusion``.
        mask_size: occlusion square side in image pixels (default: an eighth of the shorter
            side, a quarter for ``densenet121-slice``; at least 8).
        stride: occlusion step in image pixels (default: half the square; the whole square
            for ``ct-local``, whose network runs on the full resolution). The defaults take a
            few seconds for a 512×512 slice on two CPU cores.
        batch_size: occluded copies scored per network call.

    Returns:
        ``(rows, cols)`` float32 in [0, 1]: 1 where the decision depends most. All zeros
        when nothing on the slice speaks for manipulation (Grad-CAM keeps positive evidence
        only; occlusion found no square whose removal lowers the score) or when the
        detector scores nothing there (``ct-local`` on a blank or tiny slice).

    Raises:
        NotExplainable: the detector has no network (or not for this modality), or the
            network has no spatial layer for Grad-CAM; the message says what works instead.
        IndexError: ``slice_index`` is outside the volume.
        ValueError: an unknown method or a non-positive ``mask_size``/``stride``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; use one of {', '.join(METHODS)}")
    for name, value in (("mask_size", mask_size), ("stride", stride), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    slices, rows, cols = volume.shape
    if not 0 <= slice_index < slices:
        raise IndexError(
            f"slice {slice_index} is outside {volume.input} (slices 0 to {slices - 1})"
        )
    target = _resolve(detector, volume)
    torch = require("torch", "Grad-CAM and occlusion maps")
    with torch.no_grad():
        subject = _subject(target, volume, slice_index)
    if subject is None:  # nothing the network scores on this slice (blank, tiny)
        return np.zeros((rows, cols), dtype=np.float32)
    if method == "gradcam":
        if subject.cam_layer is None:
            raise NotExplainable(
                f"detector {subject.name!r} cannot be explained with Grad-CAM: "
                f"{subject.cam_missing}; use method='occlusion'"
            )
        grid = _gradcam(subject)
    else:
        grid = _occlusion(subject, mask_size, stride, batch_size)
    return _to_image(grid, subject)


# --------------------------------------------------------------------------- what to explain


@dataclass
class _Subject:
    """One slice as its network sees it, and how the network's grid maps back to the image.

    Attributes:
        name: the detector's registry name, for messages.
        score: ``(1, C, H, W) -> (1, 1)``: the number the detector's decision rests on.
        inputs: ``(1, C, H, W)``: the network input for the slice, exactly as the detector
            builds it.
        image_shape: ``(rows, cols)`` of the slice.
        covered: ``(rows, cols)`` of the image region the input grid spans, from the top-left
            corner (``ct-local`` drops the last rows/columns that do not fill an 8-pixel cell).
        cam_layer: name of Grad-CAM's layer inside ``score``; None when there is none.
        cam_missing: why there is none.
        cam_keep: layer-grid mask of places that count (``ct-local``: body cells).
        occlusion_mode: MONAI occlusion mode (what an occluded square becomes).
        occlusion_grid: default occlusion square (fraction of the shorter side) and stride
            (fraction of the square), set by what one network call costs.
    """

    name: str
    score: torch.nn.Module
    inputs: torch.Tensor
    image_shape: tuple[int, int]
    covered: tuple[int, int]
    cam_layer: str | None
    cam_missing: str
    cam_keep: np.ndarray | None
    occlusion_mode: str | float
    occlusion_grid: tuple[float, float]


def _family(detector: Detector) -> str | None:
    """``global``, ``local``, ``auto`` or None (nothing to explain).

    Looks the detector classes up in ``sys.modules``: a detector whose module was never
    imported cannot be an instance of its class, and this way asking about ``noise-residual``
    imports no torch.
    """
    checks = (
        ("medforensics.detect.global_net", "GlobalSliceDetector", "global"),
        ("medforensics.detect.local", "LocalDetector", "local"),
        ("medforensics.detect.auto", "AutoDetector", "auto"),
    )
    for module_name, class_name, family in checks:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(detector, getattr(module, class_name)):
            return family
    return None


def _resolve(detector: Detector, volume: ImageVolume) -> Detector:
    """The detector whose network explains ``detector``'s result on ``volume``."""
    family = _family(detector)
    if family == "global":
        return detector
    if family == "local":
        local: Any = detector
        if not local.supports(volume):
            raise NotExplainable(
                f"detector {detector.name!r} was trained on "
                f"{', '.join(local.modalities_trained)} only and does not assess this "
                f"{volume.modality} image, so there is no decision to explain"
            )
        return detector
    if family == "auto":
        auto: Any = detector
        try:
            chosen, _ = auto.route(volume)
        except RuntimeError as exc:
            raise NotExplainable(f"detector 'auto' has nothing to explain: {exc}") from exc
        for sub in chosen:
            if _family(sub) in ("global", "local"):
                return _resolve(sub, volume)
        used = ", ".join(repr(sub.name) for sub in chosen)
        none = "it has" if len(chosen) == 1 else "none of them has"
        raise NotExplainable(
            f"detector 'auto' uses {used} for this {volume.modality} image, and {none} "
            f"a network to explain; Grad-CAM and occlusion work for "
            f"{', '.join(EXPLAINED)}. The detector's own map (findings and anomaly map) is "
            "the explanation here"
        )
    raise NotExplainable(
        f"detector {detector.name!r} has no network to explain: Grad-CAM and occlusion work "
        f"for {', '.join(EXPLAINED)}. Its own findings and anomaly map are the explanation"
    )


def _subject(detector: Detector, volume: ImageVolume, z: int) -> _Subject | None:
    if _family(detector) == "global":
        return _global_subject(detector, volume, z)
    return _local_subject(detector, volume, z)


def _global_subject(detector: Any, volume: ImageVolume, z: int) -> _Subject:
    """A global slice detector: its preprocessing, its network's logit."""
    model = detector.model
    nets = _nets()
    # a copy: the preprocessing reads through torch.from_numpy, and the volume is not ours
    image = np.array(volume.pixels[z : z + 1], dtype=np.float32)
    inputs = model.preprocessing(image)
    vit = require("monai.networks.nets", "Grad-CAM and occlusion maps").ViT
    cam_missing = ""
    if isinstance(model.network, vit):
        grid, cam_missing = _vit_grid(model.network, tuple(inputs.shape[-2:]))
        if grid is not None:
            score, layer = nets.VitLogit(model.network, grid), "patch_grid"
        else:
            score, layer = nets.Logit(model.network), None
    else:
        score = nets.Logit(model.network)
        layer = _last_spatial_layer(score, inputs)
        if layer is None:
            cam_missing = "its network has no layer with a spatial output"
    rows, cols = volume.shape[1:]
    return _Subject(
        name=detector.name,
        score=score,
        inputs=inputs,
        image_shape=(rows, cols),
        covered=(rows, cols),
        cam_layer=layer,
        cam_missing=cam_missing,
        cam_keep=None,
        occlusion_mode="gaussian",
        occlusion_grid=_OCCLUSION_GRIDS.get(model.network_spec.get("class", ""), (1 / 8, 1 / 2)),
    )


def _local_subject(detector: Any, volume: ImageVolume, z: int) -> _Subject | None:
    """``ct-local``: the noise-residual stack of the slice and its neighbours, max cell logit."""
    from medforensics.detect.local import MIN_CELLS
    from medforensics.detect.local_net import STRIDE, prepare

    torch = require("torch", "Grad-CAM and occlusion maps")
    slices, rows, cols = volume.shape
    r8, c8 = (rows // STRIDE) * STRIDE, (cols // STRIDE) * STRIDE
    if r8 < 4 * STRIDE or c8 < 4 * STRIDE:
        return None  # the detector does not score images this small either
    lo, hi = max(0, z - 1), min(slices, z + 2)
    # the same neighbours and crop as local.volume_logits, one slice at a time
    block = np.array(volume.pixels[lo:hi, :r8, :c8], dtype=np.float32)
    prepared = prepare(block, volume.modality, detector.filters, z - lo, z - lo + 1)
    cells = prepared.cells[0]
    if int(cells.sum()) < min(MIN_CELLS, cells.size):
        return None
    return _Subject(
        name=detector.name,
        score=_nets().MaxCell(detector.net, torch.from_numpy(cells)),
        inputs=prepared.residuals.clone(),  # a normal tensor: prepare() made an inference one
        image_shape=(rows, cols),
        covered=(r8, c8),
        cam_layer=f"net.body.{len(detector.net.body) - 1}",
        cam_missing="",
        cam_keep=cells,
        occlusion_mode=0.0,
        occlusion_grid=(1 / 8, 1.0),
    )


def _vit_grid(network: Any, size: tuple[int, ...]) -> tuple[tuple[int, int] | None, str]:
    """The patch grid of a MONAI ViT for this input size, or None and the reason."""
    if not hasattr(network, "cls_token") or not hasattr(network, "classification_head"):
        return None, "its ViT has no class token to take the gradient of"
    patch = getattr(network.patch_embedding.patch_embeddings, "kernel_size", None)
    if patch is None or len(size) != 2:
        return None, "its ViT does not embed patches with a convolution"
    grid = (size[0] // patch[0], size[1] // patch[1])
    if grid[0] * grid[1] != int(network.patch_embedding.n_patches):
        return None, f"its ViT's patches do not tile the {size[0]}x{size[1]} input"
    return grid, ""


def _last_spatial_layer(score: torch.nn.Module, inputs: torch.Tensor) -> str | None:
    """Name of the last leaf module, in execution order, whose output is a 2D map (> 1×1)."""
    seen: list[str] = []
    handles = []

    def record(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            if getattr(output, "ndim", 0) == 4 and output.shape[-1] * output.shape[-2] > 1:
                seen.append(name)

        return hook

    for name, module in score.named_modules():
        if name and not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(record(name)))
    try:
        score(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seen[-1] if seen else None


# --------------------------------------------------------------------------- the two methods


def _gradcam(subject: _Subject) -> np.ndarray:
    """Grad-CAM on the subject's layer grid (not normalised)."""
    torch = require("torch", "Grad-CAM")
    visualize = require("monai.visualize", "Grad-CAM")
    # gradients even when the caller runs under no_grad or inference_mode (in which a copy
    # would be made of inference tensors, which autograd refuses)
    with torch.inference_mode(False), torch.enable_grad():
        # a private copy: MONAI's hooks stay on the module for good, and gradients must not
        # accumulate on (or race with) the detector's own network
        score = copy.deepcopy(subject.score).eval()
        for parameter in score.parameters():
            parameter.requires_grad_(False)
        cam = visualize.GradCAM(
            nn_module=score,
            target_layers=subject.cam_layer,
            upsampler=lambda _size: _identity,
            postprocessing=_identity,
        )
        inputs = subject.inputs.detach().clone().requires_grad_(True)
        grid = cam(x=inputs, class_idx=0)
    out = grid.detach()[0, 0].double().numpy()
    if subject.cam_keep is not None and subject.cam_keep.shape == out.shape:
        out = np.where(subject.cam_keep, out, 0.0)
    return np.maximum(out, 0.0)


def _occlusion(
    subject: _Subject, mask_size: int | None, stride: int | None, batch_size: int
) -> np.ndarray:
    """Drop of the score when each place is occluded, on the input grid (not normalised)."""
    torch = require("torch", "occlusion sensitivity")
    visualize = require("monai.visualize", "occlusion sensitivity")
    covered = subject.covered
    square, step_fraction = subject.occlusion_grid
    side = mask_size if mask_size is not None else max(8, round(min(covered) * square))
    step = stride if stride is not None else max(1, round(side * step_fraction))
    grid_shape = tuple(int(s) for s in subject.inputs.shape[-2:])
    masks, overlaps = [], []
    for axis in range(2):
        scale = grid_shape[axis] / covered[axis]
        mask = min(grid_shape[axis], max(1, round(side * scale)))
        interval = min(mask, max(1, round(step * scale)))
        masks.append(mask)
        # MONAI steps int(mask * (1 - overlap)); the half pixel keeps that from rounding down
        overlaps.append(max(0.0, 1.0 - (interval + 0.5) / mask))
    occluder = visualize.OcclusionSensitivity(
        nn_module=subject.score,
        mask_size=masks,
        n_batch=batch_size,
        verbose=False,
        mode=subject.occlusion_mode,
        overlap=overlaps,
        activate=False,
    )
    with torch.inference_mode(), warnings.catch_warnings():
        # MONAI 1.6 indexes with lists, which torch deprecates; nothing for us to act on
        warnings.filterwarnings("ignore", message=".*non-tuple sequence.*", category=UserWarning)
        baseline = float(subject.score(subject.inputs).reshape(-1)[0])
        occluded, _ = occluder(subject.inputs)
    scores = torch.as_tensor(occluded)[0, 0].double().numpy()
    return np.maximum(baseline - scores, 0.0) * (baseline - scores >= _MIN_DROP)


def _to_image(grid: np.ndarray, subject: _Subject) -> np.ndarray:
    """A grid map over ``subject.covered``, upsampled into the image and scaled to [0, 1]."""
    torch = require("torch", "saliency maps")
    rows, cols = subject.image_shape
    out = np.zeros((rows, cols), dtype=np.float32)
    peak = float(grid.max()) if grid.size else 0.0
    if not math.isfinite(peak) or peak <= 0.0:
        return out
    covered = subject.covered
    tensor = torch.from_numpy(np.ascontiguousarray(grid / peak, dtype=np.float32))[None, None]
    if tuple(tensor.shape[-2:]) != covered:
        tensor = torch.nn.functional.interpolate(
            tensor, size=covered, mode="bilinear", align_corners=False
        )
    upsampled = tensor[0, 0].numpy()
    # rescaled after upsampling: bilinear samples fall between grid points and miss the peak
    out[: covered[0], : covered[1]] = upsampled / max(float(upsampled.max()), 1e-12)
    return np.clip(out, 0.0, 1.0)


def _identity(value: Any) -> Any:
    return value


# --------------------------------------------------------------------------- torch modules


@functools.cache
def _nets() -> SimpleNamespace:
    """The score modules, defined on first use so that importing this module needs no torch."""
    import torch
    from torch import nn

    class Logit(nn.Module):
        """A global network as ``(batch, C, H, W) -> (batch, 1)`` logits."""

        def __init__(self, network: nn.Module) -> None:
            super().__init__()
            self.network = network

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.network(x)
            if isinstance(out, tuple):  # MONAI's ViT returns (logits, hidden states)
                out = out[0]
            return out.reshape(x.shape[0], 1)

    class VitLogit(nn.Module):
        """MONAI ``ViT.forward``, with the tokens entering the last block shown as a grid.

        ``patch_grid`` (an identity) sees them as ``(batch, hidden, rows, cols)``, the layout
        Grad-CAM needs; the arithmetic is exactly ``ViT.forward``'s.
        """

        def __init__(self, vit: nn.Module, grid: tuple[int, int]) -> None:
            super().__init__()
            self.vit = vit
            self.grid = grid
            self.patch_grid = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            vit: Any = self.vit  # MONAI ViT: its parts are typed as Tensor | Module
            tokens = vit.patch_embedding(x)
            cls = vit.cls_token.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat((cls, tokens), dim=1)
            for block in vit.blocks[:-1]:
                tokens = block(tokens)
            batch, _, hidden = tokens.shape
            patches = tokens[:, 1:].transpose(1, 2).reshape(batch, hidden, *self.grid)
            patches = self.patch_grid(patches)
            tokens = torch.cat((tokens[:, :1], patches.flatten(2).transpose(1, 2)), dim=1)
            tokens = vit.norm(vit.blocks[-1](tokens))
            return vit.classification_head(tokens[:, 0]).reshape(batch, 1)

    class MaxCell(nn.Module):
        """``ct-local``'s largest body-cell logit of a residual stack, ``(batch, 1)``."""

        def __init__(self, net: nn.Module, cells: torch.Tensor) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("outside", ~cells, persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.net(x)[:, 0].masked_fill(self.outside, -torch.inf)
            return logits.flatten(1).amax(dim=1, keepdim=True)

    def evaluating(cls: type) -> Any:
        # built in eval mode: MONAI's eval_mode() switches back to training afterwards every
        # module that was training, and a fresh wrapper would take the detector's network with
        # it (its batch norms would then learn from the occluded copies)
        return lambda *args: cls(*args).eval()

    return SimpleNamespace(
        Logit=evaluating(Logit), VitLogit=evaluating(VitLogit), MaxCell=evaluating(MaxCell)
    )
