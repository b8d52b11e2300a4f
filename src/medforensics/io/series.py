"""Assemble DICOM files into volumes: group by series, sort along the normal, check geometry."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from medforensics.io.dicom import DicomHeader, read_frames, transfer_syntax_name
from medforensics.io.types import ImageVolume, ReadError, SliceRef

#: refuse to assemble a volume whose float32 array would be larger than this (bytes)
MAX_VOLUME_BYTES = int(os.environ.get("MEDFORENSICS_MAX_VOLUME_BYTES", 8 * 2**30))

#: positions closer than this (mm) along the normal are "the same position"
_SAME_POSITION_MM = 1e-3
#: a step this many times the typical spacing is reported as a gap
_GAP_FACTOR = 1.5


@dataclass(frozen=True)
class SeriesKey:
    """What keeps two files apart: series UID, and, when one series holds several volumes,
    which part this is (``parts`` of them): a geometry (size, plane) or a stack of images that
    share positions with the others (an echo, a phase, a b-value), as ``geometry`` says in
    words and ``split`` says why."""

    series_uid: str
    geometry: str = ""
    parts: int = 1
    part: int = 1
    split: str = "geometries (sizes or planes)"

    @staticmethod
    def of(header: DicomHeader) -> SeriesKey:
        return SeriesKey(header.series_uid or f"no-series-uid:{header.path}")


#: modalities whose series are stacks of slices even when a file lacks its position
TOMOGRAPHIC_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})
#: projection modalities: every file is its own image even when files share a series
PROJECTION_MODALITIES = frozenset(
    {"CR", "DX", "MG", "IO", "PX", "XA", "RF", "US", "ES", "XC", "OP", "SM", "GM", "DG"}
)


def group_series(headers: Iterable[DicomHeader]) -> dict[SeriesKey, list[DicomHeader]]:
    """Group single-frame files by SeriesInstanceUID, then by geometry.

    Files without a series UID, projection images (radiographs, ultrasound, photos) and, outside
    the tomographic modalities, images with no position (secondary captures, screenshots) stand
    alone: stacking two radiographs into a "volume" would be meaningless. A series whose files
    differ in size or plane (a localizer filed with the axial slices, an MR three-plane
    localizer, a screenshot) is analysed in parts, one per geometry, largest first: stacked,
    it would be no volume at all.
    """
    groups: dict[SeriesKey, list[DicomHeader]] = defaultdict(list)
    for header in headers:
        if header.modality in PROJECTION_MODALITIES or (
            header.position is None and header.modality not in TOMOGRAPHIC_MODALITIES
        ):
            key = SeriesKey(f"{header.series_uid}:{header.path}")
        else:
            key = SeriesKey.of(header)
        groups[key].append(header)
    out: dict[SeriesKey, list[DicomHeader]] = {}
    for key, group in groups.items():
        pieces = [
            (geometry, stack, members)
            for geometry, same_geometry in _by_geometry(key, group)
            for stack, members in _by_stack(same_geometry)
        ]
        if len(pieces) == 1:
            out[key] = pieces[0][2]
            continue
        for index, (geometry, (label, attribute), members) in enumerate(pieces):
            where = ", ".join(part for part in (geometry.geometry, label) if part)
            stacks = (
                f"stacks of images at the same positions (echoes, phases or acquisitions, "
                f"told apart by {attribute})"
            )
            split = " and ".join(
                reason
                for reason, applies in (
                    ("geometries (sizes or planes)", geometry.parts > 1),
                    (stacks, bool(attribute)),
                )
                if applies
            )
            out[SeriesKey(key.series_uid, where, len(pieces), index + 1, split)] = members
    return out


#: header attributes that tell apart stacks of images sharing positions within one series, in
#: the order they are tried: echoes (multi-echo, Dixon), time points and trigger delays
#: (dynamic contrast, perfusion, cardiac phases), diffusion weightings, inversion times, flip
#: angles, acquisitions, image types (Dixon water / fat / in- / opposed-phase)
STACK_ATTRIBUTES = (
    ("EchoNumbers", "echo {}"),
    ("EchoTime", "echo time {} ms"),
    ("TemporalPositionIdentifier", "time point {}"),
    ("TriggerTime", "trigger time {} ms"),
    ("DiffusionBValue", "b = {} s/mm²"),
    ("InversionTime", "inversion time {} ms"),
    ("FlipAngle", "flip angle {}°"),
    ("AcquisitionNumber", "acquisition {}"),
    ("ImageType", "image type {}"),
)


def _by_stack(
    headers: list[DicomHeader],
) -> list[tuple[tuple[str, str], list[DicomHeader]]]:
    """``headers`` split into stacks when several images share each position (a multi-echo,
    dynamic or diffusion series): by the first of ``STACK_ATTRIBUTES`` that takes exactly as
    many values as the most images at one position and leaves no position twice in a stack.

    Stacked together, the echoes or phases of one slice would sit side by side as neighbouring
    "slices", so every check across slices would compare unlike images, and a finding's slice
    index would not be a place. Returns ``((label, attribute), members)`` per stack, in order
    of the attribute's value; one part with an empty label when there is nothing to split or
    no attribute tells the stacks apart (the series is then read as it is, with a note on the
    shared positions).
    """
    whole: list[tuple[tuple[str, str], list[DicomHeader]]] = [(("", ""), headers)]
    unique = list({h.sop_instance_uid or str(h.path): h for h in headers}.values())
    if len(unique) < 2 or any(h.position is None or h.orientation is None for h in unique):
        return whole
    normal = slice_normal(unique[0].orientation or ())
    along = [float(np.dot(normal, np.asarray(h.position))) for h in unique]
    candidates = (
        (attribute, label, [_as_text(h.dataset.get(attribute)) for h in unique])
        for attribute, label in STACK_ATTRIBUTES
    )
    chosen = _stack_attribute(candidates, along)
    if chosen is None:
        return whole
    attribute, label, values = chosen
    order = sorted(set(values), key=_sort_key)
    stacks: dict[str, list[DicomHeader]] = {v: [] for v in order}
    for header in headers:  # second copies of an instance too: assembly reports them
        stacks[str(_as_text(header.dataset.get(attribute)))].append(header)
    return [((label.format(v), attribute), stacks[v]) for v in order]


def _stack_attribute(
    candidates: Iterable[tuple[str, str, list[str | None]]], along: Sequence[float]
) -> tuple[str, str, list[str]] | None:
    """The first candidate ``(attribute, label, value per image)`` that tells stacks apart in
    images at positions ``along`` the normal (mm): every image has a value, there are as many
    values as the most images at one position (more than one), and no position comes twice
    under one value. ``None`` when the images do not share positions or none does."""
    places = [round(a / _SAME_POSITION_MM) for a in along]
    most = max((places.count(p) for p in set(places)), default=0)
    if most < 2:
        return None
    for attribute, label, found in candidates:
        values = [v for v in found if v is not None]
        if len(values) < len(found) or len(set(values)) != most:
            continue
        if len(set(zip(values, places, strict=True))) < len(values):
            continue  # a position twice under one value: not stacks
        return attribute, label, values
    return None


def _as_text(value: object) -> str | None:
    """A header value as text (multi-valued ones joined by backslashes); ``None`` if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes | int | float):
        return str(value)
    try:
        return "\\".join(str(v) for v in value)  # type: ignore[attr-defined]
    except TypeError:
        return str(value)


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


