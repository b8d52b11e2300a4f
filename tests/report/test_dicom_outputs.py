"""DICOM results: SR, SEG, Secondary Capture and Encapsulated PDF, validated with dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.uid import ComputedRadiographyImageStorage, generate_uid

import medforensics.report.dicom as dicom_outputs
from medforensics.__about__ import __version__
from medforensics.detect.types import Detection, Finding
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.report.dicom import (
    DicomOutputError,
    SegmentationNotPossible,
    codes,
    read_sr_findings,
    write_dicom_outputs,
)
from medforensics.report.dicom.sources import SERIES_NUMBERS, device_of
from medforensics.samples import write_ct_series, write_dicom_image
from medforensics.scan import ScanResult, result_of
from medforensics.utils.optional import MissingExtraError
from tests.conftest import phantom_hu

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dicom-outputs.md"
SHA = "0123456789abcdef" * 4
MODEL = {"name": "test-model", "version": "2.1", "checkpoint_sha256": SHA}
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def dciodvfy_lines(path: Path) -> list[str]:
    """dciodvfy's Error and Warning lines for one file."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("E", "W"))]


def assert_valid(files: dict[str, Path]) -> None:
    for key, path in files.items():
        errors = [line for line in dciodvfy_lines(path) if line.startswith("Error")]
        assert errors == [], f"{key} ({path.name}) fails dciodvfy: {errors}"


def load_one(path: Path | str) -> ImageVolume:
    (volume,) = list(load_paths([path]))
    assert isinstance(volume, ImageVolume), volume
    return volume


def write_ct(folder: Path, n_slices: int = 4) -> Path:
    # a short study UID keeps one Frame of Reference UID for the whole series (study UID + ".1")
    hu_volume = phantom_hu(n_slices=n_slices, seed=7)[:, ::2, ::2]
    write_ct_series(
        hu_volume,
        folder,
        spacing=(2.0, 1.6, 1.2),
        study_uid=generate_uid(prefix=None),
        file_order=list(range(n_slices))[::-1],
    )
    return folder


def write_multiframe(tmp_path: Path) -> Path:
    """A Legacy Converted Enhanced CT (one multi-frame file) made from a phantom series."""
    folder = write_ct(tmp_path / "series-for-mf")
    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    converted = hd.legacy.LegacyConvertedEnhancedCTImage(
        datasets,
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    path = tmp_path / "enhanced.dcm"
    converted.save_as(path)
    return path


def write_projection(tmp_path: Path, modality: str) -> Path:
    """A 2D radiograph: DX from the sample writer, CR by changing its SOP class."""
    pixels = np.random.default_rng(3).uniform(500, 3000, (40, 30))
    path = write_dicom_image(pixels, tmp_path / f"{modality.lower()}.dcm", modality="DX")
    if modality == "CR":
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
        ds.Modality = "CR"
        for keyword in ("FrameOfReferenceUID", "PresentationIntentType", "ImagerPixelSpacing"):
            delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)
    return path


