"""``auto``: the default detector — routes each image to the model built for it.

* CT → ``ct-local`` (the trained local forensic network) **and** ``copy-move`` (training-free:
  noise that repeats exactly within the series, a clone or a region copied from elsewhere in
  it): the network was trained on noise-matched attacks and misses blunt copies, which the
  exact-repeat check catches. The combined score is the larger of the two probabilities and the
  verdict the more suspicious of the two. Until this release the second CT model was the
  trained ``classical`` baseline. ``python benchmarks/dev_ct_route.py``: on the GE and LIDC
  slices the training-free pair flags as many blunt and simulated edits and ranks the
  simulator's attacks slightly higher (AUC 0.602 against 0.590), and it calls a Toshiba head CT
  authentic, which ``classical`` called ``manipulated`` (as it did lossy-compressed CT, see
  ``compression``). ``classical`` stays available by name;
* radiographs (CR, DX and the other projection modalities, and PNG/JPEG/TIFF images, which
  carry no modality and are most often radiographs) and MR → ``noise-residual`` (training-free
  local noise consistency), ``copy-move`` (training-free: noise that repeats exactly within the
  image) **and** ``synthetic-2d`` (frequency and noise features that tell a fully generated
  image from an acquired one), combined the same way. The local network can be
  trained for radiographs or MR (``medforensics train --modality XR|MR``: ``xr-local``,
  ``mr-local``), but no such model ships: trained on the few radiographs and MR images we may
  use, it scored at chance on held-out images (docs/xray-mri.md), and a model at chance would
  only add false alarms. A site that trains one passes it with ``routes``;
* a CT localizer (scout, topogram) is a projection image: it takes the radiograph route, and
  none of the CT checks below (``route_key``);
* every other modality, or when a route's models are missing → ``noise-residual``.

CT inputs are also checked for an interpolation trace (``resampling``): pixels re-gridded after
reconstruction, as CT-GAN's pipeline re-grids the whole scan through 1 mm voxels and back. A
clear trace makes the verdict ``manipulated`` and lifts the score (a noisy-OR with the trace's
probability, which keeps the pixel models' order), with a ``global`` finding after the pixel
findings; a weak one makes an ``authentic`` verdict ``inconclusive``.

CT inputs are also checked for tissue without acquisition noise (``noise_hole``: a flat fill,
a lesion blurred away, classical in-painting), which no scanner writes. Like the trace, it only
adds evidence: a clear hole makes the verdict ``manipulated`` and its findings lead. So does
a region whose noise level is far from the tissue around it (``noise_mismatch``: a patch pasted
from another scan with its own noise, which ``ct-local`` does not see).

On CT whose pixels were lossy-compressed (``compression``: declared in the header, JPEG 2000's
wavelet grid or JPEG's block grid in the pixels), a texture ``manipulated`` becomes
``inconclusive`` with the score at most 0.5: compression alone makes authentic CT look locally
inconsistent to the texture models (``with_compression``). The interpolation trace and the
signature, which survive compression, are applied after it.

DICOM inputs also go through the ``metadata`` consistency checks. Their findings are added to
the result; they never lower a verdict, and a strong one (score ≥ 0.5) turns an ``authentic``
verdict into ``inconclusive`` with a note, because a header inconsistency is a reason for a person
to look but not, by itself, proof that pixels were changed. The score stays the pixel model's
calibrated probability. The result names the model that answered.

DICOM inputs are also checked for digital signatures (``signature``). A signature that does not
verify is proof that a signed file changed after signing: its findings are added, the verdict
becomes ``manipulated`` and the score at least the signature's (1.0). Valid signatures and
unsigned files change nothing but the notes: the pixels are still judged by the pixel models.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from medforensics.detect.base import Detector
from medforensics.detect.compression import Compression, assess
from medforensics.detect.noise_hole import NoiseHoleDetector
from medforensics.detect.noise_mismatch import NoiseMismatchDetector
from medforensics.detect.registry import create_detector, register_detector
from medforensics.detect.resampling import ResamplingDetector, Trace
from medforensics.detect.types import Detection, OperatingPoint
from medforensics.io.types import PROJECTION_MODALITIES, ImageVolume

#: modality → detector names (combined as described above); anything else uses FALLBACK
ROUTES: dict[str, tuple[str, ...]] = {
    "CT": ("ct-local", "copy-move"),
    "MR": ("noise-residual", "copy-move", "synthetic-2d"),
    **{
        modality: ("noise-residual", "copy-move", "synthetic-2d")
        for modality in PROJECTION_MODALITIES
    },
}
FALLBACK = "noise-residual"
#: metadata findings at or above this score make an authentic verdict inconclusive
METADATA_ALERT = 0.5
#: modalities checked for an interpolation trace: scanners never re-grid CT slices, whereas MR
#: scanners interpolate by design and radiographs are routinely resized on export
RESAMPLING_MODALITIES = ("CT",)
#: modalities whose texture verdicts stop at ``inconclusive`` on lossy-compressed pixels
#: (``compression``): measured for CT (``benchmarks/dev_lossy.py``)
COMPRESSION_MODALITIES = ("CT",)
#: the score given at most to a lossy-compressed image on texture evidence alone
LOSSY_SCORE_CAP = 0.5
#: modalities checked for noise-free tissue (``noise_hole``): CT, whose noise is everywhere
NOISE_HOLE_MODALITIES = ("CT",)
#: modalities checked for a region whose noise level is far from its surroundings'
#: (``noise_mismatch``): CT, where a patch pasted with another scan's noise escapes ``ct-local``
NOISE_MISMATCH_MODALITIES = ("CT",)
#: a clear trace's share in the noisy-OR with the pixel score (below 1, so that the pixel models
#: still order re-gridded series, over the top 0.02 of the scale)
TRACE_WEIGHT = 0.98


@register_detector
class AutoDetector(Detector):
    """Modality-aware routing to the right model, plus DICOM consistency checks."""

    name = "auto"
    modalities = ()

    def __init__(
        self,
        routes: dict[str, tuple[str, ...]] | None = None,
        metadata: bool = True,
        signature: bool = True,
        resampling: bool = True,
        noise_hole: bool = True,
        noise_mismatch: bool = True,
    ) -> None:
        self.routes = {**ROUTES, **(routes or {})}
        self.use_resampling = resampling
        self.use_noise_hole = noise_hole
        self.use_noise_mismatch = noise_mismatch
        self.use_metadata = metadata
        self.use_signature = signature
        self._cache: dict[str, Detector] = {}
        self._unavailable: dict[str, str] = {}
        self._pool: ThreadPoolExecutor | None = None

    def _get(self, name: str) -> Detector | None:
        if name in self._cache:
            return self._cache[name]
        if name in self._unavailable:
            return None
        try:
            detector = create_detector(name)
        except (KeyError, FileNotFoundError, ValueError, ImportError) as exc:
            self._unavailable[name] = str(exc)
            return None
        self._cache[name] = detector
        return detector

    def route(self, volume: ImageVolume) -> tuple[list[Detector], list[str]]:
        """The detectors for ``volume`` and notes on any fallback taken."""
        notes: list[str] = []
        chosen: list[Detector] = []
        key = route_key(volume)
        if key != volume.modality:
            notes.append(
                f"a {volume.modality} localizer (scout): a projection image, so it went to the "
                f"{key} route and not the checks made for tomographic slices"
            )
        for wanted in self.routes.get(key, (FALLBACK,)):
            detector = self._get(wanted)
            if detector is None:
                reason = self._unavailable.get(wanted, "not installed")
                notes.append(f"{wanted} unavailable ({reason})")
            elif detector.supports(volume):
                chosen.append(detector)
        if not chosen:
            fallback = self._get(FALLBACK)
            if fallback is None:
                raise RuntimeError(f"no detector available: {self._unavailable.get(FALLBACK)}")
            notes.append(f"used {FALLBACK}")
            chosen = [fallback]
        return chosen, notes

    def detect(self, volume: ImageVolume) -> Detection:
        chosen, notes = self.route(volume)
        key = route_key(volume)
        compression = assess(volume) if key in COMPRESSION_MODALITIES else None
        holes: Future[Detection] | None = None
        if self.use_noise_hole and key in NOISE_HOLE_MODALITIES:
            hole_checker = self._get("noise-hole")
            if isinstance(hole_checker, NoiseHoleDetector):
                # beside the pixel models: numpy and OpenCV release the GIL
                holes = self._submit(partial(hole_checker.detect, compression=compression), volume)
        mismatch: Future[Detection] | None = None
        if self.use_noise_mismatch and key in NOISE_MISMATCH_MODALITIES:
            level_checker = self._get("noise-mismatch")
            if isinstance(level_checker, NoiseMismatchDetector):
                mismatch = self._submit(
                    partial(level_checker.detect, compression=compression), volume
                )
        if len(chosen) == 1:
            detection = chosen[0].detect(volume)
        else:
            # side by side: torch and numpy release the GIL in their kernels, so two detectors
            # share two cores better than they take turns (measured: 28 -> 39 slices/s)
            futures = [self._submit(d.detect, volume) for d in chosen]
            detection = combine([f.result() for f in futures])
        detection.notes = notes + detection.notes
        traced: tuple[Detection, Trace | None] | None = None
        if self.use_resampling and key in RESAMPLING_MODALITIES:
            checker = self._get("resampling")
            if isinstance(checker, ResamplingDetector):
                traced = checker.detect_trace(volume)
        if holes is not None:
            detection = with_noise_hole(detection, holes.result())
        if mismatch is not None:
            detection = with_noise_mismatch(detection, mismatch.result())
        if compression is not None:
            block_grid = traced is not None and traced[1] is not None and traced[1].block_grid
            detection = with_compression(detection, replace(compression, block_grid=block_grid))
        if traced is not None:
            detection = with_resampling(detection, traced[0], declared=declares_derivation(volume))
        if self.use_metadata and volume.kind.startswith("dicom"):
            checker = self._get("metadata")
            if checker is not None:
                extra = checker.detect(volume)
                detection.findings = detection.findings + list(extra.findings)
                strong = [f for f in extra.findings if f.score >= METADATA_ALERT]
                if strong and detection.verdict == "authentic":
                    detection.verdict = "inconclusive"
                    detection.notes.append(
                        "pixels look authentic, but the DICOM header has inconsistencies "
                        "(see the metadata findings): a person should check the file's history"
                    )
        if self.use_signature and volume.kind.startswith("dicom"):
            checker = self._get("signature")
            if checker is not None:
                detection = with_signature(detection, checker.detect(volume))
        return detection

    def _submit(
        self, fn: Callable[[ImageVolume], Detection], volume: ImageVolume
    ) -> Future[Detection]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="auto")
        return self._pool.submit(fn, volume)

    def describe(self) -> dict[str, Any]:
        # each model once (radiograph modalities share one route), keyed by name
        names = dict.fromkeys(n for route in self.routes.values() for n in route)
        if self.use_resampling:
            names["resampling"] = None
        if self.use_noise_hole:
            names["noise-hole"] = None
        if self.use_noise_mismatch:
            names["noise-mismatch"] = None
        models = {n: d.describe() for n, d in ((n, self._get(n)) for n in names) if d is not None}
        return {"name": self.name, "routes": dict(self.routes), "models": models}


_RANK = {"authentic": 0, "inconclusive": 1, "manipulated": 2}


def with_signature(detection: Detection, signed: Detection) -> Detection:
    """``detection`` with the signature check's answer: notes always, verdict only if broken."""
    detection.notes = detection.notes + [f"signature: {note}" for note in signed.notes]
    if signed.verdict == "manipulated":
        detection.findings = list(signed.findings) + detection.findings
        detection.verdict = "manipulated"
        detection.score = max(detection.score, signed.score)
    return detection