#: slice normals closer than this (cosine) are one plane
_SAME_PLANE = 0.999


def _by_geometry(
    key: SeriesKey, headers: list[DicomHeader]
) -> list[tuple[SeriesKey, list[DicomHeader]]]:
    """``headers`` split by size (rows, columns, samples) and plane; files without an
    orientation join the first part of their size."""
    parts: list[tuple[tuple[int, int, int], np.ndarray | None, list[DicomHeader]]] = []
    for header in headers:
        size = (header.rows, header.cols, header.samples)
        normal = slice_normal(header.orientation) if header.orientation is not None else None
        for part_size, part_normal, members in parts:
            if part_size == size and (
                normal is None
                or part_normal is None
                or float(np.dot(normal, part_normal)) >= _SAME_PLANE
            ):
                members.append(header)
                break
        else:
            parts.append((size, normal, [header]))
    if len(parts) == 1:
        return [(key, headers)]
    parts.sort(key=lambda part: -len(part[2]))
    return [
        (
            SeriesKey(
                key.series_uid, f"{size[0]}x{size[1]} {_plane(normal)}", len(parts), index + 1
            ),
            members,
        )
        for index, (size, normal, members) in enumerate(parts)
    ]


def _plane(normal: np.ndarray | None) -> str:
    """axial, coronal, sagittal or oblique, from a slice normal in patient coordinates."""
    if normal is None:
        return "plane unknown"
    axis = int(np.argmax(np.abs(normal)))
    if abs(float(normal[axis])) < 0.9:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def _dedupe_and_sort(headers: list[DicomHeader], problems: list[str]) -> list[DicomHeader]:
    """Drop second copies of the same instance, then order along the slice normal."""
    by_uid: dict[str, DicomHeader] = {}
    unique: list[DicomHeader] = []
    for header in sorted(headers, key=lambda h: str(h.path)):
        uid = header.sop_instance_uid
        if uid and uid in by_uid:
            problems.append(
                f"instance {uid} is stored twice ({by_uid[uid].path.name} and "
                f"{header.path.name}); the second copy was ignored"
            )
            continue
        if uid:
            by_uid[uid] = header
        unique.append(header)

    have_geometry = all(h.position is not None and h.orientation is not None for h in unique)
    if len(unique) > 1 and not have_geometry:
        problems.append(
            "some slices lack ImagePositionPatient/ImageOrientationPatient; "
            "slices were ordered by InstanceNumber instead"
        )
    if not have_geometry:
        return sorted(unique, key=lambda h: (h.instance_number or 0, str(h.path)))

    normal = slice_normal(unique[0].orientation or ())
    for header in unique[1:]:
        other = slice_normal(header.orientation or ())
        if float(np.dot(normal, other)) < 0.999:
            problems.append(
                f"{header.path.name} is oriented differently from the rest of the series "
                "(mixed orientations, e.g. a localizer); order along the normal may be wrong"
            )
            break
    return sorted(
        unique,
        key=lambda h: (
            float(np.dot(normal, np.asarray(h.position))),
            h.instance_number or 0,
            str(h.path),
        ),
    )


