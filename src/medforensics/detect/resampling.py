"""Resampling traces: pixels that were re-interpolated after the scanner reconstructed them.

Why it matters. CT-GAN's published pipeline (Mirsky et al., USENIX Security 2019) does not edit a
scan in place: it zooms the **whole** scan to 1 mm isotropic voxels with a cubic spline, in-paints
there, and zooms the whole scan back before writing it out. Any tool that resizes, rotates or
re-grids the pixels does the same kind of thing. A scanner never does: a CT slice is
reconstructed directly on its own pixel grid. So a series whose pixels carry an interpolation
trace has been processed after acquisition, whatever was done to it in between.

The trace. An image zoomed by a factor that is not an integer has pixels that fall at a phase of
the source grid that repeats with the column (and row) index: some output pixels copy a source
pixel, others are averages of two or more. The averaged ones have less noise. So the mean size
of the noise residual (a second difference) varies **periodically** from column to column, and
from row to row, at the same frequency on both axes when pixels are square (Popescu & Farid
2005; Kirchner 2008). For a CT-GAN round trip of pixel spacing *s* mm through 1 mm the period is
``|s - round(s)|`` cycles per pixel (0.158 for s = 0.842). Nothing in an acquired CT makes a
column-periodic noise level on both axes at once, and the average over every body row of every
slice makes even a faint trace stand out of the noise.

What is computed (``interpolation_trace``): for up to ``MAX_SLICES`` slices, the mean absolute
second difference of every column (along rows) and of every row (along columns), over pixels
inside the body; each profile is divided by its running median (anatomy makes slow changes) and
its periodogram is taken. ``strength`` is the largest, over frequencies of at least
``MIN_FREQUENCY``, of the **weaker** of the two axes' peaks at that frequency, in units of the
axis's median spectral level. Averaged noise gives a spectrum of exponential-like values whose
maximum over a few hundred frequencies is about 10–30; a resampled series gives hundreds to
tens of thousands. ``benchmarks/dev_resampling.py`` prints the figures on real series.

It answers "were these pixels re-gridded?", not "is there a nodule that should not be there". When
they were, ``resampling_map`` looks for regions that lack the trace the rest of the series has
(pixels put back after the re-gridding: CT-GAN's touch-up pastes original pixels around each
edit) and reports them as ``local`` findings. ``auto`` adds its findings to CT results and raises
the score; it does not replace the pixel models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from medforensics.detect.base import Detector
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import ImageVolume

#: slices measured at most (evenly spaced): enough averaging, bounded time on long series
MAX_SLICES = 48
#: frequencies below this (periods over 25 px) are anatomy, not interpolation
MIN_FREQUENCY = 0.04
#: frequencies above this (periods near 2 px) are left out: lossy JPEG 2000's wavelet halving
#: leaves a period-2 pattern (0.498 c/px on each of 4 real volumes coded at 23:1), and a re-gridding
#: trace there would need 0.45–0.55 or 1.45–1.55 mm pixels
MAX_FREQUENCY = 0.45
#: codecs' grids (``_codec_grid``): a peak at an eighth at least this strong is examined, and a
#: companion at another eighth (or 1/2) this strong, and at least BLOCK_SHARE of the peak, marks
#: the grid
BLOCK_HARMONIC = 20.0
BLOCK_SHARE = 0.1
#: a block-grid peak is this wide either side, in units of the profile's resolution (1 / its
#: length): the Hann window's main lobe (2), the one-bin slack between axes, one more for luck
BLOCK_WIDTH = 4.0
#: running-median width that takes the anatomy's slow trend out of a profile
DETREND = 9
#: a profile needs this many pixels in a column (row) for that column (row) to count
MIN_PIXELS = 16
#: CT pixels above this HU are measured (air outside the patient is often clipped or padded)
CT_FLOOR_HU = -950.0
#: smallest in-plane size that gives a usable spectrum
MIN_SIZE = 64

#: logistic calibration of log10(strength) → probability, by a rule rather than a fit (the
#: two classes are separable on the data at hand, and a fit would put p = 0.5 just above the
#: authentic cases it saw): the strongest authentic trace of the Philips and Siemens series and
#: slices (17.9) gets p = 0.01, four times it p = 0.5. ``benchmarks/dev_resampling.py --fit``
#: derives it and checks it on the GE, LIDC and pydicom CT it did not see
CALIBRATION = (7.63, 1.856)  # (slope, log10 strength at p = 0.5)
OPERATING_POINT = OperatingPoint(manipulated_at=0.5, authentic_below=0.2)


@dataclass(frozen=True)
class Trace:
    """How strongly a volume's pixels show a periodic interpolation pattern."""

    strength: float  # the weaker axis's peak / median spectral level, at the common frequency
    frequency: float  # cycles per pixel of that peak
    slices: int  # slices measured
    expected: float | None  # where a 1 mm round trip (CT-GAN) would put it, if spacing is known
    block_grid: bool = False  # a codec's grid (JPEG blocks, JPEG 2000 levels) was looked past
    #: the per-position sums it was measured from (``resampling_map`` reuses them)
    sums: AxisSums | None = field(default=None, repr=False, compare=False)


