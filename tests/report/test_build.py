"""``write_reports``: evidence, pictures and files for one input; parts that fail become notes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pydicom
import pytest
from PIL import Image

import medforensics.report.dicom as dicom_outputs
from medforensics.detect import Detection, Detector, Finding, list_detectors, register_detector
from medforensics.explain.maps import full_map
from medforensics.explain.overlay import hottest_pixel
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.report.build import (
    ReportFiles,
    TimedDetector,
    report_stem,
    unique_stem,
    write_reports,
)
from medforensics.report.evidence import PHI_FIELDS, PHI_WITHHELD, pixel_array_sha256
from medforensics.samples import chest_ct_phantom, radiograph_phantom, write_ct_series
from medforensics.scan import analyse_volume
from tests.conftest import WrittenSeries, write_series

#: where MapDetector's hot cell and finding are: (slice from the end, row, col) in pixels
HOT_ROW, HOT_COL, STRIDE = 36, 20, 8


class MapDetector(Detector):
    """A detector with a dense map: one hot 8x8 cell on the last slice, and a finding there."""

    name: ClassVar[str] = "test-map"
    score: ClassVar[float] = 0.91

    def detect(self, volume: ImageVolume) -> Detection:
        slices, rows, cols = volume.shape
        cells = np.full((slices, rows // STRIDE, cols // STRIDE), 0.1, dtype=np.float32)
        cells[slices - 1, HOT_ROW // STRIDE, HOT_COL // STRIDE] = self.score
        finding = Finding(
            "local", self.score, slices - 1, HOT_ROW, HOT_COL, radius=6.0, detail="test map peak"
        )
        verdict = "manipulated" if self.score >= 0.5 else "authentic"
        return Detection(
            self.name,
            self.score,
            verdict,  # type: ignore[arg-type]
            [finding],
            anomaly_map=cells,
            map_stride=STRIDE,
            notes=["hot cell planted by the test"],
        )

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "checkpoint_sha256": "ab" * 32,
            "data": "no data: a test double",
            "intended_use": "tests only",
            "limits": "knows nothing",
            "validation": {"auc": 0.5, "fpr_at_threshold": 0.0},
        }


if MapDetector.name not in list_detectors():
    register_detector(MapDetector)


def load_one(path: Path | str) -> ImageVolume:
    (volume,) = list(load_paths([str(path)]))
    assert isinstance(volume, ImageVolume), volume
    return volume


def report_for(
    volume: ImageVolume, out: Path, detector: Detector | None = None, **kwargs: Any
) -> ReportFiles:
    detector = detector or MapDetector()
    detection, result = analyse_volume(volume, detector)
    return write_reports(volume, detection, result, detector, out, **kwargs)


def payload(files: ReportFiles) -> dict[str, Any]:
    return json.loads(files.json.read_text())


@pytest.fixture
def series(tmp_path: Path) -> WrittenSeries:
    return write_series(tmp_path / "ct", n_slices=6)


def test_every_output_is_written_with_the_hashes_of_files_pixels_and_pixel_data(
    series: WrittenSeries, tmp_path: Path
) -> None:
    volume = load_one(series.folder)
    files = report_for(volume, tmp_path / "out", dicom=False)
    for path in (files.json, files.html, files.pdf, files.overlay_png):
        assert path is not None and path.is_file() and path.stat().st_size > 0
    assert files.notes == [] and files.dicom == {}
    evidence = payload(files)["evidence"]
    by_path = {entry["path"]: entry for entry in evidence["files"]}
    assert set(by_path) == {str(p) for p in series.paths}
    for path, uid in zip(series.paths, series.sop_uids, strict=True):
        entry = by_path[str(path)]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        pixel_data = pydicom.dcmread(path).PixelData
        assert entry["pixel_data_sha256"] == hashlib.sha256(pixel_data).hexdigest()
        assert entry["sop_instance_uid"] == uid and entry["size"] == path.stat().st_size
    expected = hashlib.sha256(volume.pixels.astype("<f4").tobytes(order="C")).hexdigest()
    assert evidence["pixel_sha256"] == expected == pixel_array_sha256(volume.pixels)
    assert "float32" in evidence["hash_definitions"]["pixels"]
    models = evidence["models"]
    assert models[0]["name"] == "test-map" and models[0]["checkpoint SHA-256"] == "ab" * 32
    assert models[0]["measured"]["auc"] == 0.5
    assert evidence["software"]["numpy"] == np.__version__
    assert evidence["timestamps"]["report_generated"].endswith("+00:00")
    assert any("not proof" in limit for limit in evidence["limits"])
    assert any("AUC about 0.6" in limit for limit in evidence["limits"])
    stored = payload(files)
    assert stored["result"]["verdict"] == "manipulated"
    assert stored["map"]["peak"][0] == volume.shape[0] - 1
    assert stored["map"]["overlay_slice"] == volume.shape[0] - 1


def test_patient_identifiers_only_with_include_phi(series: WrittenSeries, tmp_path: Path) -> None:
    for path in series.paths:  # identifiers the phantom writer leaves empty
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate = "DOE^JANE", "19700101"
        ds.AccessionNumber, ds.InstitutionName = "ACC-98765", "St Example Hospital"
        ds.save_as(path)
    volume = load_one(series.folder)
    secret = ("DOE^JANE", "PHANTOM-001", "19700101", "ACC-98765", "St Example Hospital")

    withheld = report_for(volume, tmp_path / "plain", dicom=False)
    assert payload(withheld)["evidence"]["patient"] == dict.fromkeys(PHI_FIELDS, PHI_WITHHELD)
    for path in (withheld.json, withheld.html):
        text = path.read_text()
        assert not any(value in text for value in secret), path
        assert "withheld (run with --include-phi)" in text

    shown = report_for(volume, tmp_path / "phi", dicom=False, include_phi=True)
    patient = payload(shown)["evidence"]["patient"]
    assert patient["PatientName"] == "DOE^JANE" and patient["PatientID"] == "PHANTOM-001"
    assert patient["AccessionNumber"] == "ACC-98765"
    html = shown.html.read_text() if shown.html else ""
    assert all(value in html for value in secret)


def test_timed_detector_records_the_analysis_times(series: WrittenSeries, tmp_path: Path) -> None:
    volume = load_one(series.folder)
    timed = TimedDetector(MapDetector())
    detection, result = analyse_volume(volume, timed)
    files = write_reports(volume, detection, result, timed.inner, tmp_path, timing=timed.timing)
    times = payload(files)["evidence"]["timestamps"]
    assert times["analysis_started"] <= times["analysis_finished"] <= times["report_generated"]


def test_dicom_outputs_get_the_map_overlay_and_pdf_per_the_contract(
    series: WrittenSeries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def fake(volume, result, heat, overlay_rgb, overlay_slice, pdf, out_dir, *, model):  # type: ignore[no-untyped-def]
        calls.append(locals())
        path = out_dir / "sr.dcm"
        path.write_bytes(b"x")
        return {"sr": path}

    monkeypatch.setattr(dicom_outputs, "write_dicom_outputs", fake)
    volume = load_one(series.folder)
    files = report_for(volume, tmp_path / "out")
    (call,) = calls
    assert call["heat"].shape == volume.shape and call["heat"].dtype == np.float32
    assert call["overlay_rgb"].shape == (*volume.shape[1:], 3)
    assert call["overlay_slice"] == volume.shape[0] - 1
    assert call["pdf"][:5] == b"%PDF-" and call["model"]["name"] == "test-map"
    assert files.dicom == {"sr": call["out_dir"] / "sr.dcm"}
    assert payload(files)["outputs"]["dicom"]["sr"].endswith("sr.dcm")


@pytest.mark.parametrize(
    "error", [dicom_outputs.DicomOutputError("no room in this study"), RuntimeError("bug")]
)
def test_a_failing_part_becomes_a_note_and_the_rest_is_written(
    series: WrittenSeries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(dicom_outputs, "write_dicom_outputs", broken)
    monkeypatch.setattr("medforensics.report.pdf.render_pdf", broken)
    files = report_for(load_one(series.folder), tmp_path / "out")
    assert files.pdf is None and files.dicom == {}
    assert any(note.startswith("PDF report not written") for note in files.notes)
    assert any(note.startswith("DICOM results not written") for note in files.notes)
    assert files.html is not None and "DICOM results not written" in files.html.read_text()
    assert payload(files)["notes"] == files.notes


def test_non_dicom_input_gets_reports_but_no_dicom_and_no_identifiers(tmp_path: Path) -> None:
    image = radiograph_phantom(size=96, rng=np.random.default_rng(4))[0]
    path = tmp_path / "chest.png"
    Image.fromarray(np.rint(image).astype(np.uint16)).save(path)
    files = report_for(load_one(path), tmp_path / "out", include_phi=True)
    assert files.json.name == "chest.json" and files.dicom == {} and files.html is not None
    evidence = payload(files)["evidence"]
    assert set(evidence["patient"].values()) == {"not available (not a DICOM input)"}
    assert evidence["files"][0]["pixel_data_sha256"] is None
    assert evidence["files"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_stems_are_safe_and_distinct_for_several_series_in_one_folder(tmp_path: Path) -> None:
    folder = tmp_path / "study one"
    first = write_series(folder / "a", n_slices=2, series_uid="1.2.3.4.100")
    write_series(folder / "b", n_slices=2, seed=2, series_uid="1.2.3.4.200")
    volumes = [v for v in load_paths([str(folder)]) if isinstance(v, ImageVolume)]
    stems = {report_stem(v) for v in volumes}
    assert stems == {"study_one_1.2.3.4.100", "study_one_1.2.3.4.200"}
    file_stem = report_stem(load_one(first.paths[0]))
    assert file_stem == first.paths[0].stem
    out = tmp_path / "out"
    one = report_for(volumes[0], out, dicom=False)
    again = report_for(volumes[0], out, dicom=False)  # the same input: same files
    assert again.json == one.json
    other = write_series(tmp_path / "elsewhere" / "study one", n_slices=2, series_uid="1.2.3.4.100")
    clash = load_one(other.folder)
    assert unique_stem(out, report_stem(clash), clash) == report_stem(clash) + "-2"


def test_a_regenerated_report_says_when_the_score_differs(
    series: WrittenSeries, tmp_path: Path
) -> None:
    volume = load_one(series.folder)
    previous = {"score": 0.25, "verdict": "authentic", "findings": [], "detector": "test-map"}
    files = report_for(volume, tmp_path, previous=previous, dicom=False)
    stored = payload(files)
    assert stored["regenerated"]["score_matches"] is False
    assert stored["regenerated"]["json_score"] == 0.25
    assert any("differs from the score in the JSON (0.25)" in n for n in stored["notes"])
    assert files.html is not None and "differs from the score in the JSON" in files.html.read_text()


def test_the_report_of_a_simulated_splice_shows_the_map_on_the_tampered_region(
    tmp_path: Path,
) -> None:
    """Issue 7: the overlay written into the report lies on the region the simulator changed.

    Pairing: ``ct-local`` (the shipped network, the only detector with a map finer than 16 px)
    against ``splice``. Measured when this test was written, on this phantom (12 slices of
    128x128, phantom seed 7) written to DICOM and read back: the peak of ct-local's map falls
    inside the splice mask for 15 of splice seeds 0-19 (masks cover 0.1-5 % of the voxels);
    ``classical`` manages about 11 of 20 and its 16-px tiles are coarse. Seed 6 is one of the
    15, with a clear peak (score about 0.70; still below the shipped "manipulated" threshold, so
    the verdict is not what this test checks). The test therefore checks that the report shows
    the detector's localisation faithfully: the full-resolution map used for the overlay, the
    peak recorded in the evidence JSON, and the hottest pixel of the overlay PNG are all inside
    the ground-truth mask. It does not measure how often the detector localises.
    """
    from medforensics.detect import create_detector
    from medforensics.tamper import simulate
    from medforensics.tamper.dicom_out import write_tampered

    hu = chest_ct_phantom(n_slices=12, size=128, rng=np.random.default_rng(7))
    write_ct_series(hu, tmp_path / "authentic", spacing=(2.0, 0.7, 0.7))
    authentic = load_one(tmp_path / "authentic")
    tampered = simulate(authentic, "splice", 6)
    mask = tampered.truth.mask
    write_tampered(authentic, tampered.pixels, tmp_path / "tampered")
    volume = load_one(tmp_path / "tampered")

    detector = create_detector("ct-local")
    detection, result = analyse_volume(volume, detector)
    files = write_reports(volume, detection, result, detector, tmp_path / "out", dicom=False)

    heat = full_map(detection, volume.shape)
    z, row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert mask[z, row, col], "the map's peak is outside the spliced region"
    recorded = payload(files)["map"]
    assert recorded["peak"] == [int(z), int(row), int(col)]
    assert recorded["overlay_slice"] == z
    assert files.overlay_png is not None
    overlay = np.asarray(Image.open(files.overlay_png).convert("RGB"))
    assert overlay.shape == (*volume.shape[1:], 3)
    hottest = hottest_pixel(overlay)
    assert hottest is not None, "no heat drawn on the overlay"
    assert mask[z, hottest[0], hottest[1]], "the overlay's hottest pixel is off the splice"
    # the report tells the reader where: the top finding is on the same slice
    assert result.findings and result.findings[0].slice == z