def _slice_spacing(
    headers: list[DicomHeader], positions: np.ndarray | None, problems: list[str]
) -> float:
    if positions is None or len(headers) < 2:
        first = headers[0]
        value = first.spacing_between_slices or first.slice_thickness
        return float(value) if value else math.nan
    normal = slice_normal(headers[0].orientation or ())
    along = positions @ normal
    steps = np.diff(along)
    same = np.flatnonzero(np.abs(steps) < _SAME_POSITION_MM)
    for index in same[:5]:
        problems.append(
            f"slices {index} and {index + 1} ({headers[index].path.name}, "
            f"{headers[index + 1].path.name}) share the position {along[index]:.2f} mm "
            "(several acquisitions or echoes in one series?)"
        )
    if len(same) > 5:
        problems.append(f"{len(same)} pairs of slices share a position in all")
    positive = steps[np.abs(steps) >= _SAME_POSITION_MM]
    if positive.size == 0:
        return math.nan
    typical = float(np.median(positive))
    gaps = np.flatnonzero(steps > _GAP_FACTOR * typical)
    for index in gaps[:5]:
        problems.append(
            f"gap between slices {index} and {index + 1}: {steps[index]:.2f} mm where the "
            f"series spacing is {typical:.2f} mm (missing files?)"
        )
    if len(gaps) > 5:
        problems.append(f"{len(gaps)} gaps in all")
    irregular = positive[np.abs(positive - typical) > 0.1 * typical]
    if irregular.size and not gaps.size:
        problems.append(
            f"slice spacing is irregular ({positive.min():.2f}-{positive.max():.2f} mm)"
        )
    return typical


def _check_uniform(headers: list[DicomHeader]) -> None:
    first = headers[0]
    for header in headers[1:]:
        if (header.rows, header.cols, header.samples) != (first.rows, first.cols, first.samples):
            raise ReadError(
                header.path,
                f"is {header.rows}x{header.cols} but {first.path.name} in the same series "
                f"(SeriesInstanceUID {first.series_uid}) is {first.rows}x{first.cols}: "
                "inconsistent slice sizes inside a series, so it cannot be analysed as one "
                "volume; split the series or remove the odd files",
            )


def _check_volume_size(n_slices: int, rows: int, cols: int, where: str) -> None:
    nbytes = n_slices * rows * cols * 4
    if nbytes > MAX_VOLUME_BYTES:
        raise ReadError(
            where,
            f"would need {nbytes / 2**30:.1f} GiB for {n_slices} slices of {rows}x{cols}, more "
            f"than the {MAX_VOLUME_BYTES / 2**30:.1f} GiB limit "
            "(raise MEDFORENSICS_MAX_VOLUME_BYTES if this machine has the memory)",
        )