def expected_frequency(spacing_mm: float, grid_mm: float = 1.0) -> float | None:
    """Cycles per pixel of the trace left by re-gridding ``spacing_mm`` pixels via ``grid_mm``."""
    if not math.isfinite(spacing_mm) or spacing_mm <= 0:
        return None
    ratio = spacing_mm / grid_mm
    return abs(ratio - round(ratio))


def measured(image: np.ndarray, modality: str) -> np.ndarray:
    if modality == "CT":
        return image > CT_FLOOR_HU
    finite = image[np.isfinite(image)]
    floor = float(finite.min()) if finite.size else 0.0
    return image > floor  # everything but padding at the minimum


@dataclass(frozen=True)
class AxisSums:
    """|second difference| summed over the measured pixels of the sampled slices, per position.

    ``cols[c]`` sums the differences taken along rows at image column ``c + 1``; ``rows[r]``
    those taken along columns at image row ``r + 1``; the counts say how many pixels each holds.
    """

    cols: np.ndarray
    col_count: np.ndarray
    rows: np.ndarray
    row_count: np.ndarray
    slices: int


def axis_sums(pixels: np.ndarray, modality: str) -> AxisSums:
    """``AxisSums`` over up to ``MAX_SLICES`` evenly spaced slices."""
    n, rows, cols = pixels.shape
    picks = np.unique(np.linspace(0, n - 1, min(n, MAX_SLICES)).round().astype(int))
    col_sum, col_count = np.zeros(cols - 2), np.zeros(cols - 2)
    row_sum, row_count = np.zeros(rows - 2), np.zeros(rows - 2)
    for z in picks:
        image = np.asarray(pixels[z], dtype=np.float32)
        keep = measured(image, modality)
        # second difference along each row (varies with the column) and along each column
        d_cols = np.abs(image[:, 2:] - 2 * image[:, 1:-1] + image[:, :-2])
        k_cols = keep[:, 2:] & keep[:, 1:-1] & keep[:, :-2]
        col_sum += np.where(k_cols, d_cols, 0).sum(axis=0)
        col_count += k_cols.sum(axis=0)
        d_rows = np.abs(image[2:] - 2 * image[1:-1] + image[:-2])
        k_rows = keep[2:] & keep[1:-1] & keep[:-2]
        row_sum += np.where(k_rows, d_rows, 0).sum(axis=1)
        row_count += k_rows.sum(axis=1)
    return AxisSums(col_sum, col_count, row_sum, row_count, len(picks))


