"""The local forensic network: a small fully convolutional net on noise residuals, 2.5D.

What it sees. Each slice is reduced to its noise: three fixed high-pass filters (SRM-style: the
4-neighbour Laplacian, the 3×3 and 5×5 "KV" kernels of Fridrich & Kodovský's rich models), each
divided by that filter's robust noise level on the body of the centre slice and truncated at ±8.
Anatomy is deliberately left out: a detector that learned what a nodule looks like would flag every
real nodule, and would not transfer to lesions it has not seen. The residuals of the slice above and
below are stacked with the centre slice (2.5D), so an edit that breaks the noise's continuity
across slices, or that was made on one slice only, is visible. Normalising by the slice's own noise
level is what lets one model work across scanners, kernels and doses.

What it computes. The 9 residual channels are folded 4×4 into 144 channels at a quarter of the
resolution (pixel unshuffle: lossless, and it keeps the noise's fine structure), then a few 3×3
convolutions, one of them strided, give a manipulation logit every 8 pixels: small enough for
well over 30 slices/s on two CPU cores (``benchmarks/bench_detect.py`` measures it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.networks.blocks import Convolution
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

#: map cells are this many pixels on a side
STRIDE = 8
#: residuals are truncated at this many noise standard deviations
TRUNCATE = 8.0
#: slices of context on each side of the centre slice
CONTEXT = 1
#: HU above which a CT pixel is body (or table) rather than air
BODY_HU = -500.0


N_FILTERS = 3
IN_CHANNELS = N_FILTERS * (2 * CONTEXT + 1)


class ResidualFCN(nn.Module):
    """Residual stack ``(batch, 9, H, W)`` → manipulation logits ``(batch, 1, H/8, W/8)``."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        folded = IN_CHANNELS * 16

        def conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Module:
            return Convolution(
                spatial_dims=2,
                in_channels=cin,
                out_channels=cout,
                kernel_size=k,
                strides=stride,
                dilation=dilation,
                padding=dilation * (k // 2),
                act="relu",
                norm="batch",
            )

        self.fold = nn.PixelUnshuffle(4)
        self.body = nn.Sequential(
            conv(folded, width, k=1),
            conv(width, width),
            conv(width, 2 * width, stride=2),
            conv(2 * width, 2 * width, dilation=2),
            conv(2 * width, 2 * width, dilation=4),
        )
        self.head = nn.Conv2d(2 * width, 1, kernel_size=1)

    def forward(self, residuals: torch.Tensor) -> torch.Tensor:
        # unshuffle 4×4 then 1×1 conv == one 4×4 stride-4 conv with the same weights, without
        # the copy that unshuffling makes (about a third of the time on a CPU)
        first: Any = self.body[0]
        conv: nn.Conv2d = first.conv
        folded = conv.weight.view(conv.weight.shape[0], IN_CHANNELS, 4, 4)
        x = first.adn(F.conv2d(residuals, folded, conv.bias, stride=4))
        return self.head(self.body[1:](x))


def fuse_batch_norm(net: ResidualFCN) -> ResidualFCN:
    """``net`` for inference with every BatchNorm folded into the convolution before it.

    In eval mode a BatchNorm is an affine map per channel, so ``conv`` then ``BN`` equals one
    convolution with scaled weights and a shifted bias: one pass over the activations less per
    block. Outputs agree with the unfused network to float rounding. Never train the result.
    """
    net.eval()
    with torch.no_grad():
        for module in net.body:
            block: Any = module  # a MONAI Convolution: .conv, then .adn (N, A)
            norm = block.adn.N
            if not isinstance(norm, nn.BatchNorm2d):
                continue
            conv: nn.Conv2d = block.conv
            assert norm.running_var is not None and norm.running_mean is not None
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
            conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)
            block.adn.N = nn.Identity()
    return net


class ResidualFilter(nn.Module):
    """Fixed SRM-style filters per slice, ``(n, 1, H, W)`` → ``(n, 3, H, W)``.

    Second differences along rows and along columns, and their product (the 3×3 "KV" kernel),
    computed by shifts: a 1-channel convolution is slow on a CPU, shifts are not.
    """

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        x = F.pad(slices, (1, 1, 1, 1), mode="replicate")
        d_rows = x[..., :-2, :] - 2 * x[..., 1:-1, :] + x[..., 2:, :]  # (n,1,H,W+2)
        d_cols = x[..., :, :-2] - 2 * x[..., :, 1:-1] + x[..., :, 2:]  # (n,1,H+2,W)
        kv = d_rows[..., :, :-2] - 2 * d_rows[..., :, 1:-1] + d_rows[..., :, 2:]
        return torch.cat([d_rows[..., :, 1:-1] / 2.0, d_cols[..., 1:-1, :] / 2.0, kv / 4.0], dim=1)


