"""The PDF report renders (pdftoppm) and its text (pdftotext) holds the verdict and every hash."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from medforensics.report.pdf import FILES_IN_BODY
from tests.conftest import write_series
from tests.report.test_build import load_one, payload, report_for


def _poppler(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package poppler-utils; .ci/run installs it)")
    return path


def pdf_text(pdf: Path) -> str:
    run = subprocess.run(
        [_poppler("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, check=True
    )
    return run.stdout.decode("utf-8")


def first_page(pdf: Path, out: Path) -> np.ndarray:
    subprocess.run(
        [_poppler("pdftoppm"), "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(out)],
        check=True,
        capture_output=True,
    )
    (page,) = sorted(out.parent.glob(out.name + "*.png"))
    return np.asarray(Image.open(page).convert("RGB"))


def test_pdf_renders_and_holds_the_verdict_and_every_hash(tmp_path: Path) -> None:
    series = write_series(tmp_path / "ct", n_slices=FILES_IN_BODY + 4)
    files = report_for(load_one(series.folder), tmp_path / "out", dicom=False)
    assert files.pdf is not None and files.pdf.read_bytes()[:5] == b"%PDF-"

    page = first_page(files.pdf, tmp_path / "page")
    assert page.shape[0] > 300 and page.shape[1] > 200
    gray = page.mean(axis=2)
    assert gray.std() > 20 and (gray < 128).mean() > 0.01, "the first page looks blank"
    red = (page[..., 0] > 150) & (page[..., 1] < 80) & (page[..., 2] < 80)
    assert red.sum() > 500, "no red verdict banner on the first page"

    text = pdf_text(files.pdf)
    assert "MANIPULATED" in text and "0.910" in text
    evidence = payload(files)["evidence"]
    assert evidence["pixel_sha256"] in text
    assert len(evidence["files"]) == FILES_IN_BODY + 4
    for entry in evidence["files"]:
        assert entry["sha256"] in text, entry["path"]
        assert entry["pixel_data_sha256"] in text, entry["path"]
    assert "Appendix A" in text
    for phrase in ("Limits of the method", "not proof", "report generated (UTC)", "pydicom"):
        assert phrase in text
    assert "withheld (run with --include-phi)" in text


def test_pdf_prints_identifiers_beyond_latin_1_when_asked(tmp_path: Path) -> None:
    series = write_series(tmp_path / "ct", n_slices=2)
    for path in series.paths:
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = "Łukasiewicz^Zoë"
        ds.save_as(path)
    files = report_for(load_one(series.folder), tmp_path / "out", include_phi=True, dicom=False)
    assert files.pdf is not None
    assert "Łukasiewicz^Zoë" in pdf_text(files.pdf)
