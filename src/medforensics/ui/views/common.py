"""Pieces several pages share: the verdict banner, the findings table, downloads, safe calls."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st

from medforensics.scan import ScanResult
from medforensics.ui.analysis import AnalysedItem, Download

T = TypeVar("T")

#: banner colours (white text on them passes WCAG AA)
VERDICT_COLOURS = {
    "manipulated": "#b71c1c",
    "inconclusive": "#bf4800",
    "authentic": "#1b5e20",
}
NOT_ANALYSED_COLOUR = "#424242"
VERDICT_HELP = {
    "manipulated": "the detector's evidence is above its threshold for manipulation",
    "inconclusive": "the evidence is between the thresholds, or the image could not be judged",
    "authentic": "no evidence of manipulation above the detector's threshold",
}
#: what every verdict is, in one sentence (report.evidence.METHOD_LIMITS says it at length)
INDICATION = (
    "A statistical indication for review by a qualified person, not proof of manipulation or of "
    "authenticity."
)


def thresholds_text(models: Sequence[dict[str, Any]]) -> str:
    """The operating points behind a verdict, e.g. "ct-local: manipulated at ≥ 0.874 ..."."""
    parts = []
    for model in models:
        point = model.get("operating point")
        if not isinstance(point, dict):
            continue
        text = f"{model.get('name')}: manipulated at ≥ {point['manipulated_at']:.3f}"
        if point.get("authentic_below") not in (None, point["manipulated_at"]):
            text += f", authentic below {point['authentic_below']:.3f}"
        if point.get("target_fpr"):
            text += f" (chosen for a false-alarm rate of {point['target_fpr']:g})"
        parts.append(text)
    return "; ".join(parts)


def verdict_banner(
    result: ScanResult, *, simulated: bool = False, models: Sequence[dict[str, Any]] = ()
) -> None:
    """The verdict in large coloured type, with the calibrated probability beside it."""
    verdict = result.verdict or "not analysed"
    colour = VERDICT_COLOURS.get(verdict, NOT_ANALYSED_COLOUR)
    score = "" if result.score is None else f" · probability of manipulation {result.score:.3f}"
    prefix = "SIMULATED SCAN — " if simulated else ""
    st.markdown(
        f'<div class="mf-verdict" data-verdict="{html.escape(verdict)}" '
        f'style="background:{colour};color:#ffffff;padding:0.7rem 1.1rem;border-radius:0.5rem;'
        f'font-size:1.6rem;font-weight:700;margin-bottom:0.4rem">'
        f"{html.escape(prefix)}{html.escape(verdict.upper())}"
        f'<span style="font-size:1.05rem;font-weight:400">{html.escape(score)}</span></div>',
        unsafe_allow_html=True,
    )
    columns = st.columns(3)
    columns[0].metric(
        "Calibrated probability of manipulation",
        "—" if result.score is None else f"{result.score:.3f}",
        help="The detector's score after calibration on authentic and simulated-tampered scans.",
    )
    columns[1].metric("Findings", len(result.findings))
    columns[2].metric("Model(s) that answered", result.detector or "—")
    explanation = VERDICT_HELP.get(verdict)
    st.caption(f"{verdict}: {explanation}. {INDICATION}" if explanation else INDICATION)
    thresholds = thresholds_text(models)
    if thresholds:
        st.caption(f"Thresholds: {thresholds}.")
    if result.notes:
        with st.expander(f"How the detector reached this verdict ({len(result.notes)} notes)"):
            for note in result.notes:
                st.markdown(f"- {note}")


def findings_rows(result: ScanResult) -> list[dict[str, Any]]:
    """One row per finding, numbered from 1, as the reports number them."""
    return [
        {
            "#": number,
            "kind": f.kind,
            "score": round(f.score, 3),
            "slice": f.slice,
            "row": f.row,
            "col": f.col,
            "radius (px)": f.radius,
            "detail": f.detail,
        }
        for number, f in enumerate(result.findings, start=1)
    ]


def findings_table(result: ScanResult, key: str) -> None:
    rows = findings_rows(result)
    if not rows:
        st.caption("No findings.")
        return
    st.dataframe(rows, hide_index=True, width="stretch", key=key)


def download_buttons(downloads: Sequence[Download], key: str) -> None:
    """A row of download buttons; the page does not rerun when one is pressed."""
    if not downloads:
        return
    columns = st.columns(min(len(downloads), 5))
    for index, download in enumerate(downloads):
        columns[index % len(columns)].download_button(
            download.label,
            data=download.data,
            file_name=download.file_name,
            mime=download.mime,
            key=f"{key}-download-{index}",
            on_click="ignore",
            icon=":material/download:",
        )


def show_errors(items: Sequence[AnalysedItem]) -> None:
    """One message per input that could not be analysed, naming the file and the problem."""
    for item in items:
        message = item.result.error or "could not be analysed"
        if item.name and not message.startswith(item.name.split("!")[0]):
            message = f"{item.name}: {message}"
        st.error(message, icon=":material/error:")


def guarded(what: str, call: Callable[[], T]) -> T | None:
    """Run ``call``; an unexpected error becomes a message on the page, never a stack trace."""
    try:
        return call()
    except Exception as exc:
        st.error(
            f"{what} failed: {type(exc).__name__}: {exc}. Nothing you uploaded was changed. "
            "If this keeps happening, please report it with the output of 'medforensics env'.",
            icon=":material/error:",
        )
        return None