def _spacing_in_plane(header: DicomHeader) -> tuple[float, float]:
    if header.pixel_spacing is None:
        return math.nan, math.nan
    return float(header.pixel_spacing[0]), float(header.pixel_spacing[1])


def _modality_is_physical(modality: str) -> bool:
    # HU for CT (and PET's SUV-ready values); other modalities keep stored values
    return modality in ("CT", "PT")


def assemble_series(
    input_label: str, headers: list[DicomHeader], key: SeriesKey | None = None
) -> ImageVolume:
    """Read the pixels of a single-frame series into one volume, slice by slice.

    ``key``: the series' key from ``group_series``; when the series was split by geometry, a
    problem says so.

    Raises:
        ReadError: inconsistent slice sizes, undecodable or truncated pixel data, too large.
    """
    problems: list[str] = []
    part = key if key is not None and key.parts > 1 else None
    if part is not None:
        problems.append(
            f"series {part.series_uid} holds {part.parts} {part.split}, analysed apart; "
            f"this part: {part.geometry}, {len(headers)} file(s)"
        )
    ordered = _dedupe_and_sort(headers, problems)
    _check_uniform(ordered)
    first = ordered[0]
    _check_volume_size(len(ordered), first.rows, first.cols, str(first.path.parent))
    positions = (
        np.array([h.position for h in ordered], dtype=np.float64)
        if all(h.position is not None for h in ordered)
        else None
    )
    physical = _modality_is_physical(first.modality)
    pixels = np.empty((len(ordered), first.rows, first.cols), dtype=np.float32)
    for z, header in enumerate(ordered):
        frames = read_frames(header, physical=physical)
        pixels[z] = frames[0]
        _drop_pixels(header)
    copies = _copies(ordered, positions, pixels, problems)
    if copies:
        keep = [z for z in range(len(ordered)) if z not in copies]
        ordered = [ordered[z] for z in keep]
        pixels = pixels[keep]
        positions = positions[keep] if positions is not None else None
    spacing_z = _slice_spacing(ordered, positions, problems)
    syntaxes = tuple(sorted({h.transfer_syntax for h in ordered}))
    return ImageVolume(
        input=input_label,
        kind="dicom-series",
        modality=first.modality,
        pixels=pixels,
        spacing=(spacing_z, *_spacing_in_plane(first)),
        slices=tuple(SliceRef(h.path, h.sop_instance_uid) for h in ordered),
        row_direction=_direction(first.orientation, 0),
        col_direction=_direction(first.orientation, 3),
        positions=positions,
        series_uid=first.series_uid,
        study_uid=first.study_uid,
        transfer_syntax=syntaxes,
        bits_stored=first.bits_stored,
        channels=first.samples,
        attributes=_attributes(first, syntaxes, len(ordered))
        | ({"SeriesPart": f"{part.part} of {part.parts}: {part.geometry}"} if part else {}),
        problems=problems,
    )


def _copies(
    ordered: list[DicomHeader],
    positions: np.ndarray | None,
    pixels: np.ndarray,
    problems: list[str],
) -> set[int]:
    """Slices that repeat the slice before them exactly, at the same position: one image
    stored twice under two instance UIDs (re-sent after a re-encoding, say). The first copy is
    analysed and a problem names both files; two images that merely share a position (echoes,
    phases) differ in their pixels and both stay."""
    if positions is None:
        return set()
    copies: set[int] = set()
    for z in range(1, len(ordered)):
        if np.abs(positions[z] - positions[z - 1]).max() >= _SAME_POSITION_MM:
            continue
        if np.array_equal(pixels[z], pixels[z - 1]):
            copies.add(z)
            problems.append(
                f"{ordered[z - 1].path.name} and {ordered[z].path.name} hold the same image at "
                "the same position under two instance UIDs (one image stored twice); the "
                "second copy was ignored"
            )
    return copies


def _drop_pixels(header: DicomHeader) -> None:
    """Forget the decoded pixels held by the dataset so memory stays at one volume."""
    ds = header.dataset
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            del ds[keyword]
    ds._pixel_array = None  # pydicom's cache of the decoded array
    ds._pixel_id = {}