def analyse(volume: ImageVolume) -> tuple[ScanResult, np.ndarray, np.ndarray, int]:
    """A result with a local finding, a finding of a kind outside the code table, and a map."""
    slices, rows, cols = volume.shape
    local = Finding("local", 0.912345, slices - 1, rows // 2, cols // 3, radius=3.0, detail="x")
    other = Finding("copy-move", 0.7, 0, 2, cols - 3)
    detection = Detection("test-model", 0.873, "manipulated", [local, other])
    heat = np.zeros(volume.shape, dtype=np.float32)
    heat[slices - 1, rows // 2 - 3 : rows // 2 + 4, cols // 3 - 3 : cols // 3 + 4] = 0.8
    heat[0, 0:2, 0:2] = 0.25
    overlay = np.zeros((rows, cols, 3), dtype=np.uint8)
    overlay[..., 0] = np.linspace(0, 255, cols, dtype=np.uint8)
    overlay[rows // 2, :, 1] = 255
    return result_of(volume, detection), heat, overlay, slices - 1


def write_all(
    volume: ImageVolume, out_dir: Path, notes: list[str] | None = None
) -> dict[str, Path]:
    result, heat, overlay, overlay_slice = analyse(volume)
    return write_dicom_outputs(
        volume, result, heat, overlay, overlay_slice, PDF, out_dir, model=MODEL, notes=notes
    )


@pytest.fixture
def ct_volume(tmp_path: Path) -> ImageVolume:
    return load_one(write_ct(tmp_path / "ct"))


# --- single-frame CT series -------------------------------------------------------------------


def test_ct_series_outputs_pass_dciodvfy(ct_volume: ImageVolume, tmp_path: Path) -> None:
    files = write_all(ct_volume, tmp_path / "out")

    assert set(files) == {"sr", "seg", "sc", "pdf"}
    assert_valid(files)


def test_outputs_are_new_series_in_the_source_study(ct_volume: ImageVolume, tmp_path: Path) -> None:
    source = pydicom.dcmread(ct_volume.slices[0].source_file, stop_before_pixels=True)

    files = write_all(ct_volume, tmp_path / "out")

    written = {key: pydicom.dcmread(path) for key, path in files.items()}
    series = {ds.SeriesInstanceUID for ds in written.values()}
    assert len(series) == 4 and source.SeriesInstanceUID not in series
    for key, ds in written.items():
        assert ds.StudyInstanceUID == source.StudyInstanceUID, key
        assert ds.PatientID == source.PatientID, key
        assert ds.Manufacturer == "medforensics", key
        assert ds.SeriesNumber == SERIES_NUMBERS[key], key
        schemes = [item.CodingSchemeDesignator for item in ds.CodingSchemeIdentificationSequence]
        assert codes.SCHEME_DESIGNATOR in schemes, key
    assert written["sr"].Modality == "SR" and written["seg"].Modality == "SEG"
    assert written["pdf"].Modality == "DOC"


def test_sr_reads_back_with_the_same_score_verdict_and_findings(
    ct_volume: ImageVolume, tmp_path: Path
) -> None:
    result, heat, overlay, overlay_slice = analyse(ct_volume)
    files = write_dicom_outputs(
        ct_volume, result, heat, overlay, overlay_slice, None, tmp_path / "out", model=MODEL
    )

    read = read_sr_findings(files["sr"])

    assert read["score"] == pytest.approx(result.score, abs=1e-9)
    assert read["verdict"] == result.verdict == "manipulated"
    assert len(read["findings"]) == len(result.findings) == 2
    for got, want in zip(read["findings"], result.findings, strict=True):
        assert got["kind"] == want.kind
        assert got["score"] == pytest.approx(want.score, abs=1e-9)
        assert (got["slice"], got["row"], got["col"]) == (want.slice, want.row, want.col)
        assert got["sop_instance_uid"] == want.sop_instance_uid
        assert got["sop_instance_uid"] == ct_volume.slices[want.slice].sop_instance_uid
        assert "frame" not in got
    assert read["findings"][0]["radius"] == pytest.approx(3.0)


def test_sr_is_a_tid1500_report_naming_the_device(ct_volume: ImageVolume, tmp_path: Path) -> None:
    files = write_all(ct_volume, tmp_path / "out")

    sr = hd.sr.srread(files["sr"])

    assert sr.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    assert report[0].ContentTemplateSequence[0].TemplateIdentifier == "1500"
    device = report.get_observer_contexts(observer_type=dcm_codes.DCM.Device)
    attributes = device[0].observer_identifying_attributes
    assert isinstance(attributes, hd.sr.DeviceObserverIdentifyingAttributes)
    assert attributes.name == f"medforensics {__version__}"
    assert attributes.model_name == "test-model"
    assert attributes.serial_number == SHA
    procedure = [
        item
        for item in report[0].ContentSequence
        if item.name == hd.sr.CodedConcept.from_code(dcm_codes.DCM.ProcedureReported)
    ]
    assert procedure[0].value == codes.MANIPULATION_ANALYSIS
    (group,) = report.get_planar_roi_measurement_groups(finding_type=codes.LOCAL_FINDING)
    text = {
        item.name.meaning: item.value
        for item in hd.sr.utils.find_content_items(group[0], recursive=True)
        if item.ValueType == "TEXT"
    }
    assert text["Algorithm Name"] == "test-model" and text["Algorithm Version"] == "2.1"
    assert text["Algorithm Parameters"] == f"checkpoint_sha256={SHA}"
    assert isinstance(group.roi, hd.sr.ImageRegion)
    assert group.roi.graphic_type == hd.sr.GraphicTypeValues.CIRCLE
    library = [item for item in report[0].ContentSequence if item.name.meaning == "Image Library"]
    assert library, "the SR has no image library"
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {ref.sop_instance_uid for ref in ct_volume.slices}


def test_seg_holds_the_map_on_the_source_slices(ct_volume: ImageVolume, tmp_path: Path) -> None:
    result, heat, overlay, overlay_slice = analyse(ct_volume)
    files = write_dicom_outputs(
        ct_volume, result, heat, overlay, overlay_slice, None, tmp_path / "out", model=MODEL
    )

    seg = hd.seg.segread(files["seg"])

    assert seg.SegmentationType == "FRACTIONAL"
    assert seg.SegmentationFractionalType == "PROBABILITY"
    description = seg.SegmentSequence[0]
    assert (
        description.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.MANIPULATION_MAP.value
    )
    uids = [ref.sop_instance_uid for ref in ct_volume.slices]
    pixels = seg.get_pixels_by_source_instance(
        uids, combine_segments=False, rescale_fractional=True
    )
    np.testing.assert_allclose(pixels[..., 0], heat, atol=0.5 / 255 + 1e-6)


def test_sc_carries_the_overlay_of_the_chosen_slice(ct_volume: ImageVolume, tmp_path: Path) -> None:
    result, heat, overlay, overlay_slice = analyse(ct_volume)
    files = write_dicom_outputs(
        ct_volume, result, heat, overlay, overlay_slice, None, tmp_path / "out", model=MODEL
    )

    sc = pydicom.dcmread(files["sc"])

    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert sc.PhotometricInterpretation == "RGB"
    np.testing.assert_array_equal(sc.pixel_array, overlay)
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == (
        ct_volume.slices[overlay_slice].sop_instance_uid
    )
    assert list(sc.PatientOrientation) == ["L", "P"]
    assert sc.DerivationCodeSequence[0].CodeValue == codes.MANIPULATION_OVERLAY.value
    assert "pdf" not in files


def test_encapsulated_pdf_holds_the_report_bytes(ct_volume: ImageVolume, tmp_path: Path) -> None:
    files = write_all(ct_volume, tmp_path / "out")

    document = pydicom.dcmread(files["pdf"])

    assert document.SOPClassUID == pydicom.uid.EncapsulatedPDFStorage
    assert document.MIMETypeOfEncapsulatedDocument == "application/pdf"
    length = int(document.EncapsulatedDocumentLength)
    assert bytes(document.EncapsulatedDocument)[:length] == PDF
    assert document.ConceptNameCodeSequence[0].CodeValue == codes.MANIPULATION_REPORT.value


# --- other sources ----------------------------------------------------------------------------


def test_multiframe_outputs_reference_frames(tmp_path: Path) -> None:
    volume = load_one(write_multiframe(tmp_path))
    assert volume.kind == "dicom-multiframe"
    frames = [ref.frame for ref in volume.slices]
    result, heat, overlay, overlay_slice = analyse(volume)

    files = write_dicom_outputs(
        volume, result, heat, overlay, overlay_slice, PDF, tmp_path / "out", model=MODEL
    )

    assert set(files) == {"sr", "seg", "sc", "pdf"}
    assert_valid(files)
    read = read_sr_findings(files["sr"])
    for got, want in zip(read["findings"], result.findings, strict=True):
        assert got["frame"] == frames[want.slice] == want.frame
        assert got["slice"] == want.slice
    seg = hd.seg.segread(files["seg"])
    (source,) = {ref.sop_instance_uid for ref in volume.slices}
    frame_numbers = [frame + 1 for frame in frames]
    pixels = seg.get_pixels_by_source_frame(
        source, frame_numbers, combine_segments=False, rescale_fractional=True
    )
    np.testing.assert_allclose(pixels[..., 0], heat, atol=0.5 / 255 + 1e-6)
    sc = pydicom.dcmread(files["sc"])
    assert sc.SourceImageSequence[0].ReferencedFrameNumber == frames[overlay_slice] + 1


@pytest.mark.parametrize("modality", ["DX", "CR"])
def test_projection_radiograph_outputs(tmp_path: Path, modality: str) -> None:
    volume = load_one(write_projection(tmp_path, modality))
    assert volume.modality == modality and volume.shape[0] == 1
    result, heat, overlay, overlay_slice = analyse(volume)

    files = write_dicom_outputs(
        volume, result, heat, overlay, overlay_slice, PDF, tmp_path / "out", model=MODEL
    )

    assert set(files) == {"sr", "seg", "sc", "pdf"}
    assert_valid(files)
    seg = hd.seg.segread(files["seg"])
    assert "FrameOfReferenceUID" not in seg
    pixels = seg.get_pixels_by_source_instance(
        [volume.slices[0].sop_instance_uid], combine_segments=False, rescale_fractional=True
    )
    np.testing.assert_allclose(pixels[..., 0], heat, atol=0.5 / 255 + 1e-6)
    assert read_sr_findings(files["sr"])["verdict"] == "manipulated"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_pydicom_sample_files(tmp_path: Path, name: str) -> None:
    volume = load_one(get_testdata_file(name))  # type: ignore[arg-type]

    files = write_all(volume, tmp_path / "out")

    assert set(files) == {"sr", "seg", "sc", "pdf"}
    assert_valid(files)


def test_colour_source_gets_no_seg_and_says_why(tmp_path: Path) -> None:
    volume = load_one(get_testdata_file("SC_rgb_small_odd.dcm"))  # type: ignore[arg-type]
    notes: list[str] = []

    files = write_all(volume, tmp_path / "out", notes=notes)

    assert set(files) == {"sr", "sc", "pdf"}
    assert len(notes) == 1 and "no DICOM SEG written" in notes[0] and "colour" in notes[0]
    assert_valid(files)


def test_series_with_several_frames_of_reference_gets_no_seg(tmp_path: Path) -> None:
    hu_volume = phantom_hu(n_slices=3, seed=2)[:, ::2, ::2]
    paths = write_ct_series(hu_volume, tmp_path / "mixed", study_uid=generate_uid())
    stray = pydicom.dcmread(paths[1])
    stray.FrameOfReferenceUID = generate_uid()  # one slice claims another frame of reference
    stray.save_as(paths[1])
    volume = load_one(tmp_path / "mixed")
    notes: list[str] = []

    files = write_all(volume, tmp_path / "out", notes=notes)

    assert "seg" not in files and "Frame of Reference" in notes[0]
    assert_valid(files)


# --- errors -----------------------------------------------------------------------------------


def test_non_dicom_volume_is_refused(tmp_path: Path) -> None:
    volume = ImageVolume(
        input="scan.nii.gz", kind="nifti", modality="CT", pixels=np.zeros((2, 8, 8), np.float32)
    )
    result, heat, overlay, _ = analyse(volume)

    with pytest.raises(DicomOutputError, match=r"scan\.nii\.gz.*not DICOM; no DICOM results"):
        write_dicom_outputs(volume, result, heat, overlay, 0, PDF, tmp_path / "out", model=MODEL)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["deleted", "not dicom"])
def test_unreadable_source_file_is_named(
    ct_volume: ImageVolume, tmp_path: Path, damage: str
) -> None:
    victim = ct_volume.slices[2].source_file
    if damage == "deleted":
        victim.unlink()
    else:
        victim.write_bytes(b"this is not a DICOM file any more")

    with pytest.raises(DicomOutputError, match="can no longer be read") as caught:
        write_all(ct_volume, tmp_path / "out")
    assert str(victim) in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_wrong_map_shape_writes_nothing(ct_volume: ImageVolume, tmp_path: Path) -> None:
    result, heat, overlay, overlay_slice = analyse(ct_volume)

    with pytest.raises(DicomOutputError, match="full image resolution"):
        write_dicom_outputs(
            ct_volume,
            result,
            heat[:, ::2],
            overlay,
            overlay_slice,
            PDF,
            tmp_path / "o",
            model=MODEL,
        )
    assert not (tmp_path / "o").exists()


def test_result_without_score_is_refused(ct_volume: ImageVolume, tmp_path: Path) -> None:
    result, heat, overlay, _ = analyse(ct_volume)
    failed = replace(result, score=None, verdict=None, error="could not analyse")

    with pytest.raises(DicomOutputError, match="no score or verdict"):
        write_dicom_outputs(ct_volume, failed, heat, overlay, 0, None, tmp_path / "o", model=MODEL)


def test_pdf_bytes_must_be_a_pdf(ct_volume: ImageVolume, tmp_path: Path) -> None:
    result, heat, overlay, overlay_slice = analyse(ct_volume)

    with pytest.raises(DicomOutputError, match="not a PDF"):
        write_dicom_outputs(
            ct_volume, result, heat, overlay, overlay_slice, b"<html>", tmp_path / "o", model=MODEL
        )


def test_missing_highdicom_names_the_extra(
    ct_volume: ImageVolume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(module: str, feature: str = "") -> None:
        raise MissingExtraError(f"'{module}' is needed for {feature}: medforensics[dicom-out]")

    monkeypatch.setattr(dicom_outputs, "require", missing)

    with pytest.raises(DicomOutputError, match=r"medforensics\[dicom-out\]"):
        write_all(ct_volume, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_segmentation_not_possible_is_a_dicom_output_error() -> None:
    assert issubclass(SegmentationNotPossible, DicomOutputError)
    assert issubclass(DicomOutputError, ValueError)


# --- codes and model description --------------------------------------------------------------


def test_private_codes_are_valid_and_documented() -> None:
    values = [code.value for code in codes.ALL_CODES]
    assert len(set(values)) == len(values)
    assert all(len(value) <= 16 for value in values)  # SH
    assert all(len(code.meaning) <= 64 for code in codes.ALL_CODES)  # LO
    assert {code.scheme_designator for code in codes.ALL_CODES} == {"99MEDFOR"}
    documented = DOCS.read_text(encoding="utf-8")
    for code in codes.ALL_CODES:
        assert f"`{code.value}`" in documented and code.meaning in documented, code.value


def test_device_collects_checkpoint_hashes_from_nested_descriptions() -> None:
    auto = {
        "name": "auto",
        "routes": {"CT": ["ct-local", "classical"]},
        "models": {
            "ct-local": {"name": "ct-local", "checkpoint_sha256": SHA},
            "classical": {"name": "classical"},
        },
    }

    device = device_of(auto)

    assert device.model_name == "auto"
    assert device.checkpoint_sha256 == (SHA,)
    assert device.serial_number == SHA
    assert device.uid == device_of(auto).uid  # stable for the same software and model
    assert device_of({}, fallback_name="noise-residual").serial_number == "no-checkpoint"
