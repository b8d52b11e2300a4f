"""NIfTI reading: the axis contract, spacing, scaling, 4D and damaged or oversized files."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medforensics.io import nifti
from medforensics.io.loader import load_paths
from medforensics.io.nifti import read_nifti
from medforensics.io.types import ImageVolume, LoadError, ReadError


def _distinct_volume(shape: tuple[int, ...] = (4, 5, 6)) -> np.ndarray:
    """Every voxel a different value, so a swapped axis cannot go unnoticed."""
    return np.arange(math.prod(shape), dtype=np.int16).reshape(shape)


def _save(
    path: Path, data: np.ndarray, zooms: tuple[float, ...] | None = None, descrip: str = ""
) -> Path:
    image = nib.Nifti1Image(data, np.eye(4))
    if zooms is not None:
        image.header.set_zooms(zooms)
    if descrip:
        image.header["descrip"] = descrip.encode()
    nib.save(image, path)
    return path


def _write_scaled_nifti(path: Path, raw: np.ndarray, slope: float, inter: float) -> Path:
    """Write header and raw voxels by hand so scl_slope/scl_inter are exactly as given."""
    header = nib.Nifti1Header()
    header.set_data_dtype(raw.dtype)
    header.set_data_shape(raw.shape)
    header.set_slope_inter(slope, inter)
    with path.open("wb") as handle:
        header.write_to(handle)
        handle.write(b"\0" * (int(header.get_data_offset()) - handle.tell()))
        handle.write(raw.tobytes(order="F"))
    return path


@pytest.mark.parametrize("name", ["volume.nii", "volume.nii.gz"])
def test_3d_round_trip_follows_the_axis_contract(tmp_path: Path, name: str) -> None:
    data = _distinct_volume()
    path = _save(tmp_path / name, data, zooms=(0.5, 0.75, 2.0), descrip="unit test")

    volume = read_nifti(path, name)

    assert volume.kind == "nifti"
    assert volume.modality == "MR"
    assert volume.input == name
    assert volume.pixels.dtype == np.float32
    assert volume.shape == (6, 4, 5)
    assert volume.pixels[3, 1, 2] == data[1, 2, 3]
    for i, j, k in np.ndindex(*data.shape):
        assert volume.pixels[k, i, j] == data[i, j, k]
    assert volume.spacing == pytest.approx((2.0, 0.5, 0.75))
    assert [ref.frame for ref in volume.slices] == list(range(6))
    assert all(ref.source_file == path for ref in volume.slices)
    assert volume.attributes["descrip"] == "unit test"
    assert volume.attributes["datatype"] == "int16"
    assert {"qform_code", "sform_code"} <= volume.attributes.keys()
    assert volume.bits_stored == 16
    assert volume.problems == []


def test_scl_slope_and_inter_are_applied_once(tmp_path: Path) -> None:
    raw = _distinct_volume()
    path = _write_scaled_nifti(tmp_path / "scaled.nii", raw, slope=2.0, inter=-5.0)

    volume = read_nifti(path, "scaled.nii")

    np.testing.assert_array_equal(volume.pixels, raw.transpose(2, 0, 1) * 2.0 - 5.0)
    assert volume.attributes["scl_slope"] == "2"
    assert volume.attributes["scl_inter"] == "-5"


def test_spatial_units_are_converted_to_millimetres(tmp_path: Path) -> None:
    image = nib.Nifti1Image(_distinct_volume(), np.eye(4))
    image.header.set_zooms((500.0, 250.0, 1000.0))
    image.header.set_xyzt_units(xyz="micron")
    path = tmp_path / "microns.nii"
    nib.save(image, path)

    volume = read_nifti(path, "microns.nii")

    assert volume.spacing == pytest.approx((1.0, 0.5, 0.25))
    assert volume.attributes["xyz_units"] == "micron"


def test_4d_keeps_the_first_volume_and_says_so(tmp_path: Path) -> None:
    data = _distinct_volume((4, 5, 6, 3))
    path = _save(tmp_path / "series.nii.gz", data, zooms=(1.0, 1.0, 3.0, 2.5))

    volume = read_nifti(path, "series.nii.gz")

    np.testing.assert_array_equal(volume.pixels, data[..., 0].transpose(2, 0, 1))
    assert volume.spacing == pytest.approx((3.0, 1.0, 1.0))
    assert len(volume.problems) == 1
    assert "4D" in volume.problems[0] and "3 volumes" in volume.problems[0]
    assert "first volume" in volume.problems[0]


def test_2d_image_is_one_slice(tmp_path: Path) -> None:
    data = _distinct_volume((4, 5))
    path = _save(tmp_path / "plane.nii", data)

    volume = read_nifti(path, "plane.nii")

    assert volume.shape == (1, 4, 5)
    np.testing.assert_array_equal(volume.pixels[0], data)
    assert math.isnan(volume.spacing[0])


def test_more_than_4_dimensions_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "five.nii", _distinct_volume((2, 2, 2, 2, 2)))

    with pytest.raises(ReadError) as caught:
        read_nifti(path, "five.nii")

    assert caught.value.path == str(path)
    assert "5D" in caught.value.message and "Split" in caught.value.message


def test_analyze_pair_is_read_from_the_header_file(tmp_path: Path) -> None:
    data = _distinct_volume()
    image = nib.AnalyzeImage(data, np.diag([1.5, 1.5, 4.0, 1.0]))  # Analyze zooms follow it
    nib.save(image, tmp_path / "pair.img")

    volume = read_nifti(tmp_path / "pair.hdr", "pair.hdr")

    np.testing.assert_array_equal(volume.pixels, data.transpose(2, 0, 1))
    assert volume.spacing == pytest.approx((4.0, 1.5, 1.5))
    assert volume.attributes["format"].endswith("Analyze")  # nibabel may say Spm2Analyze


def test_nifti_without_a_known_extension_is_read_by_content(tmp_path: Path) -> None:
    data = _distinct_volume()
    gz_path = _save(tmp_path / "named.nii.gz", data)
    path = tmp_path / "scan_without_extension"
    path.write_bytes(gz_path.read_bytes())

    volume = read_nifti(path, "scan_without_extension")

    np.testing.assert_array_equal(volume.pixels, data.transpose(2, 0, 1))


def test_truncated_nii_gz_is_a_read_error_naming_the_file(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 1000, (32, 32, 16), dtype=np.int16)
    whole = _save(tmp_path / "whole.nii.gz", noise).read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(whole[: len(whole) // 2])

    with pytest.raises(ReadError) as caught:
        read_nifti(path, "cut.nii.gz")

    assert str(path) in str(caught.value)
    assert "truncated" in caught.value.message


def test_truncated_uncompressed_nii_is_a_read_error(tmp_path: Path) -> None:
    whole = _save(tmp_path / "whole.nii", _distinct_volume()).read_bytes()
    path = tmp_path / "cut.nii"
    path.write_bytes(whole[:400])

    with pytest.raises(ReadError) as caught:
        read_nifti(path, "cut.nii")

    assert caught.value.path == str(path)
    assert "truncated" in caught.value.message


def test_garbage_named_nii_is_a_read_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.nii"
    path.write_bytes(b"this is not a NIfTI header" * 20)

    with pytest.raises(ReadError) as caught:
        read_nifti(path, "garbage.nii")

    assert caught.value.path == str(path)
    assert "NIfTI" in caught.value.message


def test_oversized_header_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(tmp_path / "big.nii", _distinct_volume((8, 8, 8)))
    monkeypatch.setattr(nifti, "MAX_BYTES", 1000)

    with pytest.raises(ReadError) as caught:
        read_nifti(path, "big.nii")

    assert caught.value.path == str(path)
    assert "8×8×8 int16 voxels" in caught.value.message
    assert "(2.0 KiB to read), larger than the limit of 1000 bytes" in caught.value.message
    assert "MAX_BYTES" in caught.value.message


def test_rgb_voxels_become_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((3, 4, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = 200, 100, 10
    path = tmp_path / "rgb.nii"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), path)

    volume = read_nifti(path, "rgb.nii")

    np.testing.assert_allclose(volume.pixels, 0.299 * 200 + 0.587 * 100 + 0.114 * 10, rtol=1e-6)
    assert (volume.channels, volume.bits_stored) == (3, 8)
    assert volume.attributes["datatype"] == "rgb24"


def test_modality_is_guessed_from_values_ct_when_they_look_like_hounsfield_units(
    tmp_path: Path,
) -> None:
    from medforensics.samples.phantom import chest_ct_phantom

    ct = chest_ct_phantom(n_slices=4, size=64).transpose(1, 2, 0).astype(np.int16)  # air -1000
    mr = np.abs(np.random.default_rng(0).normal(300, 80, (64, 64, 4))).astype(np.int16)
    ct_volume = read_nifti(_save(tmp_path / "ct.nii.gz", ct), "ct.nii.gz")
    mr_volume = read_nifti(_save(tmp_path / "mr.nii.gz", mr), "mr.nii.gz")
    assert ct_volume.modality == "CT"
    assert "guessed" in ct_volume.attributes["ModalityGuess"]
    assert mr_volume.modality == "MR"
    # a modality the user states wins over the guess
    assert read_nifti(tmp_path / "ct.nii.gz", "ct", modality="MR").modality == "MR"


def test_nan_voxels_are_read_as_background_and_said(tmp_path: Path) -> None:
    data = np.full((32, 32, 3), 100.0, dtype=np.float32)
    data[:, :, 1] = np.linspace(-1000, 200, 32, dtype=np.float32)[None, :]
    data[:4, :4, 0] = np.nan
    data[5, 5, 2] = np.inf
    path = tmp_path / "masked.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    (volume,) = load_paths([path])
    assert isinstance(volume, ImageVolume)
    assert np.isfinite(volume.pixels).all()
    assert volume.pixels[0, 0, 0] == -1000.0  # the lowest finite value
    assert any("17 pixel(s) are NaN or infinite" in p for p in volume.problems)
    # the file itself is untouched
    assert np.isnan(np.asarray(nib.load(path).dataobj)[0, 0, 0])


def test_all_nan_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.nii"
    nib.save(nib.Nifti1Image(np.full((8, 8, 2), np.nan, dtype=np.float32), np.eye(4)), path)
    (error,) = load_paths([path])
    assert isinstance(error, LoadError)
    assert "every pixel is NaN" in error.message and "empty.nii" in error.path
