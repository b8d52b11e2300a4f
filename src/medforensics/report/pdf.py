"""The PDF report (reportlab platypus): the same content as the HTML, laid out for print.

Hashes are set in a monospaced font on lines wide enough that no hash is ever broken, so text
extracted from the PDF (``pdftotext``) gives every hash whole. Long series list their first
files in the body and every file in Appendix A.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from medforensics.report.evidence import Picture, ReportContent
from medforensics.utils.optional import require

#: files listed in the body; the full list goes to Appendix A beyond this
FILES_IN_BODY = 12
VERDICT_COLOURS = {
    "authentic": "#1b7f3b",
    "inconclusive": "#a86500",
    "manipulated": "#c21f1f",
}
NEUTRAL = "#555555"
_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/local/share/fonts"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _font_files() -> dict[str, Path] | None:
    """DejaVu fonts (wide Unicode coverage) from the system or matplotlib, if present."""
    names = {
        "sans": "DejaVuSans.ttf",
        "bold": "DejaVuSans-Bold.ttf",
        "mono": "DejaVuSansMono.ttf",
    }
    folders = list(_FONT_DIRS)
    try:
        import matplotlib

        folders.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:
        pass
    for folder in folders:
        found = {key: folder / name for key, name in names.items()}
        if all(path.is_file() for path in found.values()):
            return found
    return None


def _fonts() -> tuple[str, str, str]:
    """Names of the (regular, bold, mono) fonts, registering DejaVu when it can be found."""
    pdfmetrics = require("reportlab.pdfbase.pdfmetrics", "PDF reports")
    ttfonts = require("reportlab.pdfbase.ttfonts", "PDF reports")
    files = _font_files()
    if files is None:  # the PDF standard fonts: Latin-1 text only
        return "Helvetica", "Helvetica-Bold", "Courier"
    registered = set(pdfmetrics.getRegisteredFontNames())
    for key, path in files.items():
        name = f"MF-{key}"
        if name not in registered:
            pdfmetrics.registerFont(ttfonts.TTFont(name, str(path)))
    return "MF-sans", "MF-bold", "MF-mono"


def _t(value: object) -> str:
    """Text made safe for a reportlab Paragraph (its markup is XML-like)."""
    return escape(_CONTROL.sub(" ", str(value)))


class _Builder:
    """Holds styles and turns report content into platypus flowables."""

    def __init__(self) -> None:
        self.platypus = require("reportlab.platypus", "PDF reports")
        self.colors = require("reportlab.lib.colors", "PDF reports")
        styles_module = require("reportlab.lib.styles", "PDF reports")
        self.sans, self.bold, self.mono = _fonts()
        base = styles_module.getSampleStyleSheet()
        style = styles_module.ParagraphStyle
        self.body = style(
            "mf-body", parent=base["BodyText"], fontName=self.sans, fontSize=8.5, leading=10.5
        )
        self.small = style("mf-small", parent=self.body, fontSize=7, leading=8.5)
        self.cell = style("mf-cell", parent=self.body, fontSize=7, leading=8.5)
        self.hash = style(
            "mf-hash",
            parent=self.cell,
            fontName=self.mono,
            fontSize=6.8,
            leading=8.2,
            splitLongWords=0,
        )
        self.title = style(
            "mf-title",
            parent=base["Title"],
            fontName=self.bold,
            fontSize=15,
            leading=18,
            alignment=0,
        )
        self.h2 = style(
            "mf-h2",
            parent=base["Heading2"],
            fontName=self.bold,
            fontSize=11,
            leading=13,
            spaceBefore=8,
            spaceAfter=3,
            keepWithNext=1,
        )
        self.verdict = style(
            "mf-verdict",
            parent=self.body,
            fontName=self.bold,
            fontSize=13,
            leading=16,
            textColor=self.colors.white,
        )
        self.verdict_small = style(
            "mf-verdict-small", parent=self.small, textColor=self.colors.white
        )

    def p(self, text: object, style: Any = None) -> Any:
        return self.platypus.Paragraph(_t(text), style or self.body)

    def heading(self, text: str) -> Any:
        return self.p(text, self.h2)

    def grid(
        self, rows: Sequence[Sequence[Any]], widths: Sequence[float], header: bool = False
    ) -> Any:
        table = self.platypus.Table(list(rows), colWidths=list(widths), repeatRows=int(header))
        commands = [
            ("GRID", (0, 0), (-1, -1), 0.25, self.colors.HexColor("#bbbbbb")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]
        if header:
            commands.append(("BACKGROUND", (0, 0), (-1, 0), self.colors.HexColor("#eeeeee")))
        table.setStyle(self.platypus.TableStyle(commands))
        return table

    def pairs(self, rows: Sequence[tuple[str, str]], width: float) -> Any:
        cells = [[self.p(label, self.cell), self.p(value, self.cell)] for label, value in rows]
        return self.grid(cells, [width * 0.3, width * 0.7])

    def image(self, picture: Picture, max_width: float, max_height: float | None = None) -> Any:
        scale = min(max_width / picture.width, (max_height or max_width) / picture.height)
        return self.platypus.Image(
            io.BytesIO(picture.png), width=picture.width * scale, height=picture.height * scale
        )

    def figure(self, picture: Picture, max_width: float) -> list[Any]:
        return [self.image(picture, max_width), self.p(picture.caption, self.small)]

    def gallery(self, pictures: Sequence[Picture], width: float, per_row: int) -> Any:
        cell_width = width / per_row
        cells: list[Any] = [self.figure(p, cell_width - 8) for p in pictures]
        rows: list[list[Any]] = [cells[i : i + per_row] for i in range(0, len(cells), per_row)]
        rows[-1] = rows[-1] + [""] * (per_row - len(rows[-1]))
        table = self.platypus.Table(rows, colWidths=[cell_width] * per_row)
        table.setStyle(self.platypus.TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return table


def _findings(b: _Builder, content: ReportContent, width: float) -> Any:
    rows: list[list[Any]] = [[b.p(h, b.cell) for h in content.FINDING_COLUMNS]]
    rows.extend([b.p(v, b.cell) for v in values] for values in content.finding_rows())
    fractions = [0.035, 0.075, 0.06, 0.05, 0.045, 0.045, 0.055, 0.33, 0.305]
    return b.grid(rows, [width * f for f in fractions], header=True)


def _file_rows(b: _Builder, content: ReportContent, count: int | None) -> list[list[Any]]:
    rows: list[list[Any]] = [
        [b.p("#", b.cell), b.p("file / SOP Instance UID", b.cell), b.p("SHA-256", b.cell)]
    ]
    for number, entry in enumerate(content.evidence.files[:count], start=1):
        name = entry.member or entry.path
        where = _t(f"{name} ({entry.size} bytes)" if entry.size is not None else name)
        if entry.sop_instance_uid:
            where += "<br/>" + _t(f"SOP {entry.sop_instance_uid}")
        lines = [f"file {entry.sha256 or 'not hashed: ' + str(entry.problem)}"]
        if entry.pixel_data_sha256:
            lines.append(f"data {entry.pixel_data_sha256}")
        elif entry.problem and entry.sha256:
            lines.append(f"data not hashed: {entry.problem}")
        hashes = b.platypus.Paragraph("<br/>".join(_t(line) for line in lines), b.hash)
        rows.append([b.p(number, b.cell), b.platypus.Paragraph(where, b.cell), hashes])
    return rows


def _hashes(b: _Builder, content: ReportContent, width: float) -> list[Any]:
    evidence = content.evidence
    flow: list[Any] = [
        b.p("Pixel array analysed (SHA-256):", b.cell),
        b.p(evidence.pixel_sha256, b.hash),
    ]
    flow += [b.p(f"{name}: {text}", b.small) for name, text in evidence.hash_definitions.items()]
    if evidence.archive is not None:
        flow.append(b.p(f"input archive {evidence.archive.path}:", b.cell))
        flow.append(b.p(evidence.archive.sha256 or evidence.archive.problem, b.hash))
    widths = [width * 0.05, width * 0.33, width * 0.62]
    total = len(evidence.files)
    if total > FILES_IN_BODY:
        flow.append(
            b.p(f"First {FILES_IN_BODY} of {total} files; every file is listed in Appendix A.")
        )
        flow.append(b.grid(_file_rows(b, content, FILES_IN_BODY), widths, header=True))
    else:
        flow.append(b.grid(_file_rows(b, content, None), widths, header=True))
    return flow


def render_pdf(content: ReportContent) -> bytes:
    """The report as PDF bytes."""
    b = _Builder()
    pagesizes = require("reportlab.lib.pagesizes", "PDF reports")
    page_width = pagesizes.A4[0]
    margin = 36.0
    width = page_width - 2 * margin
    story: list[Any] = [b.p(f"Forensic image report: {content.title}", b.title)]

    colour = b.colors.HexColor(VERDICT_COLOURS.get(content.verdict, NEUTRAL))
    banner = b.platypus.Table(
        [
            [b.p(content.verdict_line(), b.verdict)],
            [b.p(content.threshold_line(), b.verdict_small)],
        ],
        colWidths=[width],
    )
    banner.setStyle(
        b.platypus.TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), colour),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, 0), 7),
                ("BOTTOMPADDING", (0, -1), (-1, -1), 7),
            ]
        )
    )
    story += [banner, b.platypus.Spacer(1, 6)]
    if content.result.get("error"):
        story.append(b.p(f"Error: {content.result['error']}"))
    if content.notes:
        story.append(b.heading("Notes on this report"))
        story += [b.p(f"- {note}") for note in content.notes]
    if content.evidence.detector_notes:
        story.append(b.heading("Why the detector says so"))
        story += [b.p(f"- {note}") for note in content.evidence.detector_notes]

    story.append(b.heading("Where"))
    if content.overlay is not None:
        story.append(b.image(content.overlay, width * 0.6, 300))
        story.append(b.p(content.overlay.caption, b.small))
    if content.colour_bar is not None:
        story.append(b.image(content.colour_bar, 160, 10))
    story.append(b.p(f"{content.heat_legend} Cyan rings mark findings.", b.small))
    if content.saliency is not None:
        story += b.figure(content.saliency, width * 0.5)

    story.append(b.heading("Findings"))
    story.append(_findings(b, content, width) if content.findings else b.p("No findings."))
    if content.crops:
        story += [b.platypus.Spacer(1, 4), b.gallery(content.crops, width, 4)]
    if content.strip:
        story += [b.heading("Slices"), b.gallery(content.strip, width, 4)]

    story += [
        b.heading("What was analysed"),
        b.pairs(content.analysed_rows(), width),
        b.heading("Patient identifiers"),
        b.pairs(content.patient_rows(), width),
        b.heading("Hashes"),
        *_hashes(b, content, width),
        b.heading("Model"),
    ]
    for rows in content.model_rows():
        story += [b.pairs(rows, width), b.platypus.Spacer(1, 4)]
    story += [
        b.heading("Software"),
        b.pairs(content.software_rows(), width),
        b.heading("Times"),
        b.pairs(content.timestamp_rows(), width),
        b.heading("Limits of the method"),
    ]
    story += [b.p(f"- {limit}") for limit in content.evidence.limits]
    if len(content.evidence.files) > FILES_IN_BODY:
        story += [
            b.platypus.PageBreak(),
            b.heading(f"Appendix A: all {len(content.evidence.files)} source files"),
            b.grid(
                _file_rows(b, content, None),
                [width * 0.05, width * 0.33, width * 0.62],
                header=True,
            ),
        ]

    footer = f"medforensics report: {content.title} | {content.verdict}"
    generated = content.evidence.timestamps.get("report_generated") or ""

    def decorate(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(b.sans, 7)
        canvas.setFillColor(b.colors.HexColor("#666666"))
        canvas.drawString(margin, 20, _CONTROL.sub(" ", footer)[:110])
        canvas.drawRightString(page_width - margin, 20, f"{generated}  page {doc.page}")
        canvas.restoreState()

    buffer = io.BytesIO()
    document = b.platypus.SimpleDocTemplate(
        buffer,
        pagesize=pagesizes.A4,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin,
        title=f"medforensics report: {content.title}",
        author="medforensics",
        subject="forensic analysis of a medical image",
        creator="medforensics",
    )
    document.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()
