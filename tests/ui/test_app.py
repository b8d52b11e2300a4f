"""The web app under Streamlit's AppTest: upload, verdict, viewer, downloads, errors, batch."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from streamlit.testing.v1 import AppTest

from medforensics.explain.overlay import RING_RGB, hottest_pixel
from medforensics.ui import APP_PATH
from tests.ui import (
    TEST_DETECTOR,
    MediaLog,
    Scans,
    downloads,
    make_scans,
    radiograph_png,
    upload,
    verdict_of,
    viewer_image,
    viewer_rgb,
    widget,
)

RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Scans:
    return make_scans(tmp_path_factory.mktemp("scans"))


@pytest.fixture
def media(monkeypatch: pytest.MonkeyPatch) -> MediaLog:
    return MediaLog().install(monkeypatch)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., AppTest]:
    """``app(page="Analyse")``: the app with the fast detector, run once on that page."""
    monkeypatch.setenv("MEDFORENSICS_UI_DETECTOR", TEST_DETECTOR)
    monkeypatch.setenv("MEDFORENSICS_UI_WORK_DIR", str(tmp_path / "sessions"))
    for name in ("MEDFORENSICS_UI_API", "MEDFORENSICS_UI_DICOMWEB"):
        monkeypatch.delenv(name, raising=False)

    def make(page: str = "Analyse") -> AppTest:
        at = AppTest.from_file(str(APP_PATH), default_timeout=RUN_TIMEOUT_S)
        at.run()
        if page != "Analyse":
            at.sidebar.radio(key="page").set_value(page).run()
        assert not at.exception
        return at

    return make


def test_upload_shows_the_verdict_findings_and_what_was_analysed(
    app: Callable[..., AppTest], scans: Scans
) -> None:
    at = upload(app(), ("twin.zip", scans.tampered_zip.read_bytes()))
    assert verdict_of(at) == "manipulated"
    probability = widget(at, "metric", "Calibrated probability")
    assert 0.5 <= float(probability.value) <= 1.0
    findings = at.dataframe[0].value
    assert len(findings) >= 1 and {"kind", "score", "slice"} <= set(findings.columns)
    # the strongest finding is where the copy was pasted (same slice as the attack's centre)
    assert int(findings.iloc[0]["slice"]) == scans.centre[0]
    page = " ".join(str(frame.value.to_dict()) for frame in at.dataframe)
    assert "twin.zip" in page and "medforensics-ui-" not in page  # names as uploaded
    assert "CT" in page and "12 × 128 × 128" in page
    assert re.search(r"SHA-256 of upload twin.zip.*[0-9a-f]{64}", page)
    assert any("classical" in m.value for m in at.markdown)  # which model answered
    assert not at.error


def test_authentic_series_is_not_called_manipulated(
    app: Callable[..., AppTest], scans: Scans
) -> None:
    at = upload(app(), ("authentic.zip", scans.authentic_zip.read_bytes()))
    assert verdict_of(at) == "authentic"


def test_loose_dicom_files_of_one_series_are_one_result(
    app: Callable[..., AppTest], scans: Scans
) -> None:
    files = [(path.name, path.read_bytes()) for path in scans.tampered_files]
    at = upload(app(), *files)
    assert verdict_of(at) == "manipulated"
    assert not at.get("selectbox") or all(not s.label.endswith("show") for s in at.get("selectbox"))
    assert widget(at, "slider", "Slice").max == len(files) - 1


def test_slider_changes_the_slice_shown(
    app: Callable[..., AppTest], scans: Scans, media: MediaLog
) -> None:
    at = upload(app(), ("twin.zip", scans.tampered_zip.read_bytes()))
    slider = widget(at, "slider", "Slice")
    assert slider.value == scans.centre[0]  # opens on the most suspicious slice
    before = viewer_rgb(at, media)
    target = 0 if scans.centre[0] > 0 else 1
    slider.set_value(target).run()
    _url, caption = viewer_image(at)
    assert caption.startswith(f"slice {target} of 12")
    assert not np.array_equal(before, viewer_rgb(at, media))


def test_overlay_toggle_and_opacity(
    app: Callable[..., AppTest], scans: Scans, media: MediaLog
) -> None:
    at = upload(app(), ("twin.zip", scans.tampered_zip.read_bytes()))
    widget(at, "toggle", "Ring findings").set_value(False).run()

    def redness() -> int:
        rgb = viewer_rgb(at, media).astype(int)
        return int((rgb[..., 0] - rgb[..., 1]).max())

    assert hottest_pixel(viewer_rgb(at, media)) is not None  # map drawn by default
    widget(at, "slider", "Map opacity").set_value(0.9).run()
    strong = redness()
    widget(at, "slider", "Map opacity").set_value(0.2).run()
    weak = redness()
    assert strong > weak > 0  # red minus green is 255·opacity·t: opacity shows directly
    widget(at, "toggle", "Show the manipulation map").set_value(False).run()
    assert "map off" in viewer_image(at)[1]
    assert hottest_pixel(viewer_rgb(at, media)) is None
    rgb = viewer_rgb(at, media)
    assert np.array_equal(rgb[..., 0], rgb[..., 1])  # gray only


def test_ct_window_presets_change_the_picture(
    app: Callable[..., AppTest], scans: Scans, media: MediaLog
) -> None:
    at = upload(app(), ("twin.zip", scans.tampered_zip.read_bytes()))
    window = widget(at, "radio", "Window")
    assert [o.split()[0] for o in window.options] == ["auto", "lung", "soft", "bone"]
    widget(at, "toggle", "Show the manipulation map").set_value(False).run()
    lung = viewer_rgb(at, media)
    window.set_value("bone").run()
    assert "window bone 400/1800" in viewer_image(at)[1]
    bone = viewer_rgb(at, media)
    assert bone.mean() < lung.mean()  # lung tissue and fat go black in a bone window


def test_jump_to_finding_moves_the_slider_and_rings_it(
    app: Callable[..., AppTest], scans: Scans, media: MediaLog
) -> None:
    at = upload(app(), ("twin.zip", scans.tampered_zip.read_bytes()))
    findings = at.dataframe[0].value
    other = [k for k in range(len(findings)) if int(findings.iloc[k]["slice"]) != scans.centre[0]]
    assert other, "the phantom twin should have a finding on another slice"
    chosen = other[0]
    widget(at, "toggle", "Show the manipulation map").set_value(False).run()
    widget(at, "selectbox", "Jump to finding").set_value(chosen).run()
    row = findings.iloc[chosen]
    assert widget(at, "slider", "Slice").value == int(row["slice"])
    _url, caption = viewer_image(at)
    assert caption.startswith(f"slice {int(row['slice'])} of 12")
    assert f"finding {chosen + 1} selected" in caption
    rgb = viewer_rgb(at, media)
    scale = rgb.shape[0] / 128
    cyan = np.all(rgb == np.array(RING_RGB, dtype=np.uint8), axis=2)
    # the ring of the chosen finding: cyan on a circle of its radius around its centre
    radius = max(float(row["radius (px)"]), 3.0) * scale
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ys = np.rint((row["row"] + 0.5) * scale - 0.5 + radius * np.sin(angles)).astype(int)
    xs = np.rint((row["col"] + 0.5) * scale - 0.5 + radius * np.cos(angles)).astype(int)
    inside = (ys >= 0) & (ys < rgb.shape[0]) & (xs >= 0) & (xs < rgb.shape[1])
    points = zip(ys[inside], xs[inside], strict=True)
    on_ring = [cyan[y - 1 : y + 2, x - 1 : x + 2].any() for y, x in points]
    assert inside.sum() >= 8 and np.mean(on_ring) > 0.9


def test_downloads_hold_the_reports(
    app: Callable[..., AppTest], scans: Scans, media: MediaLog
) -> None:
    at = upload(app(), ("twin.zip", scans.tampered_zip.read_bytes()))
    files = downloads(at, media)
    assert {"PDF report", "HTML report", "DICOM SR", "JSON result"} <= set(files)
    pdf, pdf_name = files["PDF report"]
    assert pdf.startswith(b"%PDF") and pdf_name and pdf_name.endswith(".pdf")
    html, _ = files["HTML report"]
    assert b"<html" in html[:500].lower() and b"manipulated" in html
    sr_bytes, sr_name = files["DICOM SR"]
    assert sr_name and sr_name.endswith(".sr.dcm")
    sr = pydicom.dcmread(io.BytesIO(sr_bytes))
    assert sr.Modality == "SR"
    result = json.loads(files["JSON result"][0])
    assert result["tool"] == "medforensics"
    (entry,) = result["results"]
    assert entry["verdict"] == "manipulated" and entry["input"] == "twin.zip"


def test_garbage_upload_shows_a_message_naming_the_file(app: Callable[..., AppTest]) -> None:
    at = upload(app(), ("garbage.bin", b"this is not a scan at all\n" * 20))
    assert not at.exception
    messages = [e.value for e in at.error]
    assert len(messages) == 1
    assert messages[0].startswith("garbage.bin: ")
    assert "not a medical image" in messages[0]
    assert "Traceback" not in messages[0] and "medforensics-ui-" not in messages[0]
    assert verdict_of(at) is None


def test_one_bad_file_among_good_ones(app: Callable[..., AppTest], scans: Scans) -> None:
    at = upload(
        app(),
        ("twin.zip", scans.tampered_zip.read_bytes()),
        ("empty.dcm", b""),
    )
    assert verdict_of(at) == "manipulated"
    assert any("empty.dcm" in e.value for e in at.error)


def test_radiograph_png_uses_the_automatic_window_only(app: Callable[..., AppTest]) -> None:
    at = upload(app(), ("chest.png", radiograph_png()))
    assert verdict_of(at) in ("authentic", "inconclusive", "manipulated")
    (only,) = widget(at, "radio", "Window").options
    assert only.startswith("auto ")  # 1st..99th percentile; CT gets lung/soft tissue/bone too
    assert not [s for s in at.get("slider") if s.label.startswith("Slice")]  # one slice
    files = {button.label for button in at.get("download_button")}
    assert "PDF report" in files and "DICOM SR" not in files  # no SR for a PNG


def test_removing_the_upload_deletes_its_files(
    app: Callable[..., AppTest], scans: Scans, tmp_path: Path
) -> None:
    at = upload(app(), ("twin.zip", scans.tampered_zip.read_bytes()))
    sessions = tmp_path / "sessions"
    (session,) = sessions.iterdir()
    assert oct(session.stat().st_mode & 0o777) == "0o700"
    assert any(session.iterdir())
    at.get("file_uploader")[0].set_value(None)
    at.run()
    assert verdict_of(at) is None
    assert not any(session.iterdir())


def test_batch_table_filter_and_csv(
    app: Callable[..., AppTest], scans: Scans, media: MediaLog
) -> None:
    at = app("Batch")
    upload(
        at,
        ("twin.zip", scans.tampered_zip.read_bytes()),
        ("authentic.zip", scans.authentic_zip.read_bytes()),
        ("notes.txt", b"not an image"),
        key="batch_upload",
    )
    widget(at, "button", "Analyse 3 file(s)").click().run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["file"]) == ["twin.zip", "authentic.zip", "notes.txt"]
    assert list(table["verdict"]) == ["manipulated", "authentic", "error"]
    assert "notes.txt" in table["error"].iloc[2]
    data, name = media.download(widget(at, "download_button", "CSV"))
    assert name == "medforensics-batch.csv"
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [r["verdict"] for r in rows] == ["manipulated", "authentic", "error"]
    widget(at, "multiselect", "Verdicts shown").set_value(["manipulated"]).run()
    assert list(at.dataframe[0].value["file"]) == ["twin.zip"]
    data, _ = media.download(widget(at, "download_button", "CSV"))
    assert [r["file"] for r in csv.DictReader(io.StringIO(data.decode()))] == ["twin.zip"]
    contract = json.loads(media.download(widget(at, "download_button", "JSON"))[0])
    assert len(contract["results"]) == 3


def test_simulator_produces_a_labelled_simulated_output(
    app: Callable[..., AppTest], scans: Scans, media: MediaLog
) -> None:
    original = scans.authentic_zip.read_bytes()
    at = app("Simulator")
    upload(at, ("authentic.zip", original), key="sim_upload")
    assert any("SIMULATED — for training and demonstration" in m.value for m in at.markdown)
    widget(at, "selectbox", "Attack").set_value("copy-move")
    widget(at, "number_input", "Seed").set_value(5)
    widget(at, "button", "Run the attack").click().run()
    assert not at.exception and not at.error
    captions = [c for image in at.get("image") for c in image.captions]
    assert any(c.startswith("Before (authentic)") for c in captions)
    assert sum("SIMULATED" in c for c in captions) == 2  # after, and the ground-truth mask
    files = downloads(at, media)
    series, series_name = files["Tampered DICOM series (zip)"]
    assert series_name == "SIMULATED_authentic_copy-move_5.zip"
    with zipfile.ZipFile(io.BytesIO(series)) as archive:
        names = archive.namelist()
        truth = json.loads(archive.read(next(n for n in names if n.endswith("ground_truth.json"))))
        dicoms = [n for n in names if n.endswith(".dcm")]
        first = pydicom.dcmread(io.BytesIO(archive.read(dicoms[0])))
    assert len(dicoms) == 12 and first.Modality == "CT"
    assert truth["simulated"] is True and truth["attack"] == "copy-move" and truth["seed"] == 5
    truth_zip, truth_name = files["Ground truth (JSON + mask)"]
    assert truth_name and truth_name.startswith("SIMULATED_")
    with zipfile.ZipFile(io.BytesIO(truth_zip)) as archive:
        mask = np.load(io.BytesIO(archive.read("mask.npz")))
        assert list(mask["shape"]) == [12, 128, 128]
    assert scans.authentic_zip.read_bytes() == original  # the user's file is untouched
    widget(at, "button", "Analyse the simulated scan").click().run()
    assert verdict_of(at) in ("manipulated", "inconclusive", "authentic")
    assert any("SIMULATED SCAN" in m.value for m in at.markdown)


def test_about_page_states_version_model_and_limits(app: Callable[..., AppTest]) -> None:
    at = app("About")
    text = " ".join(m.value for m in at.markdown)
    assert "medforensics 0." in text
    assert "not proof of manipulation" in text
    assert "classical" in " ".join(str(frame.value.to_dict()) for frame in at.dataframe)


def test_a_detector_that_cannot_load_is_a_message_not_a_trace(
    app: Callable[..., AppTest], scans: Scans, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDFORENSICS_UI_DETECTOR", "no-such-detector")
    at = upload(app(), ("twin.zip", scans.tampered_zip.read_bytes()))
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert message.startswith("twin.zip: could not be analysed")
    assert "unknown detector 'no-such-detector'" in message
    assert verdict_of(at) is None


def test_an_internal_error_on_a_page_is_a_message(
    app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(settings: Any) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("medforensics.ui.views.about.show", broken)
    at = AppTest.from_file(str(APP_PATH), default_timeout=RUN_TIMEOUT_S)
    at.run()
    at.sidebar.radio(key="page").set_value("About").run()
    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert "About page hit an internal error (RuntimeError: simulated bug)" in message
