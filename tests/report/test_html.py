"""The HTML report: self-contained, escaped, complete."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pydicom

from medforensics.report.html import render_html
from tests.conftest import write_series
from tests.report.test_build import load_one, payload, report_for

HOSTILE = "<script>alert('x')</script><img src=http://evil.example/x.png>"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(text)
    return parser.tags


def test_html_escapes_hostile_header_text_and_loads_nothing_from_outside(tmp_path: Path) -> None:
    series = write_series(tmp_path / "ct", n_slices=3)
    for path in series.paths:
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = HOSTILE
        ds.Manufacturer = 'Acme" onmouseover="alert(1)'
        ds.save_as(path)
    files = report_for(load_one(series.folder), tmp_path / "out", dicom=False)
    assert files.html is not None
    text = files.html.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "evil.example/x.png>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "Acme&quot; onmouseover=&quot;alert(1)" in text
    tags = _tags(text)
    names = {tag for tag, _ in tags}
    assert not names & {"script", "link", "iframe", "object", "embed"}
    images = [attrs for tag, attrs in tags if tag == "img"]
    assert images, "no pictures in the report"
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any(attrs.get("href") for _, attrs in tags)
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_html_holds_every_hash_the_findings_and_a_labelled_slice_strip(tmp_path: Path) -> None:
    series = write_series(tmp_path / "ct", n_slices=12)
    files = report_for(load_one(series.folder), tmp_path / "out", dicom=False)
    assert files.html is not None
    text = files.html.read_text(encoding="utf-8")
    evidence = payload(files)["evidence"]
    assert evidence["pixel_sha256"] in text
    for entry in evidence["files"]:
        assert entry["sha256"] in text and entry["pixel_data_sha256"] in text
    assert "MANIPULATED: manipulation score 0.910 (calibrated probability 91.0 %" in text
    assert series.sop_uids[-1] in text  # the finding is on the last slice
    captions = re.findall(r"<figcaption>slice (\d+) \(map peak", text)
    assert len(captions) == 8 and "11" in captions  # 8 of 12 slices, the hot one included
    assert "<figcaption>finding 1: local 0.910, slice 11, row 36, col 20" in text  # its crop
    assert "Limits of the method" in text and "not proof" in text


def test_render_html_is_one_document_with_the_title_escaped(tmp_path: Path) -> None:
    series = write_series(tmp_path / "ct", n_slices=2)
    files = report_for(load_one(series.folder), tmp_path / "a<b>", dicom=False)
    assert files.html is not None
    text = files.html.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count("<html") == 1
    assert render_html.__module__ == "medforensics.report.html"
