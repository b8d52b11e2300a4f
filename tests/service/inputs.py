"""Small synthetic inputs for service tests: PNG radiographs, DICOM files, zips, NIfTI."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from medforensics.samples import (
    chest_ct_phantom,
    radiograph_phantom,
    write_ct_series,
    write_dicom_image,
)


def png_bytes(size: int = 128, seed: int = 0) -> bytes:
    """A radiograph phantom as an 8-bit PNG."""
    image = radiograph_phantom(size, rng=np.random.default_rng(seed))[0]
    buffer = io.BytesIO()
    Image.fromarray((image / 16).clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def dicom_radiograph(folder: Path, size: int = 128, seed: int = 0) -> Path:
    image = radiograph_phantom(size, rng=np.random.default_rng(seed))
    return write_dicom_image(image, folder / f"dx-{seed}.dcm")


def ct_series_files(folder: Path, slices: int = 6, size: int = 64, seed: int = 1) -> list[Path]:
    volume = chest_ct_phantom(n_slices=slices, size=size, rng=np.random.default_rng(seed))
    return write_ct_series(volume, folder)


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def series_zip_bytes(folder: Path, slices: int = 6, size: int = 64, seed: int = 1) -> bytes:
    files = ct_series_files(folder, slices=slices, size=size, seed=seed)
    return zip_bytes({f"series/{path.name}": path.read_bytes() for path in files})


def nifti_bytes(folder: Path) -> bytes:
    import nibabel as nib

    volume = np.random.default_rng(3).normal(100, 10, (48, 40, 4)).astype(np.float32)
    path = folder / "brain.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    return path.read_bytes()
