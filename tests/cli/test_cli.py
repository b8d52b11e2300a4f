"""The ``medforensics`` command: scan, info, env and demo run end to end and exit as documented."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import medforensics
from medforensics.__about__ import __version__
from medforensics.cli.main import build_app
from tests.conftest import WrittenSeries

SetVerdict = Callable[[str], str]


def _run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args), catch_exceptions=False)


def test_module_entry_point_prints_the_version() -> None:
    src = str(Path(medforensics.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [sys.executable, "-m", "medforensics.cli.main", "--version"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"medforensics {__version__}"


def test_scan_prints_a_table_and_notes_problems(
    ct_series: WrittenSeries, constant_detector: SetVerdict
) -> None:
    ct_series.paths[3].unlink()  # a gap: reported as a note, not an error
    name = constant_detector("manipulated")

    result = _run("scan", str(ct_series.folder), "--detector", name)

    assert result.exit_code == 1
    assert "manipulated" in result.stdout
    assert "gap between slices" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_scan_json_to_stdout_moves_the_table_to_stderr(
    ct_series: WrittenSeries, constant_detector: SetVerdict
) -> None:
    name = constant_detector("authentic")

    result = _run("scan", str(ct_series.folder), "--detector", name, "--json", "-")

    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["results"][0]["verdict"] == "authentic"
    assert "authentic" in result.stderr  # the human summary is still shown


def test_scan_errors_are_shown_and_exit_2(ct_series: WrittenSeries, tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image\n")

    result = _run("scan", str(text_file), str(ct_series.folder), "--quiet")

    assert result.exit_code == 2
    assert result.stdout == ""  # --quiet: nothing but the exit code


def test_info_describes_a_series(ct_series: WrittenSeries) -> None:
    result = _run("info", str(ct_series.folder))

    assert result.exit_code == 0, result.stdout
    assert "dicom-series" in result.stdout
    assert "Explicit VR Little Endian" in result.stdout


def test_info_json_keeps_inputs_as_given_and_reports_geometry(
    ct_series: WrittenSeries, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ct_series.folder.parent)
    given = f"./{ct_series.folder.name}/"

    result = _run("info", given, "--json", "-")

    assert result.exit_code == 0
    (entry,) = json.loads(result.stdout)["inputs"]
    assert entry["input"] == given
    assert entry["shape"] == list(ct_series.hu_volume.shape)
    assert entry["spacing_mm"] == pytest.approx(list(ct_series.spacing))
    assert entry["series_instance_uid"] == ct_series.series_uid
    assert entry["problems"] == []


def test_info_exits_2_on_a_bad_input(tmp_path: Path) -> None:
    missing = tmp_path / "gone"

    result = _run("info", str(missing), "--json", "-")

    assert result.exit_code == 2
    (entry,) = json.loads(result.stdout)["inputs"]
    assert entry["error"] and entry["input"] == str(missing)


def test_env_runs_and_lists_versions() -> None:
    result = _run("env")

    assert result.exit_code == 0
    assert "pydicom" in result.stdout


def test_env_json_is_parseable() -> None:
    result = _run("env", "--json", "-")

    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["medforensics"] == __version__
    assert info["packages"]["pydicom"]
    assert "noise-residual" in info["detectors"]
    assert any(info["pixel_decoders"].values())


def test_demo_writes_samples_and_a_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"

    result = _run("demo", "--out", str(out))

    assert result.exit_code == 0, result.stdout
    report = json.loads((out / "report.json").read_text())
    assert len(report["results"]) == 5
    assert all(r["error"] is None for r in report["results"])
    verdicts = {Path(r["input"]).name: r["verdict"] for r in report["results"]}
    # what the README says the demo shows
    assert verdicts == {
        "ct-authentic": "authentic",
        "ct-tampered": "manipulated",
        "ct-ctgan-pipeline": "manipulated",
        "xray-authentic.png": "authentic",
        "xray-tampered.png": "manipulated",
    }
    reports = out / "reports"
    assert len(list(reports.glob("*.pdf"))) == 5 and len(list(reports.glob("*.html"))) == 5
    assert all((reports / f"{Path(p).stem}.json").exists() for p in reports.glob("*.pdf"))
    assert list(reports.glob("*-dicom/*sr.dcm")), "the DICOM samples get a DICOM SR"


def test_json_report_gets_the_usual_file_mode(tmp_path: Path) -> None:
    from medforensics.cli.output import write_json_atomic

    old = os.umask(0o022)
    try:
        target = tmp_path / "report.json"
        write_json_atomic({"tool": "medforensics"}, target)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert json.loads(target.read_text()) == {"tool": "medforensics"}
