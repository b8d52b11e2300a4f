"""Synthetic samples made by the project: phantoms for tests, the demo and benchmarks."""

from __future__ import annotations

from medforensics.samples.phantom import chest_ct_phantom, correlated_noise, radiograph_phantom
from medforensics.samples.write import write_ct_series, write_dicom_image

__all__ = [
    "chest_ct_phantom",
    "correlated_noise",
    "radiograph_phantom",
    "write_ct_series",
    "write_dicom_image",
]
