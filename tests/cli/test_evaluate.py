"""``medforensics evaluate``: writes the report, prints the table, exits 2 on unusable data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from medforensics.cli import evaluate as evaluate_cli
from tests.evaluate.test_run import write_ctgan_standin, write_phantoms


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """A group, so the subcommand is called by name as under the real app."""

    evaluate_cli.register(app)
    return app


def _run(*args: str) -> Result:
    return CliRunner().invoke(_app(), ["evaluate", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_phantoms(tmp_path_factory.mktemp("data"), patients=2)
    (root / "patient0" / "README.dcm").write_bytes(b"not DICOM at all")
    return root


def test_evaluate_writes_report_and_prints_headline_table(phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"

    result = _run(
        str(phantoms), "--model", "noise-residual", "--out", str(out), "--seed", "2",
        "--attack", "inject", "--attack", "inpaint", "--bootstrap", "50",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    for row in ("slice", "case", "study"):
        assert f"│ {row}" in result.stdout
    assert "ROC-AUC [95% CI]" in result.stdout
    assert "README.dcm" in result.stderr  # listed, not fatal
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["command"].startswith(f"medforensics evaluate {phantoms} --model noise-residual")
    assert "--seed 2" in metrics["command"]
    assert metrics["seed"] == 2
    assert set(metrics["per_attack"]) == {"inject", "inpaint"}
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert all((out / plot).read_bytes()[:4] == b"\x89PNG" for plot in metrics["plots"])


def test_missing_data_exits_2_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    result = _run(str(missing), "--model", "noise-residual", "--out", str(tmp_path / "o"))

    assert result.exit_code == 2
    assert str(missing) in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_unknown_model_and_protocol_exit_2(phantoms: Path, tmp_path: Path) -> None:
    unknown = _run(str(phantoms), "--model", "nope", "--out", str(tmp_path))
    protocol = _run(
        str(phantoms), "--model", "noise-residual", "--out", str(tmp_path), "--protocol", "x"
    )

    assert unknown.exit_code == 2 and "unknown detector 'nope'" in unknown.stderr
    assert protocol.exit_code == 2 and "unknown --protocol" in protocol.stderr


def test_ctgan_labels_option_evaluates_the_labelled_scans(tmp_path: Path) -> None:
    labels = write_ctgan_standin(tmp_path / "ctgan")
    out = tmp_path / "eval"

    result = _run(
        str(tmp_path / "ctgan"), "--model", "noise-residual", "--out", str(out),
        "--ctgan-labels", str(labels), "--bootstrap", "20",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["source"] == "ctgan"
    assert metrics["data"]["cases"]["manipulated"] == 2
    assert "--ctgan-labels" in metrics["command"]