def _mean_profile(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean where enough pixels were measured, trimmed to that span (may be empty)."""
    ok = count >= MIN_PIXELS
    if not ok.any():
        return np.zeros(0)
    idx = np.flatnonzero(ok)
    total, count, ok = (
        total[idx[0] : idx[-1] + 1],
        count[idx[0] : idx[-1] + 1],
        ok[idx[0] : idx[-1] + 1],
    )
    profile = np.where(ok, total / np.maximum(count, 1), np.nan)
    return np.where(ok, profile, np.nanmedian(profile))


def detrend(profile: np.ndarray) -> np.ndarray:
    """``profile`` relative to its running median, minus one (anatomy's slow changes removed)."""
    trend = ndimage.median_filter(profile, size=DETREND, mode="nearest")
    return profile / np.maximum(trend, 1e-6) - 1.0


def _spectrum(profile: np.ndarray, n_fft: int) -> np.ndarray:
    """Periodogram of the detrended profile on ``n_fft // 2 + 1`` bins, in median units."""
    relative = detrend(profile)
    power = np.abs(np.fft.rfft(relative * np.hanning(len(relative)), n=n_fft)) ** 2
    freqs = np.fft.rfftfreq(n_fft)
    level = float(np.median(power[freqs >= MIN_FREQUENCY]))
    return power / max(level, 1e-12)


def interpolation_trace(volume: ImageVolume) -> Trace | None:
    """The trace of ``volume``, or None when it is too small or has too little to measure."""
    pixels = volume.pixels
    if pixels.ndim != 3 or min(pixels.shape[1:]) < MIN_SIZE:
        return None
    sums = axis_sums(pixels, volume.modality)
    along_cols = _mean_profile(sums.cols, sums.col_count)
    along_rows = _mean_profile(sums.rows, sums.row_count)
    if min(len(along_cols), len(along_rows)) < MIN_SIZE:
        return None
    n_fft = 2 ** math.ceil(math.log2(max(len(along_cols), len(along_rows))))
    freqs = np.fft.rfftfreq(n_fft)
    # a peak may straddle two bins differently on the two axes: allow one bin of slack
    cols_power = ndimage.maximum_filter1d(_spectrum(along_cols, n_fft), 3)
    rows_power = ndimage.maximum_filter1d(_spectrum(along_rows, n_fft), 3)
    full = np.where(freqs >= MIN_FREQUENCY, np.minimum(cols_power, rows_power), 0.0)
    joint = np.where(freqs <= MAX_FREQUENCY, full, 0.0)
    peak = int(np.argmax(joint))
    spacing = volume.spacing[2] if len(volume.spacing) == 3 else math.nan
    expected = expected_frequency(float(spacing))
    width = BLOCK_WIDTH / min(len(along_cols), len(along_rows))
    blocks = _codec_grid(full, freqs, peak, width, expected)
    if blocks:  # a codec's grid, not a re-gridding: look past it
        joint = np.where(_near_eighths(freqs, width), 0.0, joint)
        peak = int(np.argmax(joint))
    return Trace(
        strength=float(joint[peak]),
        frequency=float(freqs[peak]),
        slices=sums.slices,
        expected=expected,
        block_grid=blocks,
        sums=sums,
    )


def _near_eighths(freqs: np.ndarray, width: float) -> np.ndarray:
    """Frequencies within ``width`` cycles per pixel of 1/8, 2/8 or 3/8."""
    eighths = np.array([1, 2, 3]) / 8.0
    return np.min(np.abs(freqs[:, None] - eighths[None, :]), axis=1) <= width


def _codec_grid(
    full: np.ndarray, freqs: np.ndarray, peak: int, width: float, expected: float | None
) -> bool:
    """Whether a peak at an eighth of a cycle per pixel is a codec's grid, not a re-gridding.

    JPEG's 8×8 blocks peak at 1/8, 2/8 and 3/8 together, lossy JPEG 2000's wavelet levels at
    1/2, 1/4 and 1/8. A re-gridding trace lands on an eighth only when the pixel spacing puts it
    there (0.625, 0.75 or 0.875 mm through 1 mm) and has no such companions. So a strong peak at
    an eighth is a grid unless the spacing predicts it there and no companion is present.
    """
    if full[peak] < BLOCK_HARMONIC or not _near_eighths(freqs[peak : peak + 1], width)[0]:
        return False
    floor = max(BLOCK_HARMONIC, BLOCK_SHARE * float(full[peak]))
    companions = [k / 8.0 for k in (1, 2, 3, 4) if abs(freqs[peak] - k / 8.0) > width]
    for centre in companions:
        window = np.abs(freqs - centre) <= width
        if window.any() and float(full[window].max()) >= floor:
            return True
    predicted = expected is not None and abs(freqs[peak] - expected) <= width
    return not predicted


def probability(strength: float) -> float:
    """Calibrated probability that the pixels were re-gridded, from a trace's strength."""
    slope, middle = CALIBRATION
    z = slope * (math.log10(max(strength, 1e-6)) - middle)
    return float(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))


def describe_trace(trace: Trace) -> str:
    period = 1.0 / trace.frequency if trace.frequency > 0 else math.inf
    text = (
        f"the noise level repeats every {period:.2f} pixels along both rows and columns "
        f"(strength {trace.strength:.0f}, over {trace.slices} slice(s)): the pixels were "
        "re-interpolated after reconstruction (resized or re-gridded), which scanners never do"
    )
    if trace.expected is not None and abs(trace.frequency - trace.expected) <= 0.01:
        text += (
            "; the period is the one a round trip through 1 mm voxels leaves (CT-GAN's pipeline)"
        )
    return text


@register_detector
class ResamplingDetector(Detector):
    """Whole-volume check for an interpolation trace (resized or re-gridded pixels)."""

    name = "resampling"
    modalities = ()

    def __init__(self, locate: bool = True) -> None:
        #: map where a re-gridded series lacks the trace (``resampling_map``) when flagged
        self.locate = locate

    def detect(self, volume: ImageVolume) -> Detection:
        return self.detect_trace(volume)[0]

    def detect_trace(self, volume: ImageVolume) -> tuple[Detection, Trace | None]:
        """The detection and the trace it came from (``None`` when none could be measured)."""
        trace = interpolation_trace(volume)
        if trace is None:
            return Detection.not_assessed(
                self.name, "too small or too little signal to measure an interpolation trace"
            ), None
        score = probability(trace.strength)
        verdict = OPERATING_POINT.verdict(score)
        findings: list[Finding] = []
        anomaly_map = None
        notes = [f"interpolation trace strength {trace.strength:.1f} at {trace.frequency:.3f} c/px"]
        if trace.block_grid:
            notes.append(
                "a JPEG 8x8 block grid was seen and left out (lossy JPEG, not re-gridding)"
            )
        if verdict == "manipulated" and self.locate:
            from medforensics.detect.resampling_map import CELL, missing_trace

            anomaly_map, findings = missing_trace(volume.pixels, volume.modality, trace, score)
            notes.append(
                f"{len(findings)} region(s) where the trace is missing"
                if findings
                else "no region where the trace is missing could be seen"
            )
        if verdict != "authentic":
            n, rows, cols = volume.shape
            findings.append(
                Finding(
                    kind="global",
                    score=round(score, 4),
                    slice=n // 2,
                    row=rows // 2,
                    col=cols // 2,
                    detail=describe_trace(trace),
                )
            )
        detection = Detection(
            detector=self.name,
            score=score,
            verdict=verdict,
            findings=findings,
            anomaly_map=anomaly_map,
            map_stride=CELL if anomaly_map is not None else 1,
            notes=notes,
        )
        return detection, trace

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": "training-free periodic interpolation trace (resampling)",
            "calibration": {"slope": CALIBRATION[0], "log10_strength_at_half": CALIBRATION[1]},
            "operating_point": {
                "manipulated_at": OPERATING_POINT.manipulated_at,
                "authentic_below": OPERATING_POINT.authentic_below,
            },
        }
