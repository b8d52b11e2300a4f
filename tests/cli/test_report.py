"""``scan --report DIR`` and ``report RESULT.json``: reports per result; errors named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from medforensics.cli.main import build_app
from medforensics.cli.report import detector_name
from tests.conftest import write_series
from tests.report.test_build import MapDetector

SetVerdict = Callable[[str], str]
OUTPUTS = (".html", ".pdf", ".overlay.png", ".json")


def _run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args), catch_exceptions=False)


def _scan_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = _run("scan", *args, "--json", "-", "--quiet")
    return result.exit_code, json.loads(result.stdout)


def _stems(folder: Path) -> set[str]:
    return {p.name.removesuffix(".json") for p in folder.glob("*.json")}


def _two_series(root: Path) -> Path:
    write_series(root / "a", n_slices=3, series_uid="1.2.3.4.100")
    write_series(root / "b", n_slices=3, seed=2, series_uid="1.2.3.4.200")
    return root


def test_scan_report_writes_every_output_per_result_and_keeps_the_contract(
    tmp_path: Path,
) -> None:
    study = _two_series(tmp_path / "study")
    plain_code, plain = _scan_json(str(study), "--detector", MapDetector.name)
    out = tmp_path / "reports"
    code, reported = _scan_json(str(study), "--detector", MapDetector.name, "--report", str(out))

    assert code == plain_code == 1  # manipulated, with or without reports
    assert set(reported) == set(plain)
    assert len(reported["results"]) == 2
    for before, after in zip(plain["results"], reported["results"], strict=True):
        assert set(after) == set(before)
        for key in ("input", "score", "verdict", "findings", "error", "series_instance_uid"):
            assert after[key] == before[key], key
    assert _stems(out) == {"study_1.2.3.4.100", "study_1.2.3.4.200"}
    for stem in _stems(out):
        for suffix in OUTPUTS:
            assert (out / f"{stem}{suffix}").stat().st_size > 0, stem + suffix
        stored = json.loads((out / f"{stem}.json").read_text())
        assert stored["evidence"]["timestamps"]["analysis_started"] is not None
        # DICOM results: written, or the reason they are not is a note on the result
        dicom_files = stored["outputs"]["dicom"]
        result = next(
            r for r in reported["results"] if r["series_instance_uid"] == stored["identity"][1]
        )
        assert dicom_files or any(n.startswith("report: DICOM") for n in result["notes"])
        for relative in dicom_files.values():
            assert (out / relative).is_file()


def test_scan_report_goes_on_past_a_bad_input_and_keeps_exit_2(
    tmp_path: Path, constant_detector: SetVerdict
) -> None:
    series = write_series(tmp_path / "good", n_slices=2)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"DICM" * 10)
    name = constant_detector("authentic")
    out = tmp_path / "reports"
    code, payload = _scan_json(
        str(broken), str(series.folder), "--detector", name, "--report", str(out)
    )

    assert code == 2
    errors = [r for r in payload["results"] if r["error"]]
    assert len(errors) == 1 and errors[0]["input"] == str(broken)
    assert _stems(out) == {"good_" + series.series_uid[-16:]}


def test_a_report_that_cannot_be_written_is_a_note_not_a_new_exit_code(
    tmp_path: Path, constant_detector: SetVerdict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / "reports"))

    monkeypatch.setattr("medforensics.report.build.write_reports", refuse)
    series = write_series(tmp_path / "ct", n_slices=2)
    name = constant_detector("authentic")
    code, payload = _scan_json(str(series.folder), "--detector", name, "--report", str(tmp_path))

    assert code == 0
    (result,) = payload["results"]
    assert result["verdict"] == "authentic" and result["error"] is None
    assert any("report failed: PermissionError" in n for n in result["notes"])


def test_report_regenerates_the_reports_of_a_scan_json(tmp_path: Path) -> None:
    study = _two_series(tmp_path / "study")
    scan_json = tmp_path / "scan.json"
    _run("scan", str(study), "--detector", MapDetector.name, "--json", str(scan_json), "-q")
    out = tmp_path / "reports"

    result = _run("report", str(scan_json), "--out", str(out), "--no-dicom")

    assert result.exit_code == 0, result.stderr
    assert "2 of 2 result(s) reported" in result.stderr
    assert _stems(out) == {"study_1.2.3.4.100", "study_1.2.3.4.200"}
    for stem in _stems(out):
        stored = json.loads((out / f"{stem}.json").read_text())
        assert stored["regenerated"]["score_matches"] is True
        assert stored["notes"][0].startswith(f"regenerated from {scan_json}")
        assert (out / f"{stem}.pdf").is_file() and (out / f"{stem}.html").is_file()


def test_report_names_each_result_it_cannot_report_and_reports_the_others(
    tmp_path: Path,
) -> None:
    kept = write_series(tmp_path / "kept", n_slices=2)
    gone = write_series(tmp_path / "gone", n_slices=2, seed=3)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not dicom at all")
    scan_json = tmp_path / "scan.json"
    _run(
        "scan",
        str(broken),
        str(gone.folder),
        str(kept.folder),
        "--detector",
        MapDetector.name,
        "--json",
        str(scan_json),
        "-q",
    )
    shutil.rmtree(gone.folder)
    out = tmp_path / "reports"

    result = _run("report", str(scan_json), "--out", str(out), "--no-dicom")

    assert result.exit_code == 2
    assert f"{broken}" in result.stderr and "could not analyse it" in result.stderr
    assert f"{gone.folder}" in result.stderr and "does not exist" in result.stderr
    assert "1 of 3 result(s) reported" in result.stderr
    assert _stems(out) == {"kept_" + kept.series_uid[-16:]}


def test_report_with_another_detector_says_the_score_differs(
    tmp_path: Path, constant_detector: SetVerdict
) -> None:
    series = write_series(tmp_path / "ct", n_slices=2)
    scan_json = tmp_path / "scan.json"
    _run("scan", str(series.folder), "--detector", MapDetector.name, "--json", str(scan_json), "-q")
    name = constant_detector("authentic")
    out = tmp_path / "reports"

    result = _run("report", str(scan_json), "--out", str(out), "--detector", name, "--no-dicom")

    assert result.exit_code == 0
    (stem,) = _stems(out)
    stored = json.loads((out / f"{stem}.json").read_text())
    assert stored["regenerated"]["score_matches"] is False
    assert stored["regenerated"]["json_score"] == pytest.approx(MapDetector.score)
    assert any("differs from the score in the JSON" in n for n in stored["notes"])
    assert "differs from the score in the JSON" in result.stderr


def test_report_rejects_a_file_that_is_not_a_scan_json(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}')
    result = _run("report", str(bogus), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "holds no scan results" in result.stderr
    result = _run("report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "cannot be read" in result.stderr


def test_the_detector_to_rerun_is_the_one_the_scan_used() -> None:
    assert detector_name({"detector": "ct-local+classical"}, None) == "auto"
    assert detector_name({"detector": "noise-residual", "findings": []}, None) == "noise-residual"
    routed = {"detector": "noise-residual", "findings": [{"kind": "metadata"}]}
    assert detector_name(routed, None) == "auto"  # header findings: auto added them
    assert detector_name({"detector": "metadata", "findings": [{"kind": "metadata"}]}, None) == (
        "metadata"
    )
    assert detector_name({"detector": None}, None) == "auto"
    assert detector_name({"detector": "ct-local"}, "classical") == "classical"
