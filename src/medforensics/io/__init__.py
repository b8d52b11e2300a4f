"""Reading medical images into ``ImageVolume`` objects: DICOM, NIfTI, PNG/JPEG/TIFF, zip."""

from __future__ import annotations

from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume, LoadError, ReadError, SliceRef

__all__ = ["ImageVolume", "LoadError", "ReadError", "SliceRef", "load_paths"]