def route_key(volume: ImageVolume) -> str:
    """The route ``volume`` takes: its modality, except that a CT localizer (scout, topogram:
    ImageType value 3 and on include LOCALIZER) is a projection image and takes the
    radiograph route (``DX``), since the CT models and checks assume tomographic slices."""
    image_type = volume.attributes.get("ImageType", "").upper().split("\\")
    if volume.modality == "CT" and "LOCALIZER" in image_type[2:]:
        return "DX"
    return volume.modality


def with_compression(detection: Detection, compression: Compression) -> Detection:
    """``detection`` (the texture models' answer) told that the pixels were lossy-compressed.

    Compression smooths and quantises noise unevenly, and the texture models read noise: on
    authentic CT after JPEG 2000 at 50:1 or JPEG at quality 90, ``auto`` said ``manipulated``
    for 28 to 33 of 51 units (``benchmarks/dev_lossy.py``). So on lossy pixels a texture
    ``manipulated`` becomes ``inconclusive`` and the score at most ``LOSSY_SCORE_CAP``: the
    models' calibration does not hold there. Evidence that survives compression (the
    interpolation trace, a broken signature) is applied afterwards and can still decide.
    """
    if not compression.lossy:
        return detection
    reasons = "; ".join(compression.reasons())
    if detection.verdict == "manipulated":
        detection.verdict = "inconclusive"
        detection.score = min(detection.score, LOSSY_SCORE_CAP)
        note = (
            f"lossy compression: {reasons}. The texture models flagged the image, but "
            "compression alone makes authentic images look locally inconsistent to them, so the "
            "flag is not proof: a person should compare with the uncompressed original"
        )
    else:
        note = f"lossy compression: {reasons}; fine traces of an edit may be gone with the noise"
    detection.notes = [*detection.notes, note]
    return detection


