"""``ct-local``, ``xr-local``, ``mr-local``: the trained local forensic network as a detector.

One network design (``local_net``), one model per modality family: ``ct-local`` for CT,
``xr-local`` for radiographs (CR, DX and other projection images, and PNG/JPEG/TIFF inputs, which
carry no modality and are most often radiographs) and ``mr-local`` for MR. Each loads its own
shipped checkpoint, whose model card says what it was trained on.

The network (``local_net``) gives a manipulation logit for every 8×8-pixel cell of every slice,
looking at the noise residual of the slice and its two neighbours. Cells outside the body are not
scored. The volume's statistic is the largest cell logit; a Platt calibration fitted on held-out
patients turns it into a probability, and the operating point (threshold at a chosen false-positive
rate on authentic validation series) turns that into a verdict. Findings are the peaks of the
cell map after non-maximum suppression. Slices are processed a few at a time, so memory stays
flat however long the series is.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import ndimage

from medforensics.detect.base import Detector
from medforensics.detect.calibration import PlattCalibration
from medforensics.detect.checkpoint import CheckpointError, load_checkpoint
from medforensics.detect.local_net import (
    IN_CHANNELS,
    STRIDE,
    ResidualFCN,
    ResidualFilter,
    fuse_batch_norm,
    prepare,
)
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import PROJECTION_MODALITIES, ImageVolume
from medforensics.utils.hashing import file_sha256

DEFAULT_CHECKPOINT = "ct-local.pt"
#: slices per network batch (memory stays flat: ~9 × H × W floats per slice)
BATCH = 8
#: fewer body cells than this and the image cannot be assessed
MIN_CELLS = 16


def shipped_checkpoint(name: str) -> Path:
    """Path of a checkpoint shipped in ``medforensics/models``."""
    return Path(str(resources.files("medforensics.models").joinpath(name)))


def volume_logits(
    net: ResidualFCN, filters: ResidualFilter, volume: ImageVolume, batch: int = BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Cell logits ``(slices, H/8, W/8)`` and body-cell mask, ``batch`` slices at a time."""
    pixels = volume.pixels
    n, rows, cols = pixels.shape
    r8, c8 = (rows // STRIDE) * STRIDE, (cols // STRIDE) * STRIDE
    logits = np.full((n, r8 // STRIDE, c8 // STRIDE), -np.inf, dtype=np.float32)
    cells = np.zeros(logits.shape, dtype=bool)
    if r8 < 4 * STRIDE or c8 < 4 * STRIDE:
        return logits, cells
    view = pixels[:, :r8, :c8]
    with torch.inference_mode():
        buffer = torch.empty(min(batch, n) * IN_CHANNELS * r8 * c8, dtype=torch.float32)
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            prepared = prepare(view, volume.modality, filters, start, stop, buffer=buffer)
            out = net(prepared.residuals)[:, 0].numpy()
            logits[start:stop] = np.where(prepared.cells, out, -np.inf)
            cells[start:stop] = prepared.cells
    return logits, cells


def analyse(
    net: ResidualFCN, filters: ResidualFilter, volume: ImageVolume, peaks: int = 3
) -> tuple[float, list[tuple[int, int, int]]]:
    """The volume statistic (NaN when too little body) and its top ``peaks``, in one pass."""
    logits, cells = volume_logits(net, filters, volume)
    if int(cells.sum()) < MIN_CELLS:
        return math.nan, []
    return float(logits[cells].max()), LocalDetector.peak_cells(logits, cells, peaks)


@register_detector
class LocalDetector(Detector):
    """Trained 2.5D noise-residual FCN for CT: dense manipulation map and localised findings."""

    name = "ct-local"
    modalities: ClassVar[tuple[str, ...]] = ("CT",)
    #: the checkpoint in ``medforensics/models`` used when none is given
    default_checkpoint = DEFAULT_CHECKPOINT
    #: the ``train --modality`` value that builds this detector's model
    train_modality = "CT"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        max_findings: int = 5,
        batch: int = BATCH,
    ) -> None:
        default = self.default_checkpoint
        path = Path(checkpoint) if checkpoint is not None else shipped_checkpoint(default)
        if checkpoint is None and not path.is_file():
            raise CheckpointError(
                f"the shipped model {default} is missing from {path.parent}; train one with "
                f"`medforensics train --modality {self.train_modality} --authentic DIR --out "
                f"{default}` and pass it with --checkpoint"
            )
        state, meta = load_checkpoint(path)
        self.path = path
        self.meta: dict[str, Any] = meta
        net = ResidualFCN(width=int(meta.get("architecture", {}).get("width", 32)))
        net.load_state_dict(state)
        self.net = fuse_batch_norm(net)  # inference only: BatchNorm folded into the convs
        self.filters = ResidualFilter()
        calibration = meta.get("calibration", {"a": 1.0, "b": 0.0})
        self.calibration = PlattCalibration(float(calibration["a"]), float(calibration["b"]))
        point = meta.get("operating_point", {})
        self.operating_point = OperatingPoint(
            manipulated_at=float(point.get("manipulated_at", 0.5)),
            authentic_below=float(point.get("authentic_below", 0.5)),
            target_fpr=point.get("target_fpr"),
        )
        self.max_findings = max_findings
        self.batch = batch
        self.modalities_trained = tuple(meta.get("modalities", list(self.modalities)))

    def supports(self, volume: ImageVolume) -> bool:
        return volume.modality in self.modalities_trained

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "checkpoint": self.path.name,
            "checkpoint_sha256": file_sha256(self.path),
            **self.meta.get("card", {}),
        }

    def statistic(self, volume: ImageVolume) -> float:
        """The raw volume statistic: the largest body-cell logit (NaN when nothing to score)."""
        return analyse(self.net, self.filters, volume, peaks=0)[0]

    def detect(self, volume: ImageVolume) -> Detection:
        if not self.supports(volume):
            return Detection.not_assessed(
                self.name,
                f"{self.name} was trained on {', '.join(self.modalities_trained)} only; this "
                f"image is {volume.modality} (use the default detector, which routes by "
                "modality)",
            )
        logits, cells = volume_logits(self.net, self.filters, volume, self.batch)
        n_cells = int(cells.sum())
        if n_cells < MIN_CELLS:
            return Detection.not_assessed(
                self.name,
                f"only {n_cells} cells of {STRIDE}x{STRIDE} pixels lie inside the imaged body "
                f"(at least {MIN_CELLS} are needed): too small or blank to assess",
            )
        statistic = float(logits[cells].max())
        score = self.calibration.probability(statistic)
        cell_prob = np.where(cells, self.calibration(np.where(cells, logits, -50.0)), 0.0).astype(
            np.float32
        )
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.operating_point.verdict(score),
            findings=self._findings(logits, cells),
            anomaly_map=cell_prob,
            map_stride=STRIDE,
            notes=[f"most suspicious cell logit {statistic:.2f} over {n_cells} body cells"],
        )

    @staticmethod
    def peak_cells(logits: np.ndarray, cells: np.ndarray, count: int) -> list[tuple[int, int, int]]:
        """Up to ``count`` local maxima ``(slice, row, col)`` in pixels, most suspicious first.

        Non-maximum suppression: a peak within 2 slices and 4 cells of a stronger one is skipped.
        """
        masked = np.where(cells, logits, -np.inf)
        order = np.argsort(masked, axis=None)[::-1]
        taken: list[tuple[int, int, int]] = []
        for flat in order[:4096]:
            z, y, x = (int(v) for v in np.unravel_index(flat, masked.shape))
            if not np.isfinite(masked[z, y, x]) or len(taken) >= count:
                break
            if any(
                abs(z - tz) <= 2 and abs(y - ty) <= 4 and abs(x - tx) <= 4 for tz, ty, tx in taken
            ):
                continue
            taken.append((z, y, x))
        return [(z, y * STRIDE + STRIDE // 2, x * STRIDE + STRIDE // 2) for z, y, x in taken]

    def _findings(self, logits: np.ndarray, cells: np.ndarray) -> list[Finding]:
        findings: list[Finding] = []
        for z, row, col in self.peak_cells(logits, cells, self.max_findings):
            y, x = row // STRIDE, col // STRIDE
            peak = float(logits[z, y, x])
            prob = self.calibration.probability(peak)
            if prob < 0.05:
                break
            # extent: connected cells within a factor 2 (in odds) of the peak, in this slice
            region, _ = ndimage.label(logits[z] >= peak - math.log(2.0))
            size = int((region == region[y, x]).sum()) if region[y, x] else 1
            findings.append(
                Finding(
                    kind="local",
                    score=prob,
                    slice=z,
                    row=row,
                    col=col,
                    radius=float(STRIDE * max(1.0, math.sqrt(size / math.pi))),
                    detail="noise texture inconsistent with an unedited acquisition",
                )
            )
        return findings


@register_detector
class XrLocalDetector(LocalDetector):
    """The local forensic network trained for radiographs (one image, no slice context)."""

    name = "xr-local"
    modalities = PROJECTION_MODALITIES
    default_checkpoint = "xr-local.pt"
    train_modality = "XR"


@register_detector
class MrLocalDetector(LocalDetector):
    """The local forensic network trained for MR slices (2.5D, like CT)."""

    name = "mr-local"
    modalities = ("MR",)
    default_checkpoint = "mr-local.pt"
    train_modality = "MR"


#: ``train --modality`` value → the detector class whose model it builds
LOCAL_DETECTORS: dict[str, type[LocalDetector]] = {
    cls.train_modality: cls for cls in (LocalDetector, XrLocalDetector, MrLocalDetector)
}
