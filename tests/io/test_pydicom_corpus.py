"""Every file pydicom ships is either read or rejected with a clear error: no tracebacks, no hangs.

pydicom's test data holds the awkward cases real archives hold: big endian, implicit VR without
a meta header, every compression, palettes, RT objects, DICOMDIRs, charsets, truncated files and
files that are not DICOM at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import data as pydicom_data

import medforensics
from medforensics.io import ImageVolume, LoadError
from medforensics.io.loader import Skipped, load_paths
from medforensics.scan import ScanResult, scan_paths

_DATA_ROOT = Path(pydicom_data.__file__).parent
VERDICTS = {"authentic", "manipulated", "inconclusive"}


def _corpus() -> list[str]:
    files = (
        pydicom_data.get_testdata_files()
        + pydicom_data.get_charset_files()
        + pydicom_data.get_palette_files()
    )
    return sorted(set(files))


CORPUS = _corpus()


def _corpus_id(path: str) -> str:
    return str(Path(path).relative_to(_DATA_ROOT))


def _pydicom_decodes(path: str) -> bool:
    """Whether pydicom alone gets an image out of ``path``: then the reader must too."""
    if os.path.isdir(path):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, force=True).pixel_array.size > 0
    except Exception:
        return False


def _assert_clear_error(message: str, where: str, path: str) -> None:
    assert message.strip(), f"empty error message for {path}"
    # the message must point at the file: the input itself or a file inside the folder
    assert where == path or where.startswith(path + os.sep), (where, path)
    assert "internal error" not in message, message


def test_corpus_is_the_real_thing() -> None:
    names = {Path(p).name for p in CORPUS}
    assert len(CORPUS) > 150
    assert {"CT_small.dcm", "JPEG2000.dcm", "rtdose.dcm", "chrRuss.dcm", "hotiron.dcm"} <= names


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", CORPUS, ids=_corpus_id)
def test_loader_reads_or_rejects(path: str) -> None:
    items = list(load_paths([path]))

    assert items, f"nothing at all came back for {path}"
    outcomes = [item for item in items if not isinstance(item, Skipped)]
    if os.path.isfile(path):
        assert len(outcomes) == 1, items
    else:
        assert outcomes, f"folder {path} gave neither a volume nor an error"
    for item in items:
        if isinstance(item, Skipped):
            assert os.path.isdir(path), f"a file given explicitly was skipped: {item}"
            assert item.reason
        elif isinstance(item, LoadError):
            assert item.input == path
            _assert_clear_error(item.message, item.path, path)
            assert item.path in str(item)
        else:
            assert isinstance(item, ImageVolume)
            assert item.input == path
            assert item.pixels.dtype == np.float32
            assert item.pixels.ndim == 3 and min(item.shape) > 0
            assert len(item.slices) == item.shape[0]
            assert np.isfinite(item.pixels).all()
    if _pydicom_decodes(path):
        assert any(isinstance(item, ImageVolume) for item in items), (
            f"pydicom decodes {path} but the reader refused it: {items}"
        )


def _assert_result(result: ScanResult, path: str) -> None:
    assert result.input == path
    if result.error is not None:
        assert result.location is not None
        _assert_clear_error(result.error, result.location, path)
        assert result.verdict is None and result.score is None
        return
    assert result.verdict in VERDICTS
    assert result.score is not None and 0.0 <= result.score <= 1.0
    assert result.kind in {"dicom-series", "dicom-multiframe"}
    assert result.modality
    assert result.shape is not None and len(result.shape) == 3
    for finding in result.findings:
        assert 0 <= finding.slice < result.shape[0]
        assert 0 <= finding.row < result.shape[1]
        assert 0 <= finding.col < result.shape[2]
        assert 0.0 <= finding.score <= 1.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", CORPUS, ids=_corpus_id)
def test_scan_reads_or_rejects(path: str) -> None:
    results = list(scan_paths([path]))

    assert results, f"no result for {path}"
    for result in results:
        _assert_result(result, path)


@pytest.mark.timeout(180)
def test_cli_over_the_whole_corpus_in_one_run(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    src = str(Path(medforensics.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "medforensics.cli.main", "scan", *CORPUS]
    completed = subprocess.run(
        [*command, "--json", str(report), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=170,
        check=False,
    )

    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    # some inputs are not images at all, so the batch as a whole must say "2: some input failed"
    assert completed.returncode == 2, completed.stderr[-3000:]
    payload = json.loads(report.read_text())
    assert payload["tool"] == "medforensics"
    inputs_seen = {result["input"] for result in payload["results"]}
    assert inputs_seen == set(CORPUS)
    assert any(result["verdict"] for result in payload["results"])