def with_noise_hole(detection: Detection, holes: Detection) -> Detection:
    """``detection`` with the noise-free-tissue check's answer (CT, see ``noise_hole``):
    ``with_evidence``."""
    from medforensics.detect.noise_hole import OPERATING_POINT

    return with_evidence(
        detection,
        holes,
        OPERATING_POINT,
        clear="a region of tissue carries no acquisition noise (see the first finding), which "
        "no scanner writes",
        weak="a small region of tissue with little acquisition noise: a person should look at it",
    )


def with_noise_mismatch(detection: Detection, mismatch: Detection) -> Detection:
    """``detection`` with the noise-level check's answer (CT, see ``noise_mismatch``):
    ``with_evidence``."""
    from medforensics.detect.noise_mismatch import OPERATING_POINT

    return with_evidence(
        detection,
        mismatch,
        OPERATING_POINT,
        clear="a region's noise level is far from the tissue around it (see the first "
        "finding), as in a patch taken from another scan",
        weak="a region whose noise level differs from its surroundings: a person should look",
    )


def with_evidence(
    detection: Detection, check: Detection, point: OperatingPoint, clear: str, weak: str
) -> Detection:
    """``detection`` with the answer of a training-free check that only adds evidence.

    A check that could not measure the image changes nothing but the notes. At or above its
    ``authentic_below`` it raises the score by a noisy-OR, ``1 - (1 - pixel) * (1 - check)``,
    and its findings lead (each is a located region); a clear answer makes the verdict
    ``manipulated`` (note ``clear``), a weak one turns ``authentic`` into ``inconclusive``
    (note ``weak``).
    """
    detection.notes = [*detection.notes, *(f"{check.detector}: {n}" for n in check.notes)]
    if check.score == 0.5 and check.verdict == "inconclusive" and not check.findings:
        return detection  # not assessed
    if check.score < point.authentic_below:
        return detection
    pixel = detection.score
    detection.score = 1.0 - (1.0 - pixel) * (1.0 - check.score)
    detection.findings = list(check.findings) + detection.findings
    return _escalate(
        detection, check.verdict, clear=f"pixel models: {pixel:.3f}; {clear}", weak=weak
    )


