"""The HTML report: one self-contained file (pictures inlined as PNG data, no scripts, no links).

Every piece of text from the input or the model goes through ``html.escape``; a
Content-Security-Policy forbids scripts and any load from outside the file, so even a header
crafted to look like markup can only ever show as text.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

from medforensics.report.evidence import Picture, ReportContent

VERDICT_COLOURS = {
    "authentic": "#1b7f3b",
    "inconclusive": "#a86500",
    "manipulated": "#c21f1f",
}
NEUTRAL = "#555555"
#: files listed before the rest folds into a <details> element
FILES_SHOWN = 20

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:2em auto;max-width:1100px;color:#1a1a1a;line-height:1.4;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;border-bottom:1px solid #ccc;
margin-top:1.8em}.verdict{color:#fff;padding:.8em 1em;border-radius:6px;font-size:1.3em;
font-weight:600}.verdict small{display:block;font-size:.65em;font-weight:400;margin-top:.3em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;
padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}
code,.hash{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.85em;
word-break:break-all}figure{display:inline-block;margin:.4em;vertical-align:top;
max-width:400px}figcaption{font-size:.8em;color:#444}img{image-rendering:pixelated;
border:1px solid #999}.notes li{color:#7a4a00}.limits li{margin-bottom:.3em}
.strip figure{max-width:170px}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _figure(picture: Picture, alt: str | None = None) -> str:
    data = base64.b64encode(picture.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{picture.width}" '
        f'height="{picture.height}" alt="{_e(alt or picture.caption)}">'
        f"<figcaption>{_e(picture.caption)}</figcaption></figure>"
    )


def _table(
    rows: Iterable[Sequence[object]], header: Sequence[str] = (), mono: Sequence[int] = ()
) -> str:
    parts = ["<table>"]
    if header:
        parts.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for column, value in enumerate(row):
            css = ' class="hash"' if column in mono else ""
            cells.append(f"<td{css}>{_e(value)}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def _list(items: Iterable[str], css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f"<ul{klass}>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul>"


def _findings(content: ReportContent) -> str:
    if not content.findings:
        return "<p>No findings.</p>"
    return _table(content.finding_rows(), content.FINDING_COLUMNS)


def _hashes(content: ReportContent) -> str:
    evidence = content.evidence
    parts = [
        "<p>Pixel array analysed (SHA-256): "
        f'<span class="hash">{_e(evidence.pixel_sha256)}</span></p>',
        _list(f"{name}: {text}" for name, text in evidence.hash_definitions.items()),
    ]
    if evidence.archive is not None:
        archive = evidence.archive
        parts.append(
            f"<p>Input archive <code>{_e(archive.path)}</code>: "
            f'<span class="hash">{_e(archive.sha256 or archive.problem)}</span></p>'
        )
    rows = [
        (
            number,
            entry.member or entry.path,
            entry.size if entry.size is not None else "-",
            entry.sop_instance_uid or "-",
            entry.sha256 or f"not hashed: {entry.problem}",
            entry.pixel_data_sha256 or ("-" if not entry.problem else entry.problem),
        )
        for number, entry in enumerate(evidence.files, start=1)
    ]
    header = ("#", "file", "bytes", "SOP Instance UID", "file SHA-256", "Pixel Data SHA-256")
    if len(rows) <= FILES_SHOWN:
        parts.append(_table(rows, header, mono=(4, 5)))
    else:
        parts.append(_table(rows[:FILES_SHOWN], header, mono=(4, 5)))
        parts.append(
            f"<details><summary>all {len(rows)} files</summary>"
            + _table(rows, header, mono=(4, 5))
            + "</details>"
        )
    return "".join(parts)


def render_html(content: ReportContent) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    colour = VERDICT_COLOURS.get(content.verdict, NEUTRAL)
    result = content.result
    body: list[str] = [
        f"<h1>Forensic image report: {_e(content.title)}</h1>",
        f'<div class="verdict" style="background:{colour}">{_e(content.verdict_line())}'
        f"<small>{_e(content.threshold_line())}</small></div>",
    ]
    if content.notes:
        body += ["<h2>Notes on this report</h2>", _list(content.notes, "notes")]
    detector_notes = content.evidence.detector_notes
    if detector_notes:
        body += ["<h2>Why the detector says so</h2>", _list(detector_notes)]
    body.append("<h2>Where</h2>")
    if content.overlay is not None:
        body.append(_figure(content.overlay))
    if content.colour_bar is not None:
        body.append(_figure(content.colour_bar))
    body.append(f"<p>{_e(content.heat_legend)} Cyan rings mark findings.</p>")
    if content.saliency is not None:
        body.append(_figure(content.saliency))
    body += ["<h2>Findings</h2>", _findings(content)]
    if content.crops:
        body.append("<div>" + "".join(_figure(c) for c in content.crops) + "</div>")
    if content.strip:
        body += [
            "<h2>Slices</h2>",
            '<div class="strip">' + "".join(_figure(p) for p in content.strip) + "</div>",
        ]
    body += [
        "<h2>What was analysed</h2>",
        _table(content.analysed_rows()),
        "<h2>Patient identifiers</h2>",
        _table(content.patient_rows()),
        "<h2>Hashes</h2>",
        _hashes(content),
        "<h2>Model</h2>",
    ]
    body.extend(_table(rows) for rows in content.model_rows())
    body += [
        "<h2>Software</h2>",
        _table(content.software_rows()),
        "<h2>Times</h2>",
        _table(content.timestamp_rows()),
    ]
    if content.dicom_files:
        body += ["<h2>DICOM results written</h2>", _list(content.dicom_files)]
    body += ["<h2>Limits of the method</h2>", _list(content.evidence.limits, "limits")]
    if result.get("error"):
        body.insert(2, f"<p><strong>Error:</strong> {_e(result['error'])}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>medforensics report: {_e(content.title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n<hr><p><small>Generated by medforensics "
        + _e(content.evidence.software.get("medforensics"))
        + ". This report is a statistical indication for review, not proof.</small></p>"
        + "</body></html>\n"
    )
