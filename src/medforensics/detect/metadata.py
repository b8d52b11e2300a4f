"""DICOM consistency checks: what the headers, the geometry and the pixel values say together.

No training: every check is a rule with a plain-language explanation. Each problem becomes a
``Finding`` of kind ``metadata`` with a score in [0, 1] that says how strongly it points at
manipulation rather than at an ordinary workflow:

* **geometry**: duplicated slice positions, gaps, spacing that is not uniform (tolerance scaled
  by SliceThickness), InstanceNumbers out of step with the positions;
* **noise continuity**: one slice's noise level jumping against its neighbours (robust z-score
  of the log noise level against the median of the two slices on either side);
* **pixels against the header**: stored values outside the BitsStored range, outside
  Smallest/LargestImagePixelValue, CT air far from -1000 HU, impossible rescale values;
* **provenance**: ImageType DERIVED/SECONDARY, DerivationDescription, lossy compression,
  image editors or Python imaging libraries named in SoftwareVersions and similar tags,
  Secondary Capture conversion types;
* **consistency across files**: manufacturer, model, software, kernel or bit depth that differ
  between the files of one series, or a minority of files written by other software.

The headers of every file are read again (never their pixels, except to check the stored range
of uncompressed data), because ``ImageVolume.attributes`` holds the first file's values only;
when the files are gone (a zip that was unpacked to a temporary folder) the checks fall back to
those attributes and say so in the notes.

Authentic re-writes (new UIDs, anonymised headers, another lossless transfer syntax, renamed
or re-ordered files) change none of the values these checks compare.

The volume score is the strongest finding's score (0.02 when nothing is found): several weak
hints (a reformatted, lossy-compressed export, say) come together in ordinary workflows and do
not add up to evidence. The operating point calls a score of 0.5 or more ``manipulated`` and
below 0.3 ``authentic``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from medforensics.detect.base import Detector
from medforensics.detect.compression import LOSSY_SYNTAXES
from medforensics.detect.masks import foreground_mask
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import ImageVolume

#: score when no check finds anything: the header cannot vouch for the pixels
NOTHING_FOUND = 0.02
OPERATING_POINT = OperatingPoint(manipulated_at=0.5, authentic_below=0.3)

#: header values compared across the files of a series
_PER_FILE = (
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "ConvolutionKernel",
    "ImageType",
    "DerivationDescription",
    "SecondaryCaptureDeviceManufacturer",
    "SecondaryCaptureDeviceManufacturerModelName",
    "SecondaryCaptureDeviceSoftwareVersions",
    "ConversionType",
    "LossyImageCompression",
    "SliceThickness",
    "RescaleSlope",
    "RescaleIntercept",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "InstanceNumber",
)
#: of those, the ones that must agree across a series (what a scanner writes once per series)
_SERIES_CONSTANT = (
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "ConvolutionKernel",
)
#: tags where software names itself
_SOFTWARE_TAGS = (
    "SoftwareVersions",
    "Manufacturer",
    "ManufacturerModelName",
    "SecondaryCaptureDeviceManufacturer",
    "SecondaryCaptureDeviceManufacturerModelName",
    "SecondaryCaptureDeviceSoftwareVersions",
    "DerivationDescription",
)
#: image editors, Python imaging libraries and generators: pixels went through general software
_EDITORS = re.compile(
    r"photoshop|gimp|paint\.net|paintshop|pixelmator|krita|affinity|imagej|\bfiji\b|matlab|"
    r"opencv|\bpillow\b|\bpil\b|python|pydicom|numpy|simpleitk|nibabel|dicom ?editor|"
    r"sante dicom|\bgan\b|stylegan|diffusion|deepfake|ct-?gan|medigan",
    re.IGNORECASE,
)
#: converters and research toolkits: legitimate, but not a scanner
_TOOLKITS = re.compile(
    r"dcmtk|\bgdcm\b|\bitk\b|\bvtk\b|slicer|osirix|horos|\bmitk\b|dcm4che|img2dcm|dicomizer|"
    r"orthanc|mevislab|\bxnat\b",
    re.IGNORECASE,
)
_CROSS_SECTIONAL = ("CT", "MR", "PT")
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


@dataclass
class FileHeader:
    """The header values of one source file.

    Attributes:
        path: the file.
        values: text of the ``_PER_FILE`` keywords present.
        writer: ImplementationClassUID and ImplementationVersionName of the file meta.
        transfer_syntax: TransferSyntaxUID.
        stored_range: smallest and largest raw stored value, read only for uncompressed files
            whose BitsStored is less than BitsAllocated (the only case a value can lie outside
            the declared range); None otherwise.
    """

    path: Path
    values: dict[str, str] = field(default_factory=dict)
    writer: str = ""
    transfer_syntax: str = ""
    stored_range: tuple[int, int] | None = None

    def number(self, keyword: str) -> float | None:
        try:
            value = float(self.values[keyword].split("\\")[0])
        except (KeyError, ValueError):
            return None
        return value if math.isfinite(value) else None


def _text(value: object) -> str:
    from pydicom.multival import MultiValue

    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _raw_stored_range(ds: object, bits_allocated: int, signed: bool) -> tuple[int, int] | None:
    if bits_allocated not in (8, 16, 32):
        return None
    data = getattr(ds, "PixelData", None)
    if not isinstance(data, bytes | bytearray) or not data:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    raw = np.frombuffer(data, dtype=dtype, count=len(data) // dtype.itemsize)
    return int(raw.min()), int(raw.max())


def read_file_header(path: Path) -> FileHeader:
    """Read the values the checks compare from one DICOM file (pixels stay on disk)."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, defer_size=1024, force=True)
        values = {k: _text(ds.get(k)) for k in _PER_FILE if ds.get(k) not in (None, "")}
        meta = getattr(ds, "file_meta", None)
        writer = " ".join(
            str(meta.get(k, "") or "")
            for k in ("ImplementationClassUID", "ImplementationVersionName")
            if meta is not None
        ).strip()
        syntax = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
        header = FileHeader(path, values, writer, syntax)
        bits_allocated = int(header.number("BitsAllocated") or 16)
        bits_stored = int(header.number("BitsStored") or bits_allocated)
        # big endian is rare enough not to bother; elsewhere the bytes are read as they are
        little_endian = syntax in _NATIVE_SYNTAXES and syntax != "1.2.840.10008.1.2.2"
        if little_endian and bits_stored < bits_allocated:
            signed = int(header.number("PixelRepresentation") or 0) == 1
            header.stored_range = _raw_stored_range(ds, bits_allocated, signed)
    return header