def body_cells(image: np.ndarray, modality: str) -> np.ndarray:
    """Which ``STRIDE``×``STRIDE`` cells of a slice lie mostly inside the body (cheap: on cells)."""
    rows, cols = image.shape[0] // STRIDE, image.shape[1] // STRIDE
    cells = image[: rows * STRIDE, : cols * STRIDE].reshape(rows, STRIDE, cols, STRIDE)
    mean = cells.mean(axis=(1, 3))
    if modality == "CT":
        raw = mean > BODY_HU
    else:
        raw = mean > float(np.percentile(mean, 30)) if mean.size else mean > 0
    filled = ndimage.binary_fill_holes(raw)
    labels, count = ndimage.label(filled)
    if count > 1:  # keep the patient, drop the table and stray bits
        sizes = ndimage.sum_labels(filled, labels, index=np.arange(1, count + 1))
        filled = labels == (int(np.argmax(sizes)) + 1)
    inner = ndimage.binary_erosion(filled)  # the skin line is an edge, not texture
    return np.asarray(inner if inner.sum() >= 16 else filled, dtype=bool)


@dataclass
class Prepared:
    """Network input for a run of slices."""

    residuals: torch.Tensor  # (n, 9, H, W) float32
    cells: np.ndarray  # (n, H/8, W/8) bool: cells to score


def _noise_scale(residual: torch.Tensor, cells: np.ndarray) -> torch.Tensor:
    """Robust per-filter noise level ``(3,)`` of one slice's residual ``(3, H, W)`` on its body.

    Measured on every 4th pixel of every 4th row (plenty for a median, and 16 times cheaper).
    """
    rows, cols = cells.shape
    sub = residual[:, : rows * STRIDE : 4, : cols * STRIDE : 4]
    inside = np.repeat(np.repeat(cells, STRIDE // 4, axis=0), STRIDE // 4, axis=1)
    enough = inside.sum() >= 64
    values = sub[:, torch.from_numpy(inside)] if enough else sub.reshape(N_FILTERS, -1)
    sigma = values.abs().median(dim=1).values / 0.6745
    return torch.clamp(sigma, min=1e-3)


def _context_windows(res: torch.Tensor, first: int, count: int, context: bool) -> torch.Tensor:
    """``(count, 2·CONTEXT+1, 3, H, W)``: each slice's residual with its neighbours', a view.

    ``res`` holds the residuals of consecutive slices, slice ``first`` being the first centre.
    A missing neighbour (ends of the volume) is the centre itself; with ``context`` off every
    position is the centre.
    """
    m, _, rows, cols = res.shape
    if not context:
        return res[first : first + count, None].expand(-1, 2 * CONTEXT + 1, -1, -1, -1)
    before = max(CONTEXT - first, 0)
    after = max(first + count + CONTEXT - m, 0)
    if before or after:  # repeat the end slices: the neighbour of an end slice is itself
        res = torch.cat(
            [res[:1].expand(before, -1, -1, -1), res, res[-1:].expand(after, -1, -1, -1)]
        )
    res = res.contiguous()
    plane = rows * cols
    return res.as_strided(
        (count, 2 * CONTEXT + 1, N_FILTERS, rows, cols),
        (N_FILTERS * plane, N_FILTERS * plane, plane, cols, 1),
        (first + before - CONTEXT) * N_FILTERS * plane,
    )


def prepare(
    pixels: np.ndarray,
    modality: str,
    filters: ResidualFilter,
    start: int = 0,
    stop: int | None = None,
    context: bool = True,
    buffer: torch.Tensor | None = None,
) -> Prepared:
    """Residual stacks for slices ``start:stop`` of ``pixels`` (with their neighbours as context).

    Missing neighbours (first/last slice, single 2D images) repeat the centre slice, which is what
    the network was trained to expect for isolated slices; ``context=False`` treats every slice
    as isolated (training uses it so the network learns both cases). ``buffer``, a float32
    tensor of at least ``(stop - start) * 9 * H * W`` elements, receives the stacks instead of a
    fresh allocation (reused batch after batch: no new 75 MB array per batch of 8 at 512²);
    the result is then a view of it, valid until the next call with the same buffer.
    """
    n = pixels.shape[0]
    stop = n if stop is None else stop
    lo, hi = max(0, start - CONTEXT), min(n, stop + CONTEXT)
    block = torch.from_numpy(np.ascontiguousarray(pixels[lo:hi], dtype=np.float32))
    with torch.inference_mode():
        res = filters(block[:, None])  # (m, 3, H, W)
    count = stop - start
    rows, cols = res.shape[-2:]
    all_cells = []
    sigmas = torch.empty((count, 1, N_FILTERS, 1, 1), dtype=torch.float32)
    with torch.inference_mode():
        for i, z in enumerate(range(start, stop)):
            cells = body_cells(pixels[z], modality)
            sigmas[i, 0, :, 0, 0] = _noise_scale(res[z - lo], cells)
            all_cells.append(cells)
        windows = _context_windows(res, start - lo, count, context)
        # each neighbour is divided by its centre slice's noise level: one division for the batch
        shape = (count, 2 * CONTEXT + 1, N_FILTERS, rows, cols)
        size = count * IN_CHANNELS * rows * cols
        if buffer is not None and buffer.numel() >= size:
            stack = torch.div(windows, sigmas, out=buffer.view(-1)[:size].view(shape))
        else:
            stack = torch.div(windows, sigmas)
        stack.clamp_(-TRUNCATE, TRUNCATE)
    return Prepared(stack.view(count, IN_CHANNELS, rows, cols), np.stack(all_cells))