def declares_derivation(volume: ImageVolume) -> bool:
    """Whether the header says the pixels were derived from others (ImageType DERIVED/SECONDARY).

    A reformatted or resampled series that says so is a declared processing step, not a
    concealed one (CT-GAN keeps the original ORIGINAL\\PRIMARY headers).
    """
    image_type = volume.attributes.get("ImageType", "").upper().split("\\")
    return "DERIVED" in image_type[:1] or "SECONDARY" in image_type[1:2]


def with_resampling(detection: Detection, trace: Detection, declared: bool = False) -> Detection:
    """``detection`` with the interpolation-trace check's answer (CT only, see the module doc).

    A trace at or above the check's ``authentic_below`` raises the score by a noisy-OR of the two
    probabilities, ``1 - (1 - pixel) * (1 - TRACE_WEIGHT * trace)``: a clear trace puts the
    series above 0.5 (``manipulated``), and near 0.98 above the authentic series' pixel scores,
    while keeping the pixel models' order among re-gridded series (the weight keeps a 0.02
    span for it); a weak one nudges it. Regions where a re-gridded series lacks the trace
    (``local`` findings of the check) lead the findings, since they show where pixels were put
    back; the check's ``global`` finding goes last. When the header declares the pixels
    derived (``declared``), a trace is reported (finding, note) but changes neither score nor
    verdict beyond ``inconclusive``.
    """
    if trace.verdict == "inconclusive" and not trace.findings and trace.score == 0.5:
        return detection  # not assessed (too small): nothing to add
    from medforensics.detect.resampling import OPERATING_POINT

    detection.notes = detection.notes + [f"resampling: {note}" for note in trace.notes]
    if trace.score < OPERATING_POINT.authentic_below:
        return detection
    if declared:
        detection.findings = detection.findings + list(trace.findings)
        if detection.verdict == "authentic":
            detection.verdict = "inconclusive"
        detection.notes.append(
            "the pixels were re-interpolated, and the header declares them derived (ImageType): "
            "a declared processing step, so it is reported but not scored"
        )
        return detection
    pixel = detection.score
    detection.score = 1.0 - (1.0 - pixel) * (1.0 - TRACE_WEIGHT * trace.score)
    holes = [f for f in trace.findings if f.kind == "local"]
    rest = [f for f in trace.findings if f.kind != "local"]
    # a hole in the trace is direct evidence of where pixels were put back: it leads
    detection.findings = holes + detection.findings + rest
    if holes and trace.anomaly_map is not None:
        same = detection.anomaly_map is not None and (
            detection.anomaly_map.shape == trace.anomaly_map.shape
            and detection.map_stride == trace.map_stride
        )
        base = detection.anomaly_map if same else None
        detection.anomaly_map = (
            trace.anomaly_map if base is None else np.maximum(base, trace.anomaly_map)
        )
        detection.map_stride = trace.map_stride
    return _escalate(
        detection,
        trace.verdict,
        clear=f"pixel models: {pixel:.3f}; the pixels were re-interpolated after reconstruction "
        "(see the global finding), so the series is not as the scanner wrote it",
        weak="a weak interpolation trace: a person should check the file's history",
    )