def read_file_headers(volume: ImageVolume) -> list[FileHeader] | None:
    """Headers of every source file in slice order, or None when they cannot all be read."""
    if not volume.kind.startswith("dicom") or not volume.slices:
        return None
    headers = []
    for path in volume.source_files:
        try:
            headers.append(read_file_header(path))
        except Exception:  # moved, deleted (zip temp folder) or unreadable: use the attributes
            return None
    return headers


def headers_from_attributes(volume: ImageVolume) -> list[FileHeader]:
    """A single pseudo-header from ``volume.attributes`` (the first file's values)."""
    values = {k: v for k, v in volume.attributes.items() if k in _PER_FILE}
    if volume.bits_stored:
        values.setdefault("BitsStored", str(volume.bits_stored))
    path = volume.slices[0].source_file if volume.slices else Path(volume.input)
    return [
        FileHeader(path, values, "", volume.transfer_syntax[0] if volume.transfer_syntax else "")
    ]


# --- the checks -------------------------------------------------------------------------------


def _finding(volume: ImageVolume, score: float, detail: str, slice_index: int = 0) -> Finding:
    _, rows, cols = volume.shape
    return Finding(
        kind="metadata",
        score=round(float(min(max(score, 0.0), 1.0)), 4),
        slice=int(slice_index),
        row=rows // 2,
        col=cols // 2,
        radius=0.0,
        detail=detail,
    )


def _along_normal(volume: ImageVolume) -> np.ndarray | None:
    if volume.positions is None or len(volume.positions) < 3:
        return None
    if volume.row_direction is not None and volume.col_direction is not None:
        normal = np.cross(volume.row_direction, volume.col_direction)
    else:
        normal = volume.positions[-1] - volume.positions[0]
    norm = float(np.linalg.norm(normal))
    if norm == 0:
        return None
    return np.asarray(volume.positions @ (normal / norm), dtype=np.float64)


