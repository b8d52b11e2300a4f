"""The dataset builder and the two CLI commands, on phantom series written to disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from medforensics.cli import make_dataset, tamper
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, write_ct_series
from medforensics.tamper.dataset import build_dataset, split_for


@pytest.fixture
def authentic_dir(tmp_path: Path) -> Path:
    root = tmp_path / "authentic"
    for k, patient in enumerate(("P-1", "P-2", "P-3")):
        hu = chest_ct_phantom(6, 96, np.random.default_rng(k))
        write_ct_series(hu, root / patient, spacing=(2.5, 1.8, 1.8), patient_id=patient)
    return root


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    tamper.register(app)
    make_dataset.register(app)
    return app


def _volumes(root: Path) -> list[ImageVolume]:
    return [v for v in load_paths([str(root)]) if isinstance(v, ImageVolume)]


def test_dataset_is_reproducible_and_split_by_patient(authentic_dir: Path, tmp_path: Path) -> None:
    volumes = _volumes(authentic_dir)
    first = build_dataset(volumes, tmp_path / "d1", seed=5, cases_per_series=3)
    second = build_dataset(list(reversed(volumes)), tmp_path / "d2", seed=5, cases_per_series=3)
    assert first == second  # input order does not matter
    assert (tmp_path / "d1" / "manifest.csv").read_text() == (
        tmp_path / "d2" / "manifest.csv"
    ).read_text()
    case = first[0]["path"]
    assert (tmp_path / "d1" / case).read_bytes() == (tmp_path / "d2" / case).read_bytes()

    labels = {row["label"] for row in first}
    assert "TB" in labels and labels - {"TB"}
    for row in first:
        assert row["split"] == split_for(row["patient_id"], 5)
    other = build_dataset(volumes, tmp_path / "d3", seed=6, cases_per_series=3, write=False)
    assert [r["attack"] for r in other] != [r["attack"] for r in first] or other != first


def test_manifest_rows_point_at_tampered_files(authentic_dir: Path, tmp_path: Path) -> None:
    rows = build_dataset(_volumes(authentic_dir), tmp_path / "d", seed=1, cases_per_series=2)
    with (tmp_path / "d" / "manifest.csv").open() as handle:
        assert next(iter(csv.DictReader(handle))).keys() >= {
            "uid",
            "slice",
            "x",
            "y",
            "label",
            "patient_id",
            "split",
        }
    for row in rows:
        if row["label"] != "TB":
            case_dir = tmp_path / "d" / "cases" / row["case_id"]
            truth = json.loads((case_dir / "truth.json").read_text())
            assert truth["centre"] == [row["slice"], row["y"], row["x"]]
            assert (tmp_path / "d" / row["path"]).is_file()


def test_tamper_command_writes_series_and_ground_truth(authentic_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _app(),
        [
            "tamper",
            str(authentic_dir / "P-1"),
            str(out),
            "--attack",
            "inject",
            "--seed",
            "3",
            "--launder",
            "jpeg",
        ],
    )
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["cases"][0]["label"] == "FM"
    assert truth["cases"][0]["params"]["laundering"][0]["op"] == "jpeg"
    assert len(list(out.glob("*.dcm"))) == 6


def test_tamper_command_errors_are_for_people(authentic_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(), ["tamper", str(authentic_dir / "P-1"), str(tmp_path / "o"), "--attack", "melt"]
    )
    assert result.exit_code != 0
    assert "unknown attack 'melt'" in result.output


def test_gallery_renders_small_pngs(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["tamper", "--gallery", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    pngs = list((tmp_path / "g").glob("*.png"))
    # 6 attacks x (CT phantom, radiograph phantom), and CT-GAN's pipeline around inject and
    # remove on the CT phantom only (the learned and generator attacks need a trained model)
    assert len(pngs) == 14
    assert {p.name for p in pngs} >= {"phantom-ct_ctgan-inject.png", "phantom-ct_ctgan-remove.png"}
    assert max(p.stat().st_size for p in pngs) < 200_000


def test_make_dataset_command(authentic_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(),
        ["make-dataset", str(authentic_dir), str(tmp_path / "ds"), "--cases-per-series", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "3 series, 3 cases" in result.output
