"""DICOM consistency checks: each fires on a crafted series and stays quiet on clean ones."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, RLELossless, generate_uid
from scipy import ndimage

from medforensics.detect import Detection, create_detector, list_detectors
from medforensics.detect.metadata import MetadataDetector
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from tests.conftest import WrittenSeries, file_fingerprints, write_series

Change = Callable[[pydicom.Dataset, int], None]


def _load(folder: Path) -> ImageVolume:
    volumes = [v for v in load_paths([folder]) if isinstance(v, ImageVolume)]
    assert len(volumes) == 1, volumes
    return volumes[0]


def _detect(folder: Path) -> Detection:
    return MetadataDetector().detect(_load(folder))


def _edit(series: WrittenSeries, change: Change) -> None:
    """Apply ``change(dataset, slice_index)`` to every file of the series, in place."""
    for index, path in enumerate(series.paths):
        ds = pydicom.dcmread(path)
        change(ds, index)
        ds.save_as(path, enforce_file_format=True)


def _details(detection: Detection) -> str:
    return " | ".join(f"{f.score:.2f} {f.detail}" for f in detection.findings)


def _top(detection: Detection, words: str) -> float:
    """Score of the strongest finding whose detail contains ``words`` (0 if none)."""
    return max((f.score for f in detection.findings if words in f.detail), default=0.0)


@pytest.fixture
def series(tmp_path: Path) -> WrittenSeries:
    return write_series(tmp_path / "series")


# --- clean series and authentic re-writes ------------------------------------------------------


def test_clean_phantom_series_has_no_findings(series: WrittenSeries) -> None:
    detection = _detect(series.folder)
    assert detection.findings == [], _details(detection)
    assert detection.verdict == "authentic"
    assert detection.detector == "metadata"
    assert 0.0 <= detection.score < 0.1


def _anonymise(ds: pydicom.Dataset, index: int) -> None:
    ds.PatientName = "ANONYMOUS"
    ds.PatientID = "ANON-1"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "test: basic profile"


@pytest.mark.parametrize("rewrite", ["anonymised", "new-uids", "implicit-vr", "rle", "renamed"])
def test_authentic_rewrites_create_no_findings(series: WrittenSeries, rewrite: str) -> None:
    study, series_uid = generate_uid(), generate_uid()

    def new_uids(ds: pydicom.Dataset, index: int) -> None:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    def implicit(ds: pydicom.Dataset, index: int) -> None:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian

    def rle(ds: pydicom.Dataset, index: int) -> None:
        ds.compress(RLELossless, generate_instance_uid=False)

    changes = {"anonymised": _anonymise, "new-uids": new_uids, "implicit-vr": implicit, "rle": rle}
    if rewrite == "renamed":
        for index, path in enumerate(series.paths):
            path.rename(path.with_name(f"z{len(series.paths) - index:03d}.dcm"))
    else:
        _edit(series, changes[rewrite])
    detection = _detect(series.folder)
    assert detection.findings == [], _details(detection)


# --- geometry ---------------------------------------------------------------------------------


def test_missing_slice_is_a_gap(series: WrittenSeries) -> None:
    series.paths[4].unlink()
    detection = _detect(series.folder)
    assert _top(detection, "gap") >= 0.5, _details(detection)
    assert detection.verdict == "manipulated"


def test_duplicated_position_is_found(series: WrittenSeries) -> None:
    def duplicate(ds: pydicom.Dataset, index: int) -> None:
        if index == 5:
            ds.ImagePositionPatient = [float(v) for v in series.positions[4]]

    _edit(series, duplicate)
    detection = _detect(series.folder)
    assert _top(detection, "share one position") >= 0.5, _details(detection)


def test_irregular_spacing_against_slice_thickness(series: WrittenSeries) -> None:
    def nudge(ds: pydicom.Dataset, index: int) -> None:
        if index == 4:
            ds.ImagePositionPatient = [float(v) for v in series.positions[4] + [0, 0, 0.6]]

    _edit(series, nudge)
    detection = _detect(series.folder)
    assert 0.0 < _top(detection, "not uniform") < 0.5, _details(detection)


def test_instance_numbers_out_of_step(series: WrittenSeries) -> None:
    def swap(ds: pydicom.Dataset, index: int) -> None:
        if index in (2, 5):
            ds.InstanceNumber = 6 if index == 2 else 3

    _edit(series, swap)
    detection = _detect(series.folder)
    assert 0.0 < _top(detection, "InstanceNumbers") < 0.5, _details(detection)


# --- noise continuity -------------------------------------------------------------------------


def test_smoothed_slice_breaks_noise_continuity(series: WrittenSeries) -> None:
    def smooth(ds: pydicom.Dataset, index: int) -> None:
        if index == 3:
            stored = ds.pixel_array.astype(np.float32)
            ds.PixelData = np.rint(ndimage.gaussian_filter(stored, 1.0)).astype(np.int16).tobytes()

    _edit(series, smooth)
    detection = _detect(series.folder)
    assert _top(detection, "smoother than the slices on both sides") >= 0.5, _details(detection)
    assert detection.findings[0].slice == 3


# --- pixels against the header ----------------------------------------------------------------


def test_values_outside_bits_stored(series: WrittenSeries) -> None:
    def overflow(ds: pydicom.Dataset, index: int) -> None:
        ds.BitsStored, ds.HighBit = 12, 11
        if index == 2:
            stored = ds.pixel_array.copy()
            stored[10, 10] = 5000
            ds.PixelData = stored.astype(np.int16).tobytes()

    _edit(series, overflow)
    detection = _detect(series.folder)
    assert _top(detection, "do not fit BitsStored=12") >= 0.5, _details(detection)


def test_declared_smallest_and_largest_values(series: WrittenSeries) -> None:
    def declare(ds: pydicom.Dataset, index: int) -> None:
        stored = ds.pixel_array
        ds.add_new("SmallestImagePixelValue", "SS", int(stored.min()))
        ds.add_new("LargestImagePixelValue", "SS", int(stored.max()) - (300 if index == 1 else 0))

    _edit(series, declare)
    detection = _detect(series.folder)
    assert _top(detection, "Smallest/LargestImagePixelValue") >= 0.5, _details(detection)


def test_declared_extremes_that_match_are_quiet(series: WrittenSeries) -> None:
    def declare(ds: pydicom.Dataset, index: int) -> None:
        ds.add_new("SmallestImagePixelValue", "SS", int(ds.pixel_array.min()))
        ds.add_new("LargestImagePixelValue", "SS", int(ds.pixel_array.max()))

    _edit(series, declare)
    assert _detect(series.folder).findings == []


def test_air_far_from_minus_1000(series: WrittenSeries) -> None:
    def shift(ds: pydicom.Dataset, index: int) -> None:
        ds.RescaleIntercept = -524

    _edit(series, shift)
    detection = _detect(series.folder)
    assert _top(detection, "instead of about -1000 HU") >= 0.5, _details(detection)


def test_impossible_rescale_slope(series: WrittenSeries) -> None:
    def negative(ds: pydicom.Dataset, index: int) -> None:
        ds.RescaleSlope = -1

    _edit(series, negative)
    detection = _detect(series.folder)
    assert _top(detection, "RescaleSlope is -1") >= 0.5, _details(detection)


# --- provenance and consistency ---------------------------------------------------------------


def test_derived_image_is_noted_but_not_accused(series: WrittenSeries) -> None:
    def derived(ds: pydicom.Dataset, index: int) -> None:
        ds.ImageType = ["DERIVED", "SECONDARY", "REFORMATTED", "AVERAGE"]
        ds.DerivationDescription = "MPR, 3 mm average"

    _edit(series, derived)
    detection = _detect(series.folder)
    assert 0.0 < _top(detection, "ImageType DERIVED") < 0.5, _details(detection)
    assert 0.0 < _top(detection, "DerivationDescription") < 0.5
    assert detection.verdict != "manipulated"


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("SoftwareVersions", "pydicom 2.4.4"),
        ("SecondaryCaptureDeviceManufacturer", "Adobe Photoshop"),
        ("ManufacturerModelName", "GIMP 2.10"),
    ],
)
def test_image_editors_named_in_the_header(series: WrittenSeries, keyword: str, value: str) -> None:
    def name_editor(ds: pydicom.Dataset, index: int) -> None:
        setattr(ds, keyword, value)

    _edit(series, name_editor)
    detection = _detect(series.folder)
    assert _top(detection, keyword) >= 0.5, _details(detection)
    assert detection.verdict == "manipulated"


def test_conversion_toolkit_is_weak(series: WrittenSeries) -> None:
    def converted(ds: pydicom.Dataset, index: int) -> None:
        ds.SoftwareVersions = "OFFIS DCMTK 3.6.7 img2dcm"

    _edit(series, converted)
    detection = _detect(series.folder)
    assert 0.0 < _top(detection, "SoftwareVersions") < 0.5, _details(detection)


def test_manufacturer_mismatch_across_slices(series: WrittenSeries) -> None:
    def foreign(ds: pydicom.Dataset, index: int) -> None:
        if index == 6:
            ds.Manufacturer = "GE MEDICAL SYSTEMS"

    _edit(series, foreign)
    detection = _detect(series.folder)
    assert _top(detection, "Manufacturer differs inside one series") >= 0.5, _details(detection)
    assert detection.findings[0].slice == 6


def test_minority_of_files_written_by_other_software(series: WrittenSeries) -> None:
    def resaved(ds: pydicom.Dataset, index: int) -> None:
        if index == 2:
            ds.file_meta.ImplementationVersionName = "OTHER_TOOL_1"

    _edit(series, resaved)
    detection = _detect(series.folder)
    assert _top(detection, "written by other software") >= 0.5, _details(detection)


# --- how the detector behaves -----------------------------------------------------------------


def test_falls_back_to_attributes_when_files_are_gone(series: WrittenSeries) -> None:
    def name_editor(ds: pydicom.Dataset, index: int) -> None:
        ds.SoftwareVersions = "MATLAB R2023a"

    _edit(series, name_editor)
    volume = _load(series.folder)
    shutil.rmtree(series.folder)
    detection = MetadataDetector().detect(volume)
    assert any("could not be read again" in note for note in detection.notes)
    assert _top(detection, "SoftwareVersions") >= 0.5, _details(detection)


def test_non_dicom_input_runs_pixel_checks_only() -> None:
    rng = np.random.default_rng(0)
    volume = ImageVolume("x.png", "image", "OT", rng.normal(100, 5, (1, 64, 64)).astype("f4"))
    detection = MetadataDetector().detect(volume)
    assert detection.findings == []
    assert any("no DICOM header" in note for note in detection.notes)


def test_scanning_leaves_files_and_volume_untouched(series: WrittenSeries) -> None:
    before = file_fingerprints(series.folder)
    volume = _load(series.folder)
    pixels = volume.pixels.copy()
    MetadataDetector().detect(volume)
    np.testing.assert_array_equal(volume.pixels, pixels)
    assert file_fingerprints(series.folder) == before


def test_registered_by_name() -> None:
    assert "metadata" in list_detectors()
    detector = create_detector("metadata")
    assert isinstance(detector, MetadataDetector)
    assert detector.describe()["trained"] is False