def check_geometry(volume: ImageVolume, headers: list[FileHeader]) -> list[Finding]:
    """Duplicated positions, gaps, irregular spacing, instance numbers against positions."""
    along = _along_normal(volume)
    if along is None:
        return []
    findings: list[Finding] = []
    steps = np.diff(along)
    same = np.flatnonzero(np.abs(steps) < 1e-3)
    moving = np.abs(steps[np.abs(steps) >= 1e-3])
    if same.size:
        score = 0.6 if volume.modality == "CT" else 0.3
        where = ", ".join(f"{i} and {i + 1}" for i in same[:3])
        findings.append(
            _finding(
                volume,
                score,
                f"{same.size} pair(s) of slices share one position (slices {where}): a slice was "
                "added to the series, or several acquisitions were mixed into it",
                int(same[0]),
            )
        )
    if moving.size >= 2:
        typical = float(np.median(moving))
        thickness = headers[0].number("SliceThickness") if headers else None
        scale = min(typical, thickness) if thickness and thickness > 0 else typical
        tolerance = max(0.05, 0.1 * scale)
        gaps = np.flatnonzero(np.abs(steps) > typical + max(0.5 * scale, tolerance))
        if gaps.size:
            first = int(gaps[0])
            findings.append(
                _finding(
                    volume,
                    0.55,
                    f"{gaps.size} gap(s) in the slice positions: {abs(steps[first]):.2f} mm "
                    f"between slices {first} and {first + 1} where the series steps "
                    f"{typical:.2f} mm (slices missing or removed)",
                    first,
                )
            )
        irregular = np.flatnonzero(
            (np.abs(np.abs(steps) - typical) > tolerance) & (np.abs(steps) >= 1e-3)
        )
        irregular = np.setdiff1d(irregular, gaps)
        if irregular.size:
            first = int(irregular[0])
            findings.append(
                _finding(
                    volume,
                    0.4,
                    f"slice spacing is not uniform: {abs(steps[first]):.2f} mm between slices "
                    f"{first} and {first + 1}, {typical:.2f} mm elsewhere (tolerance "
                    f"{tolerance:.2f} mm from SliceThickness {thickness or 'unknown'})",
                    first,
                )
            )
    findings.extend(_check_instance_numbers(volume, headers))
    return findings


def _check_instance_numbers(volume: ImageVolume, headers: list[FileHeader]) -> list[Finding]:
    """InstanceNumbers should run one way along the slice positions, without repeats."""
    if len(headers) != volume.shape[0] or len(headers) < 3:
        return []
    numbers = [h.number("InstanceNumber") for h in headers]
    if any(n is None for n in numbers):
        return []
    steps = np.diff(np.array(numbers, dtype=np.float64))
    if np.all(steps > 0) or np.all(steps < 0):
        return []
    direction = 1.0 if np.sum(steps > 0) >= np.sum(steps < 0) else -1.0
    first = int(np.flatnonzero(steps * direction <= 0)[0])
    what = "repeat" if np.any(steps == 0) else "do not follow the slice positions"
    return [
        _finding(
            volume,
            0.45,
            f"InstanceNumbers {what} (slices {first} and {first + 1}): slices were inserted, "
            "replaced or renumbered after the scanner wrote the series",
            first,
        )
    ]


def slice_noise_levels(volume: ImageVolume) -> np.ndarray:
    """Log of each slice's robust noise level inside the body (NaN where unmeasurable).

    The noise is the mean absolute 4-neighbour residual over the body, leaving out the top 10 %
    (edges); large slices are measured on every second pixel (plenty, and four times faster).
    """
    levels = np.full(volume.shape[0], np.nan)
    for index, image in enumerate(volume.pixels):
        image = image.astype(np.float32, copy=False)
        residual = np.abs(
            4 * image[1:-1, 1:-1]
            - (image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:])
        )
        step = 2 if min(image.shape) >= 256 else 1
        body = foreground_mask(image[1:-1:step, 1:-1:step], volume.modality)
        values = residual[::step, ::step][body]
        if values.size >= 200:
            # a trimmed mean, not the median: on integer data the median moves in whole steps
            cut = float(np.percentile(values, 90))
            level = float(values[values <= cut].mean())
            if level > 0:
                levels[index] = math.log(level)
    return levels


def _spikes(levels: np.ndarray) -> np.ndarray:
    """How far each slice's level stands out from *both* sides (0 for steps and end slices).

    A slice from another scan, or one processed on its own, differs from the slices before and
    after it in the same direction; a change of protocol or anatomy along the series is a step,
    where one side agrees. The outermost slices are left out: helical reconstruction makes their
    noise differ in perfectly authentic series.
    """
    out = np.zeros_like(levels)
    for index in range(1, len(levels) - 1):
        before = [v for v in levels[max(index - 2, 0) : index] if np.isfinite(v)]
        after = [v for v in levels[index + 1 : index + 3] if np.isfinite(v)]
        if not before or not after or not np.isfinite(levels[index]):
            continue
        left = levels[index] - float(np.median(before))
        right = levels[index] - float(np.median(after))
        if left * right > 0:
            out[index] = math.copysign(min(abs(left), abs(right)), left)
    return out


