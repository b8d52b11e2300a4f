"""Was this image lossy-compressed? Header evidence and a JPEG 2000 trace in the pixels.

Why it matters. The texture models (``ct-local``, ``classical``) read the fine noise of an
acquisition. Lossy compression smooths and quantises that noise unevenly, so a compressed
authentic image looks locally inconsistent. ``python benchmarks/dev_lossy.py`` measured it on
51 authentic CT units (held-out GE slices, LIDC, pydicom's CTs, Philips and Siemens chunks):
``auto`` called 1 of 51 ``manipulated`` as acquired, 3 after JPEG 2000 at 20:1, and 28 to 33
after JPEG 2000 at 50:1 to 340:1 or JPEG at quality 90 or 75 through an 8-bit window. Archives
do keep older studies lossy-compressed, so ``auto`` uses this module to stop short of
``manipulated`` on texture evidence alone (see ``auto.with_compression``).

Evidence, strongest first:

* **declared**: a lossy transfer syntax now, or ``LossyImageCompression`` = 01 (DICOM requires
  a writer to keep that flag once an image was lossy-compressed, even after decompression);
* **JPEG 2000 trace**: JPEG 2000's irreversible coder quantises the CDF 9/7 wavelet
  coefficients, finest level first. Re-analysed with the same filter on the same grid (odd rows
  and columns carry the finest high-pass band), a decoded image shows only the rounding to
  integers there: the median magnitude of that band is about 0.38 stored units (uniform rounding
  error through the filter's gain). On the 51 units above: 0.34 to 0.43 in all of them after
  JPEG 2000 at 20:1 to 340:1, and in 43 of 51 at 10:1 (the others keep part of that band at
  that ratio); 0.67 (a soft-kernel Siemens neck CT) to 58 as acquired, 1.8 or more after JPEG.
  An image smoothed below its value grid by other means also lands here, and the texture
  models cannot judge that either;
* **JPEG block grid**: the interpolation-trace check (``resampling``) reports the 8x8 grid of
  a block codec when it sees one (``Trace.block_grid``); ``auto`` passes that on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from medforensics.io.types import ImageVolume

#: transfer syntaxes whose coding loses information (JPEG baseline/extended, JPEG-LS near-
#: lossless, JPEG 2000 and HTJ2K irreversible, MPEG/HEVC video)
LOSSY_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.203",
    }
)
#: CDF 9/7 analysis high-pass filter (JPEG 2000 irreversible), centred on odd samples
HIGH_PASS_97 = np.array(
    [
        0.091271763114,
        -0.057543526229,
        -0.591271763114,
        1.115087052457,
        -0.591271763114,
        -0.057543526229,
        0.091271763114,
    ]
)
_KERNEL = HIGH_PASS_97.astype(np.float32)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
#: median |finest 9/7 band| (stored units) at or below which the image has no fine noise above
#: its value grid: 0.34-0.41 after JPEG 2000, 0.67 and more as acquired (module notes)
WAVELET_FLOOR = 0.5
#: CT tissue (HU) whose noise is measured: soft tissue and lung parenchyma, not air padding
#: (constant, so no noise at all) and not bone edges
CT_TISSUE_HU = (-500.0, 300.0)
#: slices sampled, evenly along the series
MAX_SLICES = 8
#: fewer measured coefficients than this and the pixels say nothing
MIN_COEFFICIENTS = 2000


@dataclass(frozen=True)
class Compression:
    """What is known about an image's lossy-compression history.

    Attributes:
        declared: the header says so (lossy transfer syntax, or LossyImageCompression 01).
        wavelet_level: median |finest CDF 9/7 band| on the JPEG 2000 grid, in stored units;
            ``None`` when it could not be measured.
        block_grid: a JPEG 8x8 block grid was seen in the pixels.
    """

    declared: bool = False
    wavelet_level: float | None = None
    block_grid: bool = False

    @property
    def wavelet_trace(self) -> bool:
        return self.wavelet_level is not None and self.wavelet_level <= WAVELET_FLOOR

    @property
    def lossy(self) -> bool:
        return self.declared or self.wavelet_trace or self.block_grid

    def reasons(self) -> list[str]:
        """Plain words for each piece of evidence."""
        out = []
        if self.declared:
            out.append("the DICOM header declares lossy compression")
        if self.wavelet_trace:
            out.append(
                f"the finest JPEG 2000 wavelet band holds only rounding ({self.wavelet_level:.2f}"
                f" stored units; acquired noise gives 0.67 and more): JPEG 2000 lossy "
                "compression, or smoothing below the value grid"
            )
        if self.block_grid:
            out.append("a JPEG 8x8 block grid shows in the pixels")
        return out


def declared_lossy(volume: ImageVolume) -> bool:
    """Lossy compression now (transfer syntax) or earlier (LossyImageCompression = 01)."""
    flagged = volume.attributes.get("LossyImageCompression", "").strip() == "01"
    return flagged or bool(set(volume.transfer_syntax) & LOSSY_SYNTAXES)


def wavelet_level(volume: ImageVolume) -> float | None:
    """Median |finest CDF 9/7 diagonal band| on the JPEG 2000 grid, in stored units (CT only).

    Measured over CT tissue (``CT_TISSUE_HU``, eroded so no coefficient straddles an edge) of
    up to ``MAX_SLICES`` slices; ``None`` for other modalities or too little tissue.
    """
    if volume.modality != "CT" or min(volume.shape[1:]) < 32:
        return None
    try:
        slope = float(volume.attributes.get("RescaleSlope", "1") or 1.0)
    except ValueError:
        slope = 1.0
    slope = slope if slope > 0 else 1.0
    picks = np.unique(np.linspace(0, volume.shape[0] - 1, min(volume.shape[0], MAX_SLICES)))
    values = []
    for z in picks.round().astype(int):
        plane = np.asarray(volume.pixels[z], dtype=np.float32)
        tissue = ((plane > CT_TISSUE_HU[0]) & (plane < CT_TISSUE_HU[1])).view(np.uint8)
        eroded = cv2.erode(
            tissue, _CROSS, iterations=4, borderType=cv2.BORDER_CONSTANT, borderValue=0
        )
        inside = np.asarray(eroded).view(bool)[1::2, 1::2]
        if not inside.any():
            continue
        # separable and symmetric, so correlation is convolution; OpenCV's reflect-101 border
        # is the whole-sample symmetric extension JPEG 2000 uses
        band = cv2.sepFilter2D(plane / np.float32(slope), cv2.CV_32F, _KERNEL, _KERNEL)
        values.append(np.abs(band[1::2, 1::2][inside]))
    if not values or sum(v.size for v in values) < MIN_COEFFICIENTS:
        return None
    return float(np.median(np.concatenate(values)))


def assess(volume: ImageVolume, block_grid: bool = False) -> Compression:
    """The compression evidence for ``volume`` (``block_grid`` from the resampling check)."""
    return Compression(
        declared=declared_lossy(volume),
        wavelet_level=wavelet_level(volume),
        block_grid=block_grid,
    )


__all__ = [
    "LOSSY_SYNTAXES",
    "WAVELET_FLOOR",
    "Compression",
    "assess",
    "declared_lossy",
    "wavelet_level",
]
