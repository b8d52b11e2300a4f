"""``medforensics train`` and ``adapt`` on small phantom DICOM series of three patients."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medforensics.cli.main import build_app
from medforensics.detect.checkpoint import load_checkpoint
from medforensics.detect.local import LocalDetector
from medforensics.samples.phantom import chest_ct_phantom
from medforensics.samples.write import write_ct_series

runner = CliRunner()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    for index in range(3):
        hu = np.rint(chest_ct_phantom(n_slices=10, size=128, rng=np.random.default_rng(index)))
        write_ct_series(hu, root / f"patient{index}", patient_id=f"P{index}")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.mark.slow
def test_train_then_adapt_write_usable_checkpoints(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "site.pt"
    args = ["--authentic", str(site), "--out", str(out), "--rounds", "1", "--steps", "2"]
    result = runner.invoke(build_app(), ["train", *args, "--attack", "inject"])
    assert result.exit_code == 0, result.output
    _, meta = load_checkpoint(out)
    assert meta["training"]["split"].startswith("by patient")
    assert meta["training"]["attacks"] == ["inject"]
    card = json.loads((tmp_path / "site.card.json").read_text())
    assert card["operating_point"] == meta["operating_point"]
    detector = LocalDetector(checkpoint=out)
    assert detector.describe()["checkpoint"] == "site.pt"

    adapted = tmp_path / "adapted.pt"
    result = runner.invoke(
        build_app(),
        ["adapt", "--model", str(out), "--authentic", str(site), "--out", str(adapted),
         "--rounds", "1", "--steps", "2", "--attack", "inpaint"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    before, _ = load_checkpoint(out)
    after, _ = load_checkpoint(adapted)
    assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)


def test_train_without_ct_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(
        build_app(),
        ["train", "--authentic", str(tmp_path / "empty"), "--out", str(tmp_path / "m.pt")],
    )
    assert result.exit_code == 2
    assert "no readable CT images" in result.output


def test_adapt_with_a_bad_model_names_the_file(site: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    result = runner.invoke(
        build_app(),
        ["adapt", "--model", str(bad), "--authentic", str(site), "--out", str(tmp_path / "o.pt")],
    )
    assert result.exit_code == 2
    assert "bad.pt" in result.output