def check_noise_continuity(volume: ImageVolume) -> list[Finding]:
    """A slice whose noise level jumps against the slices on both sides of it.

    Only for cross-sectional series (CT, MR, PET): the frames of an ultrasound or angiography
    cine are moments in time, whose noise changes with the motion.
    """
    if volume.shape[0] < 5 or volume.modality not in _CROSS_SECTIONAL:
        return []
    levels = slice_noise_levels(volume)
    if np.isfinite(levels).sum() < 5:
        return []
    deviation = _spikes(levels)
    inner = deviation[1:-1]
    spread = max(1.4826 * float(np.median(np.abs(inner - np.median(inner)))), 0.03)
    z = deviation / spread
    findings = []
    for index in np.argsort(-np.abs(z))[:3]:
        jump = float(deviation[index])
        if abs(z[index]) < 6 or abs(jump) < math.log(1.25):
            break
        ratio = math.exp(jump)
        findings.append(
            _finding(
                volume,
                min(0.5 + 0.02 * (abs(float(z[index])) - 6), 0.9),
                f"slice {index} is {'noisier' if ratio > 1 else 'smoother'} than the slices on "
                f"both sides (noise x{ratio:.2f}, {abs(float(z[index])):.1f} robust SDs): "
                "processed, replaced or taken from another scan",
                int(index),
            )
        )
    return findings


