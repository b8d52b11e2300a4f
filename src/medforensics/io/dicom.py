"""Read one DICOM file: header first (pixels deferred), pixels on demand, errors for people."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from medforensics.io.types import ReadError

# Real-world headers often break VR rules (UIDs with letters, over-long strings); that is worth
# a finding in the metadata checks, never a warning flood or a refusal to read the pixels.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

#: refuse a single DICOM image whose declared pixel data would be larger than this (bytes)
MAX_IMAGE_BYTES = int(os.environ.get("MEDFORENSICS_MAX_IMAGE_BYTES", 4 * 2**30))

#: PixelData, FloatPixelData, DoubleFloatPixelData
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

#: SOP classes whose instances are multi-frame by design, even with NumberOfFrames == 1
ENHANCED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET
}

#: descriptive attributes copied into ImageVolume.attributes when present
_DESCRIPTIVE = (
    "Manufacturer",
    "ManufacturerModelName",
    "ConvolutionKernel",
    "SeriesDescription",
    "StudyDescription",
    "BodyPartExamined",
    "SoftwareVersions",
    "PhotometricInterpretation",
    "ImageType",
    "DerivationDescription",
    "SliceThickness",
    "RescaleIntercept",
    "RescaleSlope",
    "LossyImageCompression",
    "SecondaryCaptureDeviceManufacturer",
    "SecondaryCaptureDeviceSoftwareVersions",
)


@dataclass
class DicomHeader:
    """What the readers need from one file, read without decoding the pixels."""

    path: Path
    dataset: Dataset
    sop_instance_uid: str | None
    sop_class_uid: str | None
    series_uid: str | None
    study_uid: str | None
    modality: str
    rows: int
    cols: int
    frames: int
    samples: int
    bits_allocated: int
    bits_stored: int
    transfer_syntax: str
    instance_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    spacing_between_slices: float | None
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def is_multiframe(self) -> bool:
        return self.frames > 1 or self.sop_class_uid in ENHANCED_SOP_CLASSES

    @property
    def declared_bytes(self) -> int:
        return self.rows * self.cols * self.frames * self.samples * max(self.bits_allocated, 8) // 8


def _floats(value: object, count: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        return None
    return values


def _float(value: object) -> float | None:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int(value: object, default: int | None = None) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _positive(values: tuple[float, ...] | None) -> tuple[float, float] | None:
    """Pixel spacing of 0 or less means "unknown" (some CR writers put 0\\0)."""
    if values is None or len(values) != 2 or min(values) <= 0:
        return None
    return (values[0], values[1])


def _uid(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def transfer_syntax_name(uid: str) -> str:
    try:
        name = UID(uid).name
    except Exception:  # a malformed UID string
        return uid
    return f"{name} ({uid})" if name and name != uid else uid


def read_header(path: Path) -> DicomHeader:
    """Parse the header of ``path``; pixel data stays on disk until ``read_frames``.

    Raises:
        ReadError: not DICOM, truncated header, no pixel data, or an absurd declared size.
    """
    if _is_empty_file(path):
        raise ReadError(
            path, "is empty (0 bytes): the copy or transfer probably failed; fetch it again"
        )
    try:
        with warnings.catch_warnings():
            # invalid VRs in real-world headers are common and harmless for reading pixels
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, defer_size=1024, force=True)
    except PermissionError as exc:
        raise ReadError(path, f"cannot be read: permission denied ({exc.strerror})") from exc
    except IsADirectoryError as exc:
        raise ReadError(path, "is a folder, not a file") from exc
    except OSError as exc:
        raise ReadError(path, f"cannot be read: {exc.strerror or exc}") from exc
    except (InvalidDicomError, EOFError) as exc:
        raise ReadError(path, f"is not a readable DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many kinds on corrupt input
        raise ReadError(
            path, f"is not a readable DICOM file: the header is corrupt or truncated ({exc})"
        ) from exc
    try:
        return header_from_dataset(path, ds)
    except ReadError:
        raise
    except Exception as exc:  # elements are parsed lazily: a damaged one fails only here
        raise ReadError(
            path, f"has a corrupt DICOM header: an element could not be parsed ({exc})"
        ) from exc


def _is_empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:
        return False  # let the reader report why it cannot be opened


def _no_pixel_data_message(ds: Dataset, tags: Iterable[int], sop_class: str | None) -> str:
    """Why there are no pixels: not DICOM at all, cut short, or not an image object."""
    meta = getattr(ds, "file_meta", None)
    if not meta and not any(keyword_for_tag(tag) for tag in tags):
        # force=True turns any bytes into "elements"; none of them is a standard attribute
        return (
            "is not a DICOM file, or is damaged beyond reading (no standard DICOM attributes found)"
        )
    sop_class = sop_class or (_uid(meta, "MediaStorageSOPClassUID") if meta else None)
    what = UID(sop_class).name if sop_class else "unknown SOP class"
    if "Image Storage" in what:
        return (
            f"contains no pixel data although it is a {what} object: the file was probably "
            "truncated (cut short in transfer) or its pixels were stripped; fetch it again "
            "from the source"
        )
    return f"contains no pixel data ({what}); it is not an image, so there is nothing to analyse"


def header_from_dataset(path: Path, ds: Dataset) -> DicomHeader:
    """Validate ``ds`` (read from ``path``) and extract the fields the readers use."""
    if len(ds) == 0 and not getattr(ds, "file_meta", None):
        raise ReadError(path, "is not a DICOM file (no DICOM elements found)")
    try:
        # keys only: iterating elements would load the deferred pixel data of every file
        tags = set(ds.keys())
        sop_class = _uid(ds, "SOPClassUID")
    except Exception as exc:
        raise ReadError(path, f"has a corrupt or truncated DICOM header ({exc})") from exc
    if not tags & _PIXEL_TAGS:
        raise ReadError(path, _no_pixel_data_message(ds, tags, sop_class))
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if not transfer_syntax:
        # files without a meta header: pydicom guessed the encoding while reading
        transfer_syntax = "1.2.840.10008.1.2" if ds.is_implicit_VR else "1.2.840.10008.1.2.1"
    rows = _int(ds.get("Rows"), 0) or 0
    cols = _int(ds.get("Columns"), 0) or 0
    if rows <= 0 or cols <= 0:
        raise ReadError(path, f"declares an empty image (Rows={rows}, Columns={cols})")
    attributes = {}
    for keyword in _DESCRIPTIVE:
        value = ds.get(keyword)
        if value is not None and str(value).strip():
            attributes[keyword] = (
                "\\".join(str(v) for v in value)
                if isinstance(value, pydicom.multival.MultiValue)
                else str(value)
            )
    header = DicomHeader(
        path=path,
        dataset=ds,
        sop_instance_uid=_uid(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class,
        series_uid=_uid(ds, "SeriesInstanceUID"),
        study_uid=_uid(ds, "StudyInstanceUID"),
        modality=str(ds.get("Modality", "") or "OT").strip() or "OT",
        rows=rows,
        cols=cols,
        frames=max(_int(ds.get("NumberOfFrames"), 1) or 1, 1),
        samples=max(_int(ds.get("SamplesPerPixel"), 1) or 1, 1),
        bits_allocated=_int(ds.get("BitsAllocated"), 16) or 16,
        bits_stored=_int(ds.get("BitsStored"), 0) or _int(ds.get("BitsAllocated"), 16) or 16,
        transfer_syntax=transfer_syntax,
        instance_number=_int(ds.get("InstanceNumber")),
        position=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=_positive(_floats(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"), 2)),
        slice_thickness=_float(ds.get("SliceThickness")),
        spacing_between_slices=_float(ds.get("SpacingBetweenSlices")),
        attributes=attributes,
    )
    if header.declared_bytes > MAX_IMAGE_BYTES:
        raise ReadError(
            path,
            f"declares {header.frames} frame(s) of {rows}x{cols}x{header.samples} at "
            f"{header.bits_allocated} bits ({header.declared_bytes / 2**30:.1f} GiB), more than "
            f"the {MAX_IMAGE_BYTES / 2**30:.1f} GiB limit; the header is probably corrupt "
            "(raise MEDFORENSICS_MAX_IMAGE_BYTES if the image is real)",
        )
    return header


#: uncompressed little-endian syntaxes whose pixels can be viewed straight from the bytes
_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _native_fast_path(header: DicomHeader) -> np.ndarray | None:
    """View uncompressed single-frame pixels without pydicom's intermediate copies, or None.

    Only for the plain case (one sample, all allocated bits stored, little endian); everything
    else goes through pydicom's decoders, which handle bit masking and sign extension.
    """
    if (
        header.transfer_syntax not in _NATIVE_LITTLE_ENDIAN
        or header.frames != 1
        or header.samples != 1
        or header.bits_allocated not in (8, 16, 32)
        or header.bits_stored != header.bits_allocated
        or "PixelData" not in header.dataset
    ):
        return None
    signed = int(header.dataset.get("PixelRepresentation", 0) or 0) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{header.bits_allocated // 8}")
    data = header.dataset.PixelData
    expected = header.rows * header.cols * dtype.itemsize
    if not isinstance(data, bytes | bytearray) or len(data) < expected:
        return None  # let pydicom produce its precise error message
    return np.frombuffer(data, dtype=dtype, count=header.rows * header.cols).reshape(
        header.rows, header.cols
    )


#: words in pydicom's and the decoders' messages that mean "the data stops too early"
_TRUNCATION_HINTS = ("length", "truncat", "end of", "less than expected")


def _decoder_error(header: DicomHeader, exc: Exception) -> ReadError:
    """Tell apart a missing decoder, a syntax nobody decodes, and a corrupt compressed stream."""
    text = str(exc)
    syntax = transfer_syntax_name(header.transfer_syntax)
    convert = (
        "convert the file to an uncompressed syntax (e.g. DCMTK 'dcmconv +te' or GDCM "
        "'gdcmconv --raw')"
    )
    if "missing dependencies" in text:
        return ReadError(
            header.path,
            f"uses transfer syntax {syntax}, whose decoder is not installed. Install the "
            "decoders with 'pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg "
            f"pyjpegls', or {convert}",
        )
    if isinstance(exc, NotImplementedError):
        return ReadError(
            header.path,
            f"uses transfer syntax {syntax}, which this tool cannot decode (no decoder for it "
            f"exists here); {convert}",
        )
    if "raised by all available plugins" in text:
        details = "; ".join(line.strip() for line in text.splitlines()[1:] if line.strip())
        return ReadError(
            header.path,
            f"has {syntax} pixel data that the installed decoders could not decode: the "
            f"compressed data is probably corrupt or truncated ({details})",
        )
    return ReadError(header.path, f"pixel data could not be decoded ({text})")


def _decode(header: DicomHeader) -> np.ndarray:
    ds = header.dataset
    fast = _native_fast_path(header)
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except (NotImplementedError, RuntimeError) as exc:
        raise _decoder_error(header, exc) from exc
    except (ValueError, EOFError, OSError, IndexError) as exc:
        text = str(exc)
        if any(hint in text.lower() for hint in _TRUNCATION_HINTS):
            raise ReadError(
                header.path,
                f"has truncated pixel data ({text}); the file was probably cut short in "
                "transfer: fetch it again from the source",
            ) from exc
        raise ReadError(header.path, f"pixel data could not be decoded ({text})") from exc
    except Exception as exc:  # decoders raise many kinds on corrupt streams
        raise ReadError(header.path, f"pixel data could not be decoded ({exc})") from exc


def _to_luminance(frames: np.ndarray, header: DicomHeader) -> np.ndarray:
    photometric = header.attributes.get("PhotometricInterpretation", "MONOCHROME2")
    if header.samples == 1 and photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            frames = np.asarray(apply_color_lut(frames, header.dataset))
        except Exception as exc:  # missing or damaged lookup table elements
            raise ReadError(
                header.path, f"is a palette colour image whose colour table is unusable ({exc})"
            ) from exc
    if frames.shape[-1] in (3, 4) and (header.samples > 1 or photometric == "PALETTE COLOR"):
        rgb = frames[..., :3].astype(np.float32)
        return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return frames


def rescale(header: DicomHeader, frame_index: int = 0) -> tuple[float, float]:
    """Slope and intercept for one frame: per-frame, shared functional group, or top level."""
    ds = header.dataset
    for group_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(group_name)
        if not groups:
            continue
        if group_name.startswith("PerFrame") and frame_index >= len(groups):
            continue  # a damaged file with fewer per-frame items than frames
        group = groups[frame_index] if group_name.startswith("PerFrame") else groups[0]
        transform = group.get("PixelValueTransformationSequence")
        if transform:
            slope = _float(transform[0].get("RescaleSlope")) or 1.0
            intercept = _float(transform[0].get("RescaleIntercept")) or 0.0
            return slope, intercept
    top_slope = _float(ds.get("RescaleSlope"))
    top_intercept = _float(ds.get("RescaleIntercept"))
    return (top_slope or 1.0), (top_intercept if top_intercept is not None else 0.0)


def read_frames(header: DicomHeader, physical: bool) -> np.ndarray:
    """Decode the pixels of one file as ``(frames, rows, cols)`` float32.

    Args:
        header: from ``read_header``.
        physical: apply rescale slope/intercept (Hounsfield units for CT).
    """
    pixels = _decode(header)
    if header.frames == 1 and (header.samples == 1 or pixels.ndim == 3):
        pixels = pixels[None]
    pixels = _to_luminance(pixels, header)
    if pixels.ndim != 3 or pixels.shape[1:] != (header.rows, header.cols):
        raise ReadError(
            header.path,
            f"pixel data has shape {pixels.shape}, which does not match the header "
            f"({header.frames} frame(s) of {header.rows}x{header.cols})",
        )
    result = pixels.astype(np.float32, copy=False)
    if physical:
        if header.frames == 1:
            slope, intercept = rescale(header)
            if slope != 1.0:
                result *= np.float32(slope)
            if intercept != 0.0:
                result += np.float32(intercept)
        else:
            for k in range(result.shape[0]):
                slope, intercept = rescale(header, k)
                result[k] = result[k] * np.float32(slope) + np.float32(intercept)
    return result
