"""``medforensics train-attack``: the learned attacks' generators trained from a folder of scans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from medforensics.cli.main import build_app
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples.phantom import chest_ct_phantom
from medforensics.samples.write import write_ct_series
from medforensics.tamper import simulate
from medforensics.tamper.synthetic import CACHE_ENV

runner = CliRunner()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    hu = np.rint(chest_ct_phantom(n_slices=6, size=96, rng=np.random.default_rng(3)))
    write_ct_series(hu, root / "patient0", patient_id="P0")
    (root / "notes.txt").write_text("not an image")  # not a scan: passed over
    return root


def test_cube_gan_goes_to_the_cache_where_the_attacks_find_it(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    result = runner.invoke(
        build_app(), ["train-attack", "cube-gan", "--authentic", str(site), "--steps", "1"]
    )
    assert result.exit_code == 0, result.output
    saved = list((tmp_path / "cache" / "generators").glob("cube-gan-CT-*.pt"))
    assert len(saved) == 1 and saved[0].with_suffix(".json").is_file()
    volume = next(v for v in load_paths([str(site)]) if isinstance(v, ImageVolume))
    tampered = simulate(volume, "gan-remove", 0)
    assert tampered.truth.params["inpainter"]["id"] in saved[0].name


def test_out_and_vae(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "vae.pt"
    args = ["train-attack", "vae-resize", "--authentic", str(site), "--steps", "1"]
    result = runner.invoke(build_app(), [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.with_suffix(".json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gan-x", "--authentic", "."], "unknown kind 'gan-x'"),
        (["cube-gan", "--authentic", ".", "--steps", "0"], "--steps must be at least 1"),
        (["cube-gan", "--authentic", "{empty}"], "no readable image"),
    ],
)
def test_bad_requests_are_explained(args: list[str], message: str, tmp_path: Path) -> None:
    args = [a.replace("{empty}", str(tmp_path)) for a in args]
    result = runner.invoke(build_app(), ["train-attack", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_scans_with_nothing_to_learn_from_are_refused_by_name(tmp_path: Path) -> None:
    hu = np.full((3, 64, 64), -1000.0)  # air only: no lung, no body to cut training cubes from
    write_ct_series(hu, tmp_path / "air", patient_id="P9")
    result = runner.invoke(
        build_app(),
        ["train-attack", "cube-gan", "--authentic", str(tmp_path / "air"), "--steps", "1"],
    )
    assert result.exit_code == 2
    assert "cannot train cube-gan" in result.output
