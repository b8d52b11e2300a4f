"""Lesion annotations: read a site's tumour boxes and find them in loaded volumes.

The dataset builder uses them for ``TM`` rows (a real, untouched lesion) and to make ``remove``
erase a real finding (``FB``). Three CSV layouts are read, told apart by their header (names
matched without regard to case or surrounding spaces; extra columns are ignored):

* **box CSV** (e.g. the TCIA Lung-PET-CT-Dx boxes flattened to ``tumor_bboxes.csv``):
  ``xmin,ymin,xmax,ymax`` in pixels, *inclusive* (the Pascal VOC convention of those XMLs), with
  ``sop_instance_uid`` and/or ``dicom_file``; a ``class...`` or ``label`` column is the label.
* **CT-GAN labels** (``type,uuid,slice,x,y``, read by
  ``medforensics.evaluate.ctgan_format.read_ctgan_labels``): each ``TM`` row (real cancer) is a
  point that becomes a box of ``point_radius_px`` around it, on the slices within the same radius
  in mm; ``uuid`` is matched against the series UID and the scan's folder or file name. Other
  types (``TB`` no lesion, ``FB``/``FM`` rows of tampered scans) are not lesions and are skipped.
* **generic CSV**: ``sop_instance_uid`` or ``series_uid`` + ``slice``, and ``x0,y0,x1,y1`` in
  pixels, *half-open* (``x1``/``y1`` one past the last pixel, like Python slices); optional
  ``label``.

A row is found in a volume by its SOPInstanceUID when it has one, else by series + 0-based slice
index along the sorted series, else by its file path (the trailing parts of a slice's file).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medforensics.io.types import ImageVolume

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

#: ``(z0, z1, y0, y1, x0, x1)``, half-open voxel indices: the ``box`` of the ``remove`` attack
Box3D = tuple[int, int, int, int, int, int]

#: half-size in pixels of the box a CT-GAN point becomes, by default
DEFAULT_POINT_RADIUS_PX = 10.0

_SOP = ("sop_instance_uid", "sopinstanceuid")
_SERIES = ("series_uid", "seriesinstanceuid", "series_instance_uid")
_SLICE = ("slice", "slice_index")
_FILE = ("dicom_file", "file")
_INCLUSIVE = ("xmin", "ymin", "xmax", "ymax")
_HALF_OPEN = ("x0", "y0", "x1", "y1")


class AnnotationError(ValueError):
    """An annotations file that cannot be read; the message names the file and line."""


@dataclass(frozen=True, kw_only=True)
class Lesion:
    """One annotated lesion on one slice (or one point, for CT-GAN labels).

    Attributes:
        sop_instance_uid: the slice's SOPInstanceUID, or None.
        series_uid: the series UID (or, for CT-GAN labels, the scan's uuid), or None.
        file: the slice's file path as written in the annotations, or None.
        slice: 0-based slice index along the sorted series, or None.
        box: ``(y0, y1, x0, x1)`` in pixels, half-open.
        label: the annotation's class or label text ("" when none).
        radius_px: for point annotations, the radius the box was grown by; the lesion then also
            spans the slices within that radius (in mm) of its slice.
        source: ``file:line`` the lesion was read from, for messages.
    """

    sop_instance_uid: str | None = None
    series_uid: str | None = None
    file: str | None = None
    slice: int | None = None
    box: tuple[int, int, int, int]
    label: str = ""
    radius_px: float | None = None
    source: str = ""

    def describe(self) -> str:
        """``file:line (identifier)`` for messages."""
        if self.sop_instance_uid:
            what = f"SOP instance {self.sop_instance_uid}"
        elif self.series_uid is not None:
            what = f"series {self.series_uid} slice {self.slice}"
        else:
            what = f"file {self.file}"
        return f"{self.source} ({what})" if self.source else what


def read_annotations(
    path: str | Path, point_radius_px: float = DEFAULT_POINT_RADIUS_PX
) -> list[Lesion]:
    """Read lesion annotations in any of the three layouts (see the module docstring).

    Args:
        path: the CSV file.
        point_radius_px: half-size of the box a CT-GAN point becomes.

    Raises:
        AnnotationError: naming the file (and line) when the file is missing, its header fits
            no layout, a column is missing, or a value is not a number.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise AnnotationError(f"{csv_path}: annotations file not found")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise AnnotationError(f"{csv_path}: the file is empty; expected a header line")
        columns = {name.strip().lower(): index for index, name in enumerate(header)}
        if "uuid" in columns:  # read_ctgan_labels names any other missing column
            return _ctgan_lesions(csv_path, point_radius_px)
        if any(name in columns for name in _INCLUSIVE):
            return _box_lesions(csv_path, reader, header, columns, _INCLUSIVE, inclusive=True)
        if any(name in columns for name in _HALF_OPEN):
            return _box_lesions(csv_path, reader, header, columns, _HALF_OPEN, inclusive=False)
    raise AnnotationError(
        f"{csv_path}:1: the header fits no annotation layout (found {', '.join(header)}); "
        "expected xmin,ymin,xmax,ymax (box CSV), type,uuid,slice,x,y (CT-GAN) or "
        "x0,y0,x1,y1 with sop_instance_uid or series_uid,slice (generic)"
    )


def match_slices(volume: ImageVolume, lesions: Sequence[Lesion]) -> list[int | None]:
    """The slice of ``volume`` each lesion is on, or None where it is not in this volume."""
    index = _SliceIndex(volume)
    return [index.slice_of(lesion) for lesion in lesions]


def lesions_in(volume: ImageVolume, lesions: Sequence[Lesion]) -> list[Box3D]:
    """The 3D boxes of the annotated lesions found in ``volume``, sorted.

    Per-slice boxes are joined into one lesion when they are on the same or adjacent slices and
    overlap in-plane (so a tumour drawn on 11 consecutive slices is one box 11 slices deep).
    Boxes are clipped to the image; one left empty is dropped.
    """
    n_slices, rows, cols = volume.shape
    z_mm, row_mm = volume.spacing[0], volume.spacing[1]  # NaN when unknown: no z extent
    pieces: list[Box3D] = []
    for lesion, z in zip(lesions, match_slices(volume, lesions), strict=True):
        if z is None:
            continue
        half_z = 0
        if lesion.radius_px and z_mm > 0 and row_mm > 0:
            half_z = int(lesion.radius_px * row_mm / z_mm)
        y0, y1, x0, x1 = lesion.box
        box = (
            max(z - half_z, 0),
            min(z + half_z + 1, n_slices),
            max(y0, 0),
            min(y1, rows),
            max(x0, 0),
            min(x1, cols),
        )
        if box[0] < box[1] and box[2] < box[3] and box[4] < box[5]:
            pieces.append(box)
    return _merge(pieces)


def lesion_centre(box: Box3D) -> tuple[int, int, int]:
    """``(slice, row, col)`` centre of a box, as the ``remove`` attack reports it."""
    z0, z1, y0, y1, x0, x1 = box
    return (z0 + z1 - 1) // 2, (y0 + y1 - 1) // 2, (x0 + x1 - 1) // 2


class _SliceIndex:
    """Look-ups from the identifiers annotations use to slice indices of one volume."""

    def __init__(self, volume: ImageVolume) -> None:
        self.n_slices = volume.shape[0]
        self.by_uid = {
            ref.sop_instance_uid: z
            for z, ref in enumerate(volume.slices)
            if ref.sop_instance_uid is not None
        }
        self.names = {volume.series_uid} if volume.series_uid else set()
        parents = {ref.source_file.parent.name for ref in volume.slices}
        if len(parents) == 1 and len(volume.slices) > 1:  # one folder per series
            self.names |= parents
        if volume.kind != "dicom-series":  # a scan stored as one file: uuid.mhd, x.nii.gz
            name = Path(volume.input).name
            self.names |= {name, name.split(".")[0]}
        self.files = [ref.source_file.parts for ref in volume.slices]

    def slice_of(self, lesion: Lesion) -> int | None:
        if lesion.sop_instance_uid:
            return self.by_uid.get(lesion.sop_instance_uid)
        if lesion.series_uid is not None and lesion.slice is not None:
            if lesion.series_uid in self.names and 0 <= lesion.slice < self.n_slices:
                return lesion.slice
            return None
        if lesion.file:
            wanted = tuple(part for part in Path(lesion.file).parts if part not in ("", "."))
            for z, parts in enumerate(self.files):
                if wanted and parts[-len(wanted) :] == wanted:
                    return z
        return None


def _merge(pieces: list[Box3D]) -> list[Box3D]:
    """Union of boxes that touch along z (same or adjacent slices) and overlap in-plane."""
    order = sorted(range(len(pieces)), key=lambda i: pieces[i])
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for position, i in enumerate(order):
        a = pieces[i]
        for j in order[position + 1 :]:
            b = pieces[j]
            if b[0] > a[1]:  # sorted by z0: nothing later touches a along z
                break
            if max(a[2], b[2]) < min(a[3], b[3]) and max(a[4], b[4]) < min(a[5], b[5]):
                parent[root(j)] = root(i)
    groups: dict[int, list[Box3D]] = {}
    for i, box in enumerate(pieces):
        groups.setdefault(root(i), []).append(box)
    merged = [
        (
            min(b[0] for b in group),
            max(b[1] for b in group),
            min(b[2] for b in group),
            max(b[3] for b in group),
            min(b[4] for b in group),
            max(b[5] for b in group),
        )
        for group in groups.values()
    ]
    return sorted(merged)


def _ctgan_lesions(path: Path, radius_px: float) -> list[Lesion]:
    # imported here: medforensics.evaluate loads scikit-learn, which the builder does not need
    from medforensics.evaluate.ctgan_format import CtganFormatError, read_ctgan_labels

    match = re.search(r"exp(\d+)", path.name, re.IGNORECASE)
    try:
        locations = read_ctgan_labels(path, int(match.group(1)) if match else 1)
    except CtganFormatError as error:
        raise AnnotationError(str(error)) from error
    radius = max(round(radius_px), 0)
    return [
        Lesion(
            series_uid=location.uuid,
            slice=location.slice,
            box=(
                max(location.y - radius, 0),
                location.y + radius + 1,
                max(location.x - radius, 0),
                location.x + radius + 1,
            ),
            label="TM",
            radius_px=float(radius),
            source=location.source,
        )
        for location in locations
        if location.type == "TM"
    ]


def _box_lesions(
    path: Path,
    reader: CsvReader,
    header: list[str],
    columns: dict[str, int],
    box_names: tuple[str, str, str, str],
    inclusive: bool,
) -> list[Lesion]:
    missing = [name for name in box_names if name not in columns]
    if missing:
        raise AnnotationError(
            f"{path}:1: missing column(s) {', '.join(missing)}; a box needs "
            f"{','.join(box_names)} (found {', '.join(header)})"
        )
    sop, series, slice_column, file = (
        _first(columns, names) for names in (_SOP, _SERIES, _SLICE, _FILE)
    )
    if sop is None and file is None and series is None:
        raise AnnotationError(
            f"{path}:1: missing column sop_instance_uid (or series_uid with slice, or "
            f"dicom_file) to find each box's image by (found {', '.join(header)})"
        )
    label = columns.get("label")
    if label is None:
        label = next((i for name, i in columns.items() if name.startswith("class")), None)
    lesions = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{reader.line_num}"
        if len(row) < len(header):
            raise AnnotationError(f"{where}: expected {len(header)} values, got {len(row)}")
        x0, y0, x1, y1 = (_number(_cell(row, columns[name]), name, where) for name in box_names)
        end = 1 if inclusive else 0  # inclusive xmax is the last pixel: one past it is +1
        box = (math.floor(y0), math.ceil(y1) + end, math.floor(x0), math.ceil(x1) + end)
        if box[1] <= box[0] or box[3] <= box[2]:
            raise AnnotationError(
                f"{where}: the box {','.join(box_names)} = {_cell(row, columns[box_names[0]])},"
                f"{_cell(row, columns[box_names[1]])},{_cell(row, columns[box_names[2]])},"
                f"{_cell(row, columns[box_names[3]])} is empty"
            )
        slice_text = _cell(row, slice_column)
        lesion = Lesion(
            sop_instance_uid=_cell(row, sop) or None,
            series_uid=_cell(row, series) or None,
            file=_cell(row, file) or None,
            slice=_slice(slice_text, where) if slice_text else None,
            box=(max(box[0], 0), box[1], max(box[2], 0), box[3]),
            label=_cell(row, label),
            source=where,
        )
        findable = lesion.series_uid is not None and lesion.slice is not None
        if lesion.sop_instance_uid is None and lesion.file is None and not findable:
            raise AnnotationError(
                f"{where}: no sop_instance_uid, series_uid + slice or dicom_file to find the "
                "image of this box by"
            )
        lesions.append(lesion)
    return lesions


def _cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def _first(columns: dict[str, int], names: Sequence[str]) -> int | None:
    return next((columns[name] for name in names if name in columns), None)


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: {column} {text!r} is not a finite number")
    return value


def _slice(text: str, where: str) -> int:
    value = _number(text, "slice", where)
    if value != int(value) or value < 0:
        raise AnnotationError(f"{where}: slice {text!r} is not a slice index (0, 1, 2...)")
    return int(value)


__all__ = [
    "DEFAULT_POINT_RADIUS_PX",
    "AnnotationError",
    "Box3D",
    "Lesion",
    "lesion_centre",
    "lesions_in",
    "match_slices",
    "read_annotations",
]
