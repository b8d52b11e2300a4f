"""REST mode (``--api``), the PACS picker (``--dicomweb``), the CLI and the session folder."""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from medforensics.cli.main import build_app
from medforensics.ui import APP_PATH
from medforensics.ui.client import ServiceClient, ServiceError, result_from_dict
from medforensics.ui.pacs import fetch_series, list_series, search_studies
from medforensics.ui.session import SessionFiles, Upload, upload_file_name
from medforensics.ui.settings import UiSettings
from tests.ui import (
    TEST_DETECTOR,
    MediaLog,
    Scans,
    downloads,
    make_scans,
    upload,
    verdict_of,
    widget,
)


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Scans:
    return make_scans(tmp_path_factory.mktemp("scans"))


# --- REST mode -------------------------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """The real REST API in-process (one thread worker, ``classical``, reports on)."""
    from fastapi.testclient import TestClient

    from medforensics.service import ServiceSettings, create_app

    settings = ServiceSettings(
        data_dir=tmp_path / "service",
        detector=TEST_DETECTOR,
        workers=1,
        worker_mode="thread",
        reports=True,
        default_rate_per_min=100000,
        retention_days=0,
    )
    app = create_app(settings)
    with TestClient(app) as http:
        key = app.state.service.keys.create("alpha").token
        yield http, key


def test_rest_client_returns_the_service_result_and_reports(
    service: tuple[Any, str], scans: Scans
) -> None:
    from medforensics.ui.client import remote_analysis

    http, key = service
    client = ServiceClient("http://testserver", key, http=http, poll_s=0.05)
    analysis = remote_analysis(client, [Upload("twin.zip", scans.tampered_zip.read_bytes())])
    (item,) = analysis.items
    assert item.result.verdict == "manipulated" and item.result.input == "twin.zip"
    assert item.overlay_png is not None and item.overlay_png.startswith(b"\x89PNG")
    assert item.reports is not None
    files = {d.label: d for d in item.reports.downloads}
    assert files["PDF report"].data.startswith(b"%PDF")
    assert pydicom.dcmread(io.BytesIO(files["DICOM SR"].data)).Modality == "SR"
    assert item.described.get("name") == TEST_DETECTOR


def test_rest_client_says_what_the_service_refused(service: tuple[Any, str]) -> None:
    http, _key = service
    client = ServiceClient("http://testserver", "mf_wrong_key", http=http)
    with pytest.raises(ServiceError, match=r"refused.*HTTP 401"):
        client.submit([Upload("a.dcm", b"x")])
    unreachable = ServiceClient("http://127.0.0.1:9", None, timeout_s=2)
    with pytest.raises(ServiceError, match="could not reach the analysis service"):
        unreachable.models()