def _direction(
    orientation: tuple[float, ...] | None, start: int
) -> tuple[float, float, float] | None:
    if orientation is None:
        return None
    return (orientation[start], orientation[start + 1], orientation[start + 2])


def _attributes(header: DicomHeader, syntaxes: tuple[str, ...], n_files: int) -> dict[str, str]:
    attributes = dict(header.attributes)
    attributes["TransferSyntax"] = ", ".join(transfer_syntax_name(s) for s in syntaxes)
    attributes["Files"] = str(n_files)
    if header.sop_class_uid:
        attributes["SOPClass"] = transfer_syntax_name(header.sop_class_uid)
    return attributes


def _frame_geometry(
    header: DicomHeader,
) -> tuple[
    list[tuple[float, float, float] | None],
    tuple[float, ...] | None,
    tuple[float, ...] | None,
    float | None,
]:
    """Per-frame positions, orientation, pixel spacing and thickness of a multi-frame file."""
    ds = header.dataset
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []

    def find(group: object, sequence: str, keyword: str) -> object:
        if group is None:
            return None
        items = getattr(group, sequence, None) if hasattr(group, sequence) else None
        if not items:
            return None
        return items[0].get(keyword)

    from medforensics.io.dicom import _float, _floats

    orientation = _floats(find(shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    spacing = _floats(find(shared, "PixelMeasuresSequence", "PixelSpacing"), 2)
    thickness = _float(find(shared, "PixelMeasuresSequence", "SliceThickness"))
    positions: list[tuple[float, float, float] | None] = []
    for k in range(header.frames):
        group = per_frame[k] if k < len(per_frame) else None
        position = _floats(find(group, "PlanePositionSequence", "ImagePositionPatient"), 3)
        positions.append(position)  # type: ignore[arg-type]
        if orientation is None:
            orientation = _floats(
                find(group, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
            )
        if spacing is None:
            spacing = _floats(find(group, "PixelMeasuresSequence", "PixelSpacing"), 2)
        if thickness is None:
            thickness = _float(find(group, "PixelMeasuresSequence", "SliceThickness"))
    orientation = orientation or header.orientation
    spacing = spacing or header.pixel_spacing
    return positions, orientation, spacing, thickness or header.slice_thickness


#: per-frame functional group attributes that tell apart stacks of frames sharing positions in
#: one enhanced file, in the order they are tried (as ``STACK_ATTRIBUTES`` for single frames)
FRAME_STACK_ATTRIBUTES = (
    ("FrameContentSequence", "StackID", "stack {}"),
    ("MREchoSequence", "EffectiveEchoTime", "echo time {} ms"),
    ("FrameContentSequence", "TemporalPositionIndex", "time point {}"),
    ("MRDiffusionSequence", "DiffusionBValue", "b = {} s/mm²"),
    ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime", "trigger delay {} ms"),
    ("MRImageFrameTypeSequence", "FrameType", "frame type {}"),
    ("CTImageFrameTypeSequence", "FrameType", "frame type {}"),
)


def _frame_stacks(
    header: DicomHeader, positions: list[tuple[float, float, float] | None], normal: np.ndarray
) -> list[tuple[str, list[int]]] | None:
    """Frames of one file split into stacks when several share each position (the echoes,
    time points or b-values of an enhanced MR), by the first of ``FRAME_STACK_ATTRIBUTES``
    that takes as many values as the most frames at one position and leaves no position twice
    in a stack: ``(label, frames)`` per stack, or ``None``."""
    along = [float(np.dot(normal, np.asarray(p))) for p in positions]
    per_frame = header.dataset.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = header.dataset.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None

    def frame_values(sequence: str, keyword: str) -> list[str | None]:
        return [
            _group_value(per_frame[k] if k < len(per_frame) else None, sequence, keyword)
            or _group_value(shared, sequence, keyword)
            for k in range(header.frames)
        ]

    candidates = (
        (keyword, label, frame_values(sequence, keyword))
        for sequence, keyword, label in FRAME_STACK_ATTRIBUTES
    )
    chosen = _stack_attribute(candidates, along)
    if chosen is None:
        return None
    _, label, values = chosen
    order = sorted(set(values), key=_sort_key)
    return [(label.format(v), [k for k in range(header.frames) if values[k] == v]) for v in order]


def _group_value(group: object, sequence: str, keyword: str) -> str | None:
    """``keyword`` of the first item of ``sequence`` in a functional group, as text."""
    items = getattr(group, sequence, None) if group is not None else None
    return _as_text(items[0].get(keyword)) if items else None


def assemble_multiframes(input_label: str, header: DicomHeader) -> list[ImageVolume]:
    """The volumes of one multi-frame file: one, or one per stack when several frames share
    each position and a per-frame attribute tells the stacks apart (``_frame_stacks``)."""
    _check_volume_size(header.frames, header.rows, header.cols, str(header.path))
    positions, orientation, _, _ = _frame_geometry(header)
    if orientation is None or any(p is None for p in positions) or header.frames < 2:
        return [assemble_multiframe(input_label, header)]
    stacks = _frame_stacks(header, positions, slice_normal(orientation))
    if stacks is None:
        return [assemble_multiframe(input_label, header)]
    frames = _decoded_frames(header)
    out = []
    for index, (label, members) in enumerate(stacks):
        part = SeriesKey(
            header.series_uid or str(header.path),
            label,
            len(stacks),
            index + 1,
            "stacks of frames at the same positions (echoes, phases or b-values)",
        )
        out.append(assemble_multiframe(input_label, header, members, part, frames))
    return out


def _decoded_frames(header: DicomHeader) -> np.ndarray:
    frames = read_frames(header, physical=_modality_is_physical(header.modality))
    if frames.shape[0] != header.frames:
        raise ReadError(
            header.path,
            f"declares {header.frames} frames but its pixel data holds {frames.shape[0]}",
        )
    return frames


def assemble_multiframe(
    input_label: str,
    header: DicomHeader,
    members: Sequence[int] | None = None,
    part: SeriesKey | None = None,
    decoded: np.ndarray | None = None,
) -> ImageVolume:
    """One multi-frame file (enhanced CT/MR or classic multi-frame), frames sorted by position;
    ``members``: only these frames (one stack of the file, ``part`` says which), from the
    ``decoded`` frames when the caller has them."""
    problems: list[str] = []
    _check_volume_size(header.frames, header.rows, header.cols, str(header.path))
    positions, orientation, spacing, thickness = _frame_geometry(header)
    frames = decoded if decoded is not None else _decoded_frames(header)
    if part is not None:
        problems.append(
            f"{header.path.name} holds {part.parts} {part.split}, analysed apart; this part: "
            f"{part.geometry}, {len(members or [])} frame(s)"
        )
    order = list(members) if members is not None else list(range(header.frames))
    position_array: np.ndarray | None = None
    spacing_z = thickness if thickness else math.nan
    if orientation is not None and all(p is not None for p in positions):
        normal = slice_normal(orientation)
        position_array = np.array(positions, dtype=np.float64)
        along = position_array @ normal
        order = sorted(order, key=lambda k: (float(along[k]), k))
        position_array = position_array[order]
        steps = np.diff(along[order])
        moving = steps[np.abs(steps) >= _SAME_POSITION_MM]
        if moving.size:
            spacing_z = float(np.median(moving))
        if moving.size < steps.size:
            problems.append(
                f"{steps.size - moving.size} frame(s) share a position with another frame "
                "(several stacks, phases or echoes in one file?)"
            )
        if moving.size and np.any(moving > _GAP_FACTOR * spacing_z):
            problems.append("frame positions have gaps larger than the typical spacing")
    elif header.frames > 1:
        problems.append("frames carry no plane positions; they are kept in stored order")
    pixels = frames[order] if order != list(range(header.frames)) else frames
    return ImageVolume(
        input=input_label,
        kind="dicom-multiframe",
        modality=header.modality,
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        spacing=(
            spacing_z,
            spacing[0] if spacing is not None else math.nan,
            spacing[1] if spacing is not None else math.nan,
        ),
        slices=tuple(SliceRef(header.path, header.sop_instance_uid, frame=k) for k in order),
        row_direction=_direction(orientation, 0),
        col_direction=_direction(orientation, 3),
        positions=position_array,
        series_uid=header.series_uid,
        study_uid=header.study_uid,
        transfer_syntax=(header.transfer_syntax,),
        bits_stored=header.bits_stored,
        channels=header.samples,
        attributes=_attributes(header, (header.transfer_syntax,), 1)
        | ({"SeriesPart": f"{part.part} of {part.parts}: {part.geometry}"} if part else {}),
        problems=problems,
    )