def _escalate(detection: Detection, verdict: str, clear: str, weak: str) -> Detection:
    """``detection`` after a check that only adds evidence answered ``verdict``: a clear answer
    makes it ``manipulated`` (note ``clear``), a weak one turns ``authentic`` into
    ``inconclusive`` (note ``weak``)."""
    if verdict == "manipulated":
        detection.verdict = "manipulated"
        detection.notes.append(clear)
    elif detection.verdict == "authentic":
        detection.verdict = "inconclusive"
        detection.notes.append(weak)
    return detection


def combine(detections: list[Detection]) -> Detection:
    """One answer from several: largest score, most suspicious verdict, all findings.

    The anomaly map is the one of the most suspicious detection that draws one (maps differ in
    resolution; the training-free checks draw none).
    """
    if len(detections) == 1:
        return detections[0]
    top = max(detections, key=lambda d: d.score)
    mapped = [d for d in detections if d.anomaly_map is not None]
    drawn = max(mapped, key=lambda d: d.score) if mapped else top
    verdict = max((d.verdict for d in detections), key=_RANK.__getitem__)
    findings = sorted((f for d in detections for f in d.findings), key=lambda f: -f.score)
    notes = [f"{d.detector}: score {d.score:.3f}, {d.verdict}" for d in detections]
    for d in detections:
        notes.extend(f"{d.detector}: {note}" for note in d.notes)
    return Detection(
        detector="+".join(d.detector for d in detections),
        score=top.score,
        verdict=verdict,
        findings=findings,
        anomaly_map=drawn.anomaly_map,
        map_stride=drawn.map_stride,
        notes=notes,
    )
