"""Voxel grids in millimetres: where a voxel of a series lies in patient space.

A DICOM series places its first voxel at ImagePositionPatient, steps along rows and columns by
PixelSpacing in the directions of ImageOrientationPatient, and from slice to slice by the
difference of successive positions. ``VoxelGrid`` holds that affine map, so a point given once in
patient coordinates (mm) can be found in every series of a study, whatever their matrices, slice
thickness and orientation.

When a volume carries no position or orientation (NIfTI as read here, headerless images), the
fallback is its voxel grid scaled by its spacing, with the corner of the field of view at the
origin: series of the same field of view still line up, but nothing is known about orientation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import spacing_mm

#: how a grid was placed: from the DICOM geometry, or from voxel indices times spacing
Frame = Literal["patient", "voxel-index"]


@dataclass(frozen=True)
class VoxelGrid:
    """The affine map from ``(slice, row, col)`` indices to millimetres.

    Attributes:
        origin: ``(3,)`` position (mm) of the centre of voxel ``(0, 0, 0)``.
        steps: ``(3, 3)``; row ``k`` is the mm vector of one step along index axis ``k``.
        shape: ``(slices, rows, cols)`` of the volume.
        frame: ``"patient"`` (DICOM patient coordinates) or ``"voxel-index"`` (fallback).
        thickness_mm: slice thickness (SliceThickness when known, else the slice spacing).
    """

    origin: np.ndarray
    steps: np.ndarray
    shape: tuple[int, int, int]
    frame: Frame
    thickness_mm: float

    @property
    def spacing(self) -> np.ndarray:
        """mm per index step along ``(slice, row, col)``."""
        return np.asarray(np.linalg.norm(self.steps, axis=1))

    @property
    def axes(self) -> np.ndarray:
        """``(3, 3)`` unit vectors of the index axes (slice normal, down the rows, along a row)."""
        return np.asarray(self.steps / self.spacing[:, None])

    def to_mm(self, index: np.ndarray | Sequence[float]) -> np.ndarray:
        """Millimetre position(s) of ``(..., 3)`` indices (fractional indices allowed)."""
        return np.asarray(self.origin + np.asarray(index, dtype=np.float64) @ self.steps)

    def to_index(self, points: np.ndarray | Sequence[float]) -> np.ndarray:
        """Fractional ``(..., 3)`` indices of millimetre position(s)."""
        offsets = np.asarray(points, dtype=np.float64) - self.origin
        return np.asarray(np.linalg.solve(self.steps.T, offsets.reshape(-1, 3).T).T).reshape(
            offsets.shape
        )

    def nearest_voxel(self, point: np.ndarray | Sequence[float]) -> tuple[int, int, int]:
        """The voxel whose centre is nearest ``point``, clipped into the volume."""
        index = np.rint(self.to_index(point)).astype(int)
        z, y, x = (int(min(max(i, 0), n - 1)) for i, n in zip(index, self.shape, strict=True))
        return z, y, x

    def margins(self, reach_mm: float) -> np.ndarray:
        """Voxels to keep free on each side of a region of radius ``reach_mm``, per axis.

        In-plane a region needs ``ceil(reach / spacing) + 1`` pixels (the attacks' boxes); along
        the slice axis only the slices whose centre plane the region crosses; never more than
        half the axis.
        """
        spacing = self.spacing
        need = np.array(
            [
                int(reach_mm / spacing[0]),
                math.ceil(reach_mm / spacing[1]) + 1,
                math.ceil(reach_mm / spacing[2]) + 1,
            ],
            dtype=np.float64,
        )
        return np.asarray(np.minimum(need, (np.asarray(self.shape) - 1) / 2.0))

    def covers(self, points: np.ndarray, reach_mm: float = 0.0) -> np.ndarray:
        """Which ``(..., 3)`` mm points lie inside the volume, ``margins(reach_mm)`` from a face."""
        index = self.to_index(points)
        margin = self.margins(reach_mm)
        # with no margin a point may lie anywhere in the outer voxels' extent; with one, the
        # nearest voxel must be at least ``margin`` from the face
        lower = np.where(margin > 0, margin, -0.5)
        upper = np.asarray(self.shape) - 1 - np.where(margin > 0, margin, -0.5)
        return np.asarray(np.all((index >= lower) & (index <= upper), axis=-1))

    def box_around(self, point: np.ndarray, reach_mm: float) -> tuple[slice, slice, slice]:
        """The index box holding every voxel within ``reach_mm`` of ``point``, clipped."""
        corners = np.array(
            [[sz, sy, sx] for sz in (-1, 1) for sy in (-1, 1) for sx in (-1, 1)], dtype=np.float64
        )
        index = self.to_index(np.asarray(point) + reach_mm * corners)
        low = np.floor(index.min(axis=0)).astype(int)
        high = np.ceil(index.max(axis=0)).astype(int) + 1
        z, y, x = (
            slice(int(max(lo, 0)), int(min(hi, n)))
            for lo, hi, n in zip(low, high, self.shape, strict=True)
        )
        return z, y, x

    def voxel_mm(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        """``box.shape + (3,)`` millimetre positions of the voxel centres in ``box``."""
        grids = np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij")
        return self.to_mm(np.stack(grids, axis=-1))


def _thickness(volume: ImageVolume, spacing: float) -> float:
    try:
        thickness = float(volume.attributes.get("SliceThickness", "nan"))
    except ValueError:
        thickness = math.nan
    return thickness if math.isfinite(thickness) and thickness > 0 else spacing


def patient_grid(volume: ImageVolume) -> VoxelGrid | None:
    """The grid from ImagePositionPatient / ImageOrientationPatient / PixelSpacing, if known."""
    positions = volume.positions
    if positions is None or volume.row_direction is None or volume.col_direction is None:
        return None
    row_spacing, col_spacing = volume.spacing[1], volume.spacing[2]
    if not all(math.isfinite(s) and s > 0 for s in (row_spacing, col_spacing)):
        return None
    along_row = np.asarray(volume.row_direction, dtype=np.float64)  # increasing column index
    down_col = np.asarray(volume.col_direction, dtype=np.float64)  # increasing row index
    normal = np.cross(along_row, down_col)
    if np.linalg.norm(normal) < 1e-6:
        return None
    n = volume.shape[0]
    if n > 1:
        step = (positions[-1] - positions[0]) / (n - 1)
        if np.linalg.norm(step) < 1e-6:  # all slices at one position: no slice axis to map
            return None
    else:
        step = normal / np.linalg.norm(normal) * spacing_mm(volume)[0]
    steps = np.stack([step, row_spacing * down_col, col_spacing * along_row])
    return VoxelGrid(
        origin=np.asarray(positions[0], dtype=np.float64),
        steps=steps,
        shape=volume.shape,
        frame="patient",
        thickness_mm=_thickness(volume, float(np.linalg.norm(step))),
    )


def index_grid(volume: ImageVolume) -> VoxelGrid:
    """The fallback grid: voxel indices times spacing, field-of-view corner at the origin."""
    spacing = np.asarray(spacing_mm(volume), dtype=np.float64)
    return VoxelGrid(
        origin=spacing / 2.0,
        steps=np.diag(spacing),
        shape=volume.shape,
        frame="voxel-index",
        thickness_mm=_thickness(volume, float(spacing[0])),
    )


def study_grids(volumes: Sequence[ImageVolume]) -> tuple[list[VoxelGrid], list[str]]:
    """One grid per volume, all in one frame; and the inputs that forced the fallback.

    Patient coordinates are used when every volume has them; if any lacks them, every volume
    gets the voxel-index grid (mixing the two frames would place the point nowhere in
    particular).
    """
    grids = [patient_grid(volume) for volume in volumes]
    missing = [volume.input for volume, grid in zip(volumes, grids, strict=True) if grid is None]
    if missing:
        return [index_grid(volume) for volume in volumes], missing
    return [grid for grid in grids if grid is not None], []
