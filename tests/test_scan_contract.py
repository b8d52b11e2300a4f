"""The scan contract: JSON keys, ``input`` as given, scores, verdicts, exit codes, untouched files.

``medforensics scan PATH... [--json FILE]`` gives ``{"tool", "version", "results": [...]}`` with
one result per series or image, and exits 0 (all authentic), 1 (something flagged) or 2 (some
input could not be analysed).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from typer.testing import CliRunner

from medforensics.__about__ import __version__
from medforensics.cli.main import build_app
from medforensics.io import ImageVolume, load_paths
from medforensics.samples import radiograph_phantom
from tests.conftest import WrittenSeries, file_fingerprints, write_series

RESULT_KEYS = {"input", "kind", "modality", "shape", "score", "verdict", "findings", "error"}
FINDING_KEYS = {"kind", "score", "slice", "row", "col", "sop_instance_uid"}
VERDICTS = {"authentic", "manipulated", "inconclusive"}

SetVerdict = Callable[[str], str]


def _scan(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), ["scan", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _scan_json(args: list[str]) -> tuple[int, dict[str, Any]]:
    code, stdout, _stderr = _scan([*args, "--json", "-", "--quiet"])
    return code, json.loads(stdout)


@pytest.fixture
def png_image(tmp_path: Path) -> Path:
    image = radiograph_phantom(size=96, rng=np.random.default_rng(4))[0]
    path = tmp_path / "chest.png"
    Image.fromarray(np.rint(image).astype(np.uint16)).save(path)
    return path


@pytest.fixture
def nifti_volume(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(6).normal(0, 50, size=(40, 30, 5)).astype(np.float32)
    path = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(data, affine=np.diag([0.9, 0.8, 3.0, 1.0])), path)
    return path, data


def _assert_result_shape(result: dict[str, Any]) -> None:
    assert set(result) >= RESULT_KEYS, set(result) ^ RESULT_KEYS
    if result["error"] is not None:
        assert isinstance(result["error"], str) and result["error"]
        assert result["verdict"] is None and result["score"] is None
        return
    assert result["verdict"] in VERDICTS
    assert isinstance(result["score"], float) and 0.0 <= result["score"] <= 1.0
    assert isinstance(result["shape"], list) and len(result["shape"]) == 3
    assert isinstance(result["findings"], list)
    for finding in result["findings"]:
        assert set(finding) >= FINDING_KEYS, set(finding)
        assert 0.0 <= finding["score"] <= 1.0
        for axis, key in enumerate(("slice", "row", "col")):
            assert isinstance(finding[key], int)
            assert 0 <= finding[key] < result["shape"][axis]


def test_json_has_the_contract_keys_for_every_kind_of_input(
    ct_series: WrittenSeries,
    png_image: Path,
    nifti_volume: tuple[Path, np.ndarray],
    constant_detector: SetVerdict,
) -> None:
    name = constant_detector("manipulated")
    inputs = [str(ct_series.folder), str(png_image), str(nifti_volume[0])]

    code, payload = _scan_json([*inputs, "--detector", name])

    assert code == 1
    assert {"tool", "version", "results"} <= set(payload)
    assert payload["tool"] == "medforensics"
    assert payload["version"] == __version__
    results = payload["results"]
    assert [r["input"] for r in results] == inputs
    for result in results:
        _assert_result_shape(result)
        assert result["error"] is None
    series, image, nifti = results
    assert (series["kind"], series["modality"]) == ("dicom-series", "CT")
    assert series["shape"] == list(ct_series.hu_volume.shape)
    assert image["kind"] == "image" and image["shape"] == [1, 96, 96]
    assert nifti["kind"] == "nifti" and nifti["shape"] == [5, 40, 30]
    # the test detector reports its finding on the last slice of the sorted series
    assert series["findings"][0]["slice"] == len(ct_series.sop_uids) - 1
    assert series["findings"][0]["sop_instance_uid"] == ct_series.sop_uids[-1]
    assert image["findings"][0]["slice"] == 0
    assert image["findings"][0]["sop_instance_uid"] is None
    assert nifti["findings"][0]["sop_instance_uid"] is None


def test_every_finding_maps_to_the_sop_instance_of_its_slice(
    ct_series: WrittenSeries, constant_detector: SetVerdict
) -> None:
    from medforensics.scan import scan_paths

    name = constant_detector("manipulated")
    (result,) = scan_paths([str(ct_series.folder)], detector=name)

    finding = result.findings[0]
    # slice is the index along the series sorted by position, whatever the file names
    assert finding.sop_instance_uid == ct_series.sop_uids[finding.slice]
    source = pydicom.dcmread(ct_series.paths[finding.slice])
    assert source.SOPInstanceUID == finding.sop_instance_uid


def test_nifti_slice_row_col_index_the_array_as_data_row_col_slice(
    nifti_volume: tuple[Path, np.ndarray],
) -> None:
    path, data = nifti_volume
    (volume,) = load_paths([path])
    assert isinstance(volume, ImageVolume)

    assert volume.shape == (data.shape[2], data.shape[0], data.shape[1])
    for slice_index, row, col in [(0, 0, 0), (4, 39, 29), (2, 17, 5)]:
        assert volume.pixels[slice_index, row, col] == pytest.approx(data[row, col, slice_index])


def test_input_is_the_path_exactly_as_given(
    ct_series: WrittenSeries,
    monkeypatch: pytest.MonkeyPatch,
    constant_detector: SetVerdict,
) -> None:
    monkeypatch.chdir(ct_series.folder.parent)
    name = constant_detector("authentic")
    given = [f"./{ct_series.folder.name}/", f"{ct_series.folder.name}//{ct_series.paths[0].name}"]

    code, payload = _scan_json([*given, "--detector", name])

    assert code == 0
    assert [r["input"] for r in payload["results"]] == given


@pytest.mark.parametrize(
    ("verdict", "expected_code"),
    [("authentic", 0), ("manipulated", 1), ("inconclusive", 1)],
)
def test_exit_code_follows_the_verdicts(
    ct_series: WrittenSeries,
    png_image: Path,
    constant_detector: SetVerdict,
    verdict: str,
    expected_code: int,
) -> None:
    name = constant_detector(verdict)

    code, payload = _scan_json([str(ct_series.folder), str(png_image), "--detector", name])

    assert code == expected_code
    assert {r["verdict"] for r in payload["results"]} == {verdict}


@pytest.mark.parametrize("verdict", ["authentic", "manipulated"])
def test_exit_code_is_2_when_one_input_fails_even_if_others_are_fine(
    ct_series: WrittenSeries, tmp_path: Path, constant_detector: SetVerdict, verdict: str
) -> None:
    name = constant_detector(verdict)
    missing = tmp_path / "not-there.dcm"

    code, payload = _scan_json([str(ct_series.folder), str(missing), "--detector", name])

    assert code == 2
    good, bad = payload["results"]
    assert good["verdict"] == verdict and good["error"] is None
    assert bad["input"] == str(missing)
    assert bad["error"] and str(missing) in bad["error"]
    _assert_result_shape(bad)


def test_json_to_stdout_is_pure_json_and_file_output_matches(
    ct_series: WrittenSeries, tmp_path: Path, constant_detector: SetVerdict
) -> None:
    name = constant_detector("authentic")
    report = tmp_path / "out" / "report.json"

    code, stdout, _stderr = _scan([str(ct_series.folder), "--detector", name, "--json", "-"])
    assert code == 0
    from_stdout = json.loads(stdout)

    code, stdout, _stderr = _scan(
        [str(ct_series.folder), "--detector", name, "--json", str(report)]
    )
    assert code == 0
    from_file = json.loads(report.read_text())
    assert from_file["results"] == from_stdout["results"]
    # the human summary still goes to stdout when the JSON goes to a file
    assert ct_series.folder.name in stdout or "authentic" in stdout


def test_default_detector_gives_real_scores(ct_series: WrittenSeries) -> None:
    code, payload = _scan_json([str(ct_series.folder)])

    (result,) = payload["results"]
    _assert_result_shape(result)
    assert result["error"] is None
    assert code in (0, 1)


def test_unknown_detector_is_a_usage_error(ct_series: WrittenSeries) -> None:
    code, _stdout, stderr = _scan([str(ct_series.folder), "--detector", "no-such-detector"])

    assert code == 2
    assert "no-such-detector" in stderr


def test_original_files_are_untouched(
    tmp_path: Path, png_image: Path, nifti_volume: tuple[Path, np.ndarray]
) -> None:
    series = write_series(tmp_path / "inputs" / "series", n_slices=4, seed=41)
    compressed = tmp_path / "inputs" / "rle.dcm"
    ds = pydicom.dcmread(series.paths[0])
    ds.compress(pydicom.uid.RLELossless)
    ds.save_as(compressed, enforce_file_format=True)
    archive = tmp_path / "inputs" / "study.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in series.paths:
            handle.write(path, f"study/{path.name}")
    inputs = [series.folder, compressed, archive, png_image, nifti_volume[0]]
    before = {k: v for path in inputs for k, v in file_fingerprints(path).items()}

    code, payload = _scan_json([str(p) for p in inputs])

    assert code in (0, 1), payload
    after = {k: v for path in inputs for k, v in file_fingerprints(path).items()}
    assert after == before
    # nothing was added next to the inputs either (no caches, no extracted zips)
    assert sorted(p.name for p in (tmp_path / "inputs").iterdir()) == sorted(
        ["series", "rle.dcm", "study.zip"]
    )


def test_input_stays_the_folder_given_for_a_zip_inside_it(
    tmp_path: Path, constant_detector: SetVerdict
) -> None:
    outer = tmp_path / "delivery"
    loose = write_series(outer / "loose", n_slices=3, seed=51)
    zipped = write_series(tmp_path / "to-zip", n_slices=4, seed=52)
    with zipfile.ZipFile(outer / "more.zip", "w") as handle:
        for path in zipped.paths:
            handle.write(path, f"study/{path.name}")
        handle.writestr("study/broken.dcm", b"DICM but not really")
    name = constant_detector("authentic")

    code, payload = _scan_json([str(outer), "--detector", name])

    assert code == 2  # the broken member
    results = payload["results"]
    assert {r["input"] for r in results} == {str(outer)}
    shapes = sorted(r["shape"][0] for r in results if r["error"] is None)
    assert shapes == [len(loose.paths), len(zipped.paths)]
    (broken,) = [r for r in results if r["error"] is not None]
    # the message says where inside the archive the bad member is
    assert f"{outer / 'more.zip'}!study/broken.dcm" in broken["error"]
