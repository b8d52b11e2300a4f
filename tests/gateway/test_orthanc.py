"""Against real peers from Debian: DCMTK's storescu sends, a real Orthanc receives and serves
DICOMweb.

Detector: ``classical`` on 128×128×12 chest phantoms, which calls authentic phantoms authentic and
flags the simulator's copy-move (its exact-repeat cue); see test_pipeline.py for why not others.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from medforensics.cli.main import build_app
from medforensics.gateway.app import Gateway
from medforensics.gateway.config import Destination, GatewayConfig
from tests.gateway import (
    DICOMWEB_PLUGIN,
    GATEWAY_AE,
    Orthanc,
    have_orthanc,
    qido_value,
    write_copy_move_series,
    write_phantom_series,
)

pytestmark = [
    pytest.mark.pacs,
    pytest.mark.skipif(
        not have_orthanc(DICOMWEB_PLUGIN), reason="Orthanc + DICOMweb plugin needed"
    ),
]
SR_MODALITY, SERIES_DESCRIPTION, MANUFACTURER = "00080060", "0008103E", "00080070"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path_factory.mktemp("orthanc")).start()
    yield server
    server.stop()


def dcmtk(tool: str) -> str | None:
    """DCMTK's ``tool`` on PATH, skipping the virtual environment: pynetdicom installs
    console scripts of the same names (``storescu``...) with other options, and an activated
    environment puts them first."""
    venv = Path(sys.prefix).resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which(tool, path=folder) if folder else None
        if found and not Path(found).resolve().is_relative_to(venv):
            return found
    return None


def storescu(port: int, folder: Path) -> subprocess.CompletedProcess[str]:
    tool = dcmtk("storescu")
    if tool is None:
        pytest.skip("DCMTK storescu is not installed")
    return subprocess.run(
        [
            tool,
            "-aet",
            "MODALITY",
            "-aec",
            GATEWAY_AE,
            "+sd",
            "127.0.0.1",
            str(port),
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def gateway(tmp_path: Path, orthanc: Orthanc) -> Iterator[Gateway]:
    config = GatewayConfig(
        spool_dir=tmp_path / "spool",
        port=0,
        quiet_seconds=0.5,
        detector="classical",
        destination=Destination(orthanc.ae_title, "127.0.0.1", orthanc.dicom_port),
    )
    running = Gateway(config)
    running.start()
    yield running
    running.stop()


def study_of(paths: list[Path]) -> tuple[str, str]:
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def test_storescu_series_is_scanned_and_forwarded_to_orthanc(
    tmp_path: Path, gateway: Gateway, orthanc: Orthanc
) -> None:
    series = write_phantom_series(tmp_path / "ct", seed=11)
    study_uid, series_uid = study_of(series)
    assert gateway.address is not None
    sent = storescu(gateway.address[1], tmp_path / "ct")
    assert sent.returncode == 0, sent.stderr
    assert gateway.wait_idle(90)
    assert gateway.spool is not None and gateway.spool.batch(1).outcome == "authentic"
    found = orthanc.qido_series(study_uid)
    by_uid = {qido_value(item, "0020000E"): item for item in found}
    assert series_uid in by_uid, "the original series did not reach Orthanc"
    instances = orthanc.get(f"/dicom-web/studies/{study_uid}/series/{series_uid}/instances")
    assert len(instances) == len(series)
    ours = [item for uid, item in by_uid.items() if uid != series_uid]
    modalities = {qido_value(item, SR_MODALITY) for item in ours}
    assert "SR" in modalities, f"no SR next to the original series: {modalities}"
    sr = next(item for item in ours if qido_value(item, SR_MODALITY) == "SR")
    assert str(qido_value(sr, SERIES_DESCRIPTION)).startswith("medforensics")


def test_tampered_series_is_quarantined_not_forwarded(
    tmp_path: Path, gateway: Gateway, orthanc: Orthanc
) -> None:
    tampered = write_copy_move_series(tmp_path / "tampered", seed=12)
    study_uid, _series_uid = study_of(tampered)
    assert gateway.address is not None
    sent = storescu(gateway.address[1], tmp_path / "tampered")
    assert sent.returncode == 0, sent.stderr
    assert gateway.wait_idle(90)
    assert gateway.spool is not None
    batch = gateway.spool.batch(1)
    assert batch.outcome == "manipulated" and batch.location == "quarantine"
    assert len(list(gateway.spool.batch_dir(batch).glob("*.dcm"))) == len(tampered)
    assert (
        orthanc.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}})
        == []
    )


def scan(orthanc: Orthanc, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        build_app(),
        [
            "pacs",
            "scan",
            "--dicomweb",
            orthanc.url + "/dicom-web",
            "--detector",
            "classical",
            "--json",
            "-",
            *args,
        ],
    )
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def test_pacs_scan_stores_results_back_and_never_rescans_them(
    tmp_path: Path, orthanc: Orthanc
) -> None:
    series = write_phantom_series(tmp_path / "pacs", seed=13, study_uid=pydicom.uid.generate_uid())
    study_uid, series_uid = study_of(series)
    orthanc.upload(series)
    code, first = scan(orthanc, "--study", study_uid)
    assert code == 0 and first["studies"] == [study_uid]
    (analysed,) = [s for s in first["series"] if s["results"]]
    assert analysed["series_instance_uid"] == series_uid
    assert analysed["results"][0]["verdict"] == "authentic"
    assert analysed["stored_sop_instance_uids"], analysed["notes"]
    stored = set(analysed["stored_sop_instance_uids"])
    in_orthanc = set(orthanc.sop_instance_uids())
    assert stored <= in_orthanc
    # a second pass analyses the original again, never the objects the first pass stored
    code, second = scan(orthanc, "--study", study_uid, "--no-store")
    analysed_again = [s["series_instance_uid"] for s in second["series"] if s["results"]]
    assert analysed_again == [series_uid]
    skipped = [s for s in second["series"] if s["skipped"]]
    assert skipped and all(
        s["skipped"] in ("a medforensics result object", "modality SR holds no images")
        or "holds no image" in s["skipped"]
        for s in skipped
    )


def test_pacs_scan_since_a_date(tmp_path: Path, orthanc: Orthanc) -> None:
    series = write_phantom_series(tmp_path / "since", slices=4, size=64, seed=14)
    study_uid, _ = study_of(series)
    orthanc.upload(series)
    # the phantom writer dates every study 2024-01-15
    _code, found = scan(orthanc, "--since", "2024-01-01", "--no-store")
    assert study_uid in found["studies"]
    _code, none = scan(orthanc, "--since", "2030-01-01", "--no-store")
    assert none["studies"] == []