def test_app_in_rest_mode_shows_the_service_answer(
    service: tuple[Any, str],
    scans: Scans,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    http, key = service
    monkeypatch.setenv("MEDFORENSICS_UI_API", "http://testserver")
    monkeypatch.setenv("MEDFORENSICS_UI_WORK_DIR", str(tmp_path / "sessions"))
    monkeypatch.setattr(
        "medforensics.ui.state.service_client",
        lambda: ServiceClient("http://testserver", key, http=http, poll_s=0.05),
    )
    media = MediaLog().install(monkeypatch)
    at = AppTest.from_file(str(APP_PATH), default_timeout=120)
    at.run()
    upload(at, ("twin.zip", scans.tampered_zip.read_bytes()))
    assert verdict_of(at) == "manipulated"
    captions = [c for image in at.get("image") for c in image.captions]
    assert any("service's overlay" in c for c in captions)
    assert downloads(at, media)["PDF report"][0].startswith(b"%PDF")


def test_result_from_dict_round_trips_the_contract() -> None:
    payload = {
        "input": "a.dcm",
        "kind": "dicom-series",
        "modality": "CT",
        "shape": [1, 4, 4],
        "score": 0.7,
        "verdict": "manipulated",
        "findings": [{"kind": "local", "score": 0.7, "slice": 0, "row": 1, "col": 2, "new": 1}],
        "future_field": "ignored",
    }
    result = result_from_dict(payload)
    assert result.findings[0].col == 2 and result.verdict == "manipulated"
    assert json.loads(json.dumps(result.to_dict()))["input"] == "a.dcm"


# --- PACS picker -----------------------------------------------------------------------------


class FakeDicomweb:
    """Answers QIDO-RS/WADO-RS like a PACS holding one study with the phantom twin series."""

    def __init__(self, series_dir: Path) -> None:
        self.datasets = [pydicom.dcmread(p) for p in sorted(series_dir.glob("*.dcm"))]
        first = self.datasets[0]
        self.study_uid = str(first.StudyInstanceUID)
        self.series_uid = str(first.SeriesInstanceUID)

    def search_for_studies(self, **kwargs: Any) -> list[dict[str, Any]]:
        return [
            {
                "0020000D": {"vr": "UI", "Value": [self.study_uid]},
                "00080020": {"vr": "DA", "Value": ["20240115"]},
                "00081030": {"vr": "LO", "Value": ["Chest"]},
                "00100020": {"vr": "LO", "Value": ["PHANTOM-001"]},
                "00080061": {"vr": "CS", "Value": ["CT", "SR"]},
            }
        ]

    def search_for_series(self, study_uid: str, fields: Any = None) -> list[dict[str, Any]]:
        assert study_uid == self.study_uid
        return [
            {
                "0020000E": {"vr": "UI", "Value": [self.series_uid]},
                "00080060": {"vr": "CS", "Value": ["CT"]},
                "0008103E": {"vr": "LO", "Value": ["twin"]},
            },
            {
                "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]},
                "00080060": {"vr": "CS", "Value": ["SR"]},
                "00080070": {"vr": "LO", "Value": ["medforensics"]},
            },
        ]

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[Any]:
        assert (study_uid, series_uid) == (self.study_uid, self.series_uid)
        return list(self.datasets)


def test_pacs_lists_studies_and_series_and_fetches_images(scans: Scans, tmp_path: Path) -> None:
    pacs = FakeDicomweb(scans.tampered_dir)
    (study,) = search_studies(pacs)
    assert study.patient_id == "PHANTOM-001" and study.modalities == "CT/SR"
    usable, ours = list_series(pacs, study.study_uid)
    assert usable.skip is None and ours.skip == "a medforensics result object"
    paths = fetch_series(pacs, study.study_uid, usable.series_uid, tmp_path / "fetched")
    assert len(paths) == 12


def test_app_analyses_a_series_picked_from_the_pacs(
    scans: Scans, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pacs = FakeDicomweb(scans.tampered_dir)
    monkeypatch.setenv("MEDFORENSICS_UI_DETECTOR", TEST_DETECTOR)
    monkeypatch.setenv("MEDFORENSICS_UI_DICOMWEB", "http://pacs.invalid/dicom-web")
    monkeypatch.setenv("MEDFORENSICS_UI_WORK_DIR", str(tmp_path / "sessions"))
    monkeypatch.delenv("MEDFORENSICS_UI_API", raising=False)
    monkeypatch.setattr("medforensics.ui.views.pacs_picker._client", lambda url: pacs)
    at = AppTest.from_file(str(APP_PATH), default_timeout=120)
    at.run()
    widget(at, "radio", "Source").set_value("From the PACS").run()
    widget(at, "button", "Search the PACS").click().run()
    series = widget(at, "selectbox", "Series")
    assert len(series.options) == 1  # our own SR series is not offered
    widget(at, "button", "Analyse this series").click().run()
    assert not at.exception
    assert verdict_of(at) == "manipulated"


# --- CLI and settings ------------------------------------------------------------------------


def test_cli_starts_streamlit_headless_on_loopback_without_telemetry() -> None:
    runner = CliRunner()
    result = runner.invoke(
        build_app(),
        [
            "ui",
            "--print-command",
            "--port",
            "8765",
            "--detector",
            "classical",
            "--api",
            "http://127.0.0.1:8000",
            "--api-key-env",
            "MY_KEY",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "-m streamlit run" in out and "ui/app.py" in out
    for flag in (
        "--server.address=127.0.0.1",
        "--server.port=8765",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--client.showErrorDetails=none",
    ):
        assert flag in out
    assert "MEDFORENSICS_UI_DETECTOR=classical" in out
    assert "MEDFORENSICS_UI_API_KEY_ENV=MY_KEY" in out
    assert "MEDFORENSICS_UI_API=http://127.0.0.1:8000" in out


def test_cli_refuses_a_bad_port() -> None:
    result = CliRunner().invoke(build_app(), ["ui", "--print-command", "--port", "70000"])
    assert result.exit_code == 2 and "not a TCP port" in result.output


def test_settings_round_trip_through_the_environment() -> None:
    settings = UiSettings("classical", "http://x:8000", "KEY_VAR", "http://pacs/dicom-web", "/w")
    assert UiSettings.from_env(settings.to_env()) == settings
    assert UiSettings.from_env({}) == UiSettings()
    assert settings.api_key({"KEY_VAR": "secret"}) == "secret"


# --- the session folder ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("scan.dcm", "scan.dcm"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\chest ct.nii.gz", "chest_ct.nii.gz"),
        ("series/IM0001", "IM0001"),
        ("", "upload"),
    ],
)
def test_upload_names_are_made_safe(sent: str, kept: str) -> None:
    assert upload_file_name(sent) == kept


def test_session_folder_is_private_and_removed(tmp_path: Path) -> None:
    files = SessionFiles(tmp_path)
    root = files.root
    assert oct(root.stat().st_mode & 0o777) == "0o700"
    paths = files.save_uploads([Upload("a.dcm", b"1"), Upload("a.dcm", b"2")])
    assert [p.name for p in paths] == ["a.dcm", "a-2.dcm"]
    assert [p.read_bytes() for p in paths] == [b"1", b"2"]
    del files
    gc.collect()
    assert not root.exists()  # gone with the session's state
    other = SessionFiles(tmp_path)
    other.cleanup()
    assert not other.root.exists() and not other.alive