def _stored_limits(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def _slices_of(volume: ImageVolume, header: FileHeader) -> list[int]:
    return [k for k, ref in enumerate(volume.slices) if ref.source_file == header.path] or [0]


def check_pixel_values(volume: ImageVolume, headers: list[FileHeader]) -> list[Finding]:
    """Stored values against BitsStored and Smallest/LargestImagePixelValue; CT air; rescale."""
    findings: list[Finding] = []
    for header in headers:
        bits = header.number("BitsStored")
        signed = header.number("PixelRepresentation") == 1
        if header.stored_range is not None and bits:
            low, high = _stored_limits(int(bits), signed)
            if header.stored_range[0] < low or header.stored_range[1] > high:
                findings.append(
                    _finding(
                        volume,
                        0.7,
                        f"{header.path.name}: stored values {header.stored_range[0]}.."
                        f"{header.stored_range[1]} do not fit BitsStored={int(bits)} "
                        f"({low}..{high}): pixels were written by software that did not "
                        "update the header",
                        _slices_of(volume, header)[0],
                    )
                )
                break
    findings.extend(_check_declared_extremes(volume, headers))
    findings.extend(_check_rescale(volume, headers[0]))
    if volume.modality == "CT":
        findings.extend(_check_air(volume))
    return findings


def _check_declared_extremes(volume: ImageVolume, headers: list[FileHeader]) -> list[Finding]:
    if _lossy(volume, headers):
        return []  # lossy compression moves the extremes; the declared values cannot be checked
    for header in headers:
        smallest = header.number("SmallestImagePixelValue")
        largest = header.number("LargestImagePixelValue")
        if smallest is None and largest is None:
            continue
        index = _slices_of(volume, header)
        physical = volume.modality in ("CT", "PT")
        if physical and header.number("RescaleIntercept") is None:
            continue  # rescaled per frame (enhanced multi-frame): cannot go back to stored values
        slope = header.number("RescaleSlope") or 1.0
        intercept = header.number("RescaleIntercept") or 0.0
        values = volume.pixels[index]
        stored = (values - intercept) / slope if physical else values
        actual = (float(np.rint(stored.min())), float(np.rint(stored.max())))
        outside = (smallest is not None and actual[0] < smallest - 0.5) or (
            largest is not None and actual[1] > largest + 0.5
        )
        differs = (smallest is not None and abs(actual[0] - smallest) > 0.5) or (
            largest is not None and abs(actual[1] - largest) > 0.5
        )
        if outside or differs:
            score = 0.65 if outside else 0.3
            return [
                _finding(
                    volume,
                    score,
                    f"{header.path.name}: stored pixel values run {actual[0]:.0f}..{actual[1]:.0f} "
                    f"but the header declares {smallest}..{largest} "
                    "(Smallest/LargestImagePixelValue): the pixels changed after the header "
                    "was written",
                    index[0],
                )
            ]
    return []


def _check_rescale(volume: ImageVolume, header: FileHeader) -> list[Finding]:
    slope = header.number("RescaleSlope")
    intercept = header.number("RescaleIntercept")
    if slope is not None and slope <= 0:
        return [_finding(volume, 0.6, f"RescaleSlope is {slope:g}: no scanner writes that")]
    if volume.modality == "CT" and slope is not None and abs(slope - 1) > 1e-6:
        return [
            _finding(
                volume,
                0.25,
                f"CT with RescaleSlope {slope:g}: Hounsfield units are normally stored 1:1",
            )
        ]
    if (
        volume.modality == "CT"
        and intercept is not None
        and (intercept > 0 or intercept < -8192 or intercept != round(intercept))
    ):
        return [_finding(volume, 0.3, f"unusual CT RescaleIntercept {intercept:g}")]
    return []


def _check_air(volume: ImageVolume) -> list[Finding]:
    """The darkest substantial level of a CT should be air, about -1000 HU."""
    step = max(1, volume.shape[0] // 16)
    images = volume.pixels[::step, ::2, ::2]
    # values far below air are padding outside the reconstruction circle (-2000, -3024...);
    # leave out a margin around it too, where lossy compression rings between the two levels
    padding = images <= -1500
    if padding.any():
        padding = ndimage.binary_dilation(padding, iterations=3, structure=np.ones((1, 3, 3)))
    sample = images[~padding]
    if sample.size < 1000:
        return []
    air = float(np.percentile(sample, 0.5))
    if air < -1150:
        return [
            _finding(
                volume,
                0.6,
                f"CT values reach {air:.0f} HU, well below air (-1000 HU): the rescale "
                "intercept or the pixel values were changed",
            )
        ]
    dark_mode = float(np.mean(np.abs(sample - air) < 60))
    if air > -850 and dark_mode > 0.03:
        return [
            _finding(
                volume,
                0.6,
                f"the darkest region of this CT (probably air, {dark_mode:.0%} of the pixels) "
                f"reads {air:.0f} HU instead of about -1000 HU: the rescale or the pixel values "
                "were changed",
            )
        ]
    return []


def _lossy(volume: ImageVolume, headers: list[FileHeader]) -> bool:
    """Lossy compression now (transfer syntax) or earlier (LossyImageCompression = 01)."""
    syntaxes = {h.transfer_syntax for h in headers} | set(volume.transfer_syntax)
    flagged = any(h.values.get("LossyImageCompression", "").strip() == "01" for h in headers)
    return flagged or bool(syntaxes & LOSSY_SYNTAXES)


def check_provenance(volume: ImageVolume, headers: list[FileHeader]) -> list[Finding]:
    """Derived or secondary images, lossy history, and software that names itself."""
    findings: list[Finding] = []
    values = headers[0].values
    image_type = values.get("ImageType", "").upper()
    parts = image_type.split("\\")
    if parts and parts[0] == "DERIVED":
        kind = next(
            (p for p in parts[2:] if p in ("REFORMATTED", "MPR", "MIP", "AVERAGE", "PROJECTION")),
            "",
        )
        findings.append(
            _finding(
                volume,
                0.2,
                f"ImageType {image_type}: not an original reconstruction"
                + (f" ({kind.lower()} by the scanner or a workstation)" if kind else "")
                + "; the pixels were computed from other images",
            )
        )
    elif len(parts) > 1 and parts[1] == "SECONDARY":
        findings.append(_finding(volume, 0.1, f"ImageType {image_type}: a secondary image"))
    description = values.get("DerivationDescription", "")
    if description:
        findings.append(
            _finding(
                volume,
                0.3,
                f"DerivationDescription says the pixels were derived: '{description[:80]}'",
            )
        )
    if _lossy(volume, headers):
        findings.append(
            _finding(
                volume,
                0.3,
                "the image was lossy-compressed at some point: fine traces of editing may be "
                "gone, so pixel-level detectors see less",
            )
        )
    conversion = values.get("ConversionType", "").upper()
    if conversion:
        synthetic = conversion == "SYN"
        findings.append(
            _finding(
                volume,
                0.6 if synthetic else 0.25,
                f"Secondary Capture, ConversionType {conversion}"
                + (": a synthetic image" if synthetic else ": a capture, not the acquisition"),
            )
        )
    findings.extend(_software_findings(volume, headers))
    return findings


def _software_findings(volume: ImageVolume, headers: list[FileHeader]) -> list[Finding]:
    seen: dict[str, tuple[float, str, int]] = {}
    for header in headers:
        for keyword in _SOFTWARE_TAGS:
            text = header.values.get(keyword, "")
            match = _EDITORS.search(text) or _TOOLKITS.search(text)
            if not match or keyword in seen:
                continue
            editor = bool(_EDITORS.search(text))
            seen[keyword] = (0.75 if editor else 0.35, text, _slices_of(volume, header)[0])
    findings = []
    for keyword, (score, text, index) in seen.items():
        what = (
            "an image editor or a general-purpose imaging library"
            if score > 0.5
            else "a conversion or research toolkit, not a scanner"
        )
        findings.append(_finding(volume, score, f"{keyword} names {what}: '{text[:80]}'", index))
    return findings


def check_consistency(volume: ImageVolume, headers: list[FileHeader]) -> list[Finding]:
    """Values that must be the same in every file of a series, and who wrote the files."""
    if len(headers) < 2:
        return []
    findings = []
    for keyword in (*_SERIES_CONSTANT, "BitsStored"):
        counts = Counter(h.values.get(keyword, "") for h in headers)
        if len(counts) < 2:
            continue
        common, _ = counts.most_common(1)[0]
        odd = [k for k, h in enumerate(headers) if h.values.get(keyword, "") != common]
        odd_header = headers[odd[0]]
        findings.append(
            _finding(
                volume,
                0.75 if keyword in ("Manufacturer", "ManufacturerModelName") else 0.6,
                f"{keyword} differs inside one series: {len(odd)} of {len(headers)} file(s) "
                f"say '{odd_header.values.get(keyword, '(missing)')}', the others '{common}' "
                f"(e.g. {odd_header.path.name}): slices from another scan or software were "
                "inserted",
                _slices_of(volume, odd_header)[0],
            )
        )
    writers = Counter(h.writer for h in headers)
    if len(writers) > 1:
        common_writer, count = writers.most_common(1)[0]
        odd_files = [h for h in headers if h.writer != common_writer]
        if count >= 2 * len(odd_files):
            findings.append(
                _finding(
                    volume,
                    0.55,
                    f"{len(odd_files)} of {len(headers)} file(s) were written by other software "
                    f"('{odd_files[0].writer}') than the rest ('{common_writer}'), e.g. "
                    f"{odd_files[0].path.name}: those files were re-saved on their own",
                    _slices_of(volume, odd_files[0])[0],
                )
            )
    return findings


@register_detector
class MetadataDetector(Detector):
    """Header, geometry and pixel-value consistency checks (no training; any modality)."""

    name = "metadata"
    modalities = ()

    def __init__(self, reread_headers: bool = True, noise_check: bool = True) -> None:
        self.reread_headers = reread_headers
        self.noise_check = noise_check
        self.operating_point = OPERATING_POINT

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "trained": False,
            "score": "the strongest finding's score; 0.02 when nothing is found",
            "operating_point": {
                "manipulated_at": self.operating_point.manipulated_at,
                "authentic_below": self.operating_point.authentic_below,
            },
        }

    def detect(self, volume: ImageVolume) -> Detection:
        notes: list[str] = []
        headers = read_file_headers(volume) if self.reread_headers else None
        if headers is None and volume.kind.startswith("dicom"):
            headers = headers_from_attributes(volume)
            notes.append(
                "the source files could not be read again, so only the first file's header "
                "values were checked (no comparison across files)"
            )
        findings: list[Finding] = []
        findings += check_geometry(volume, headers or [])
        if self.noise_check:
            findings += check_noise_continuity(volume)
        if headers:
            findings += check_pixel_values(volume, headers)
            findings += check_provenance(volume, headers)
            findings += check_consistency(volume, headers)
        else:
            notes.append(f"a {volume.kind} input has no DICOM header: only geometry and noise")
            if volume.modality == "CT":
                findings += _check_air(volume)
        findings.sort(key=lambda f: f.score, reverse=True)
        score = max([NOTHING_FOUND, *(f.score for f in findings)])
        notes.append(
            f"{len(findings)} metadata finding(s)" if findings else "headers and geometry agree"
        )
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.operating_point.verdict(score),
            findings=findings,
            notes=notes,
        )
