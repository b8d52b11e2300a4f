"""The Batch page: many files → one table (sort, filter), CSV and JSON export."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from medforensics.ui import state
from medforensics.ui.analysis import AnalysedItem, Analysis, analyse_uploads
from medforensics.ui.session import Upload
from medforensics.ui.settings import UiSettings
from medforensics.ui.views.common import INDICATION

BATCH_KEY = "mf_batch"
VERDICTS = ("manipulated", "inconclusive", "authentic", "error")


@dataclass
class Batch:
    """The rows of one batch and the scan contract's JSON of its results."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def batch_row(source: str, item: AnalysedItem) -> dict[str, Any]:
    """One table row: the file, the verdict, the score and where the top finding is."""
    result = item.result
    top = result.findings[0] if result.findings else None
    return {
        "file": source,
        "input": item.name,
        "verdict": result.verdict or "error",
        "score": result.score,
        "modality": result.modality,
        "size": "×".join(str(n) for n in result.shape or []),
        "findings": len(result.findings),
        "top finding": f"slice {top.slice}, row {top.row}, col {top.col}" if top else "",
        "detector": result.detector,
        "seconds": round(item.seconds, 2),
        "error": result.error or "",
    }


def show(settings: UiSettings) -> None:
    st.title("Batch")
    st.caption(
        "Each file is one input (put the files of a series in a zip). The table sorts by any "
        f"column (click its header) and can be filtered below. {INDICATION}"
    )
    uploaded = st.file_uploader("Files to analyse", accept_multiple_files=True, key="batch_upload")
    uploads = state.uploads_of(uploaded)
    label = f"Analyse {len(uploads)} file(s)" if uploads else "Analyse"
    if st.button(label, type="primary", disabled=not uploads, key="batch_run"):
        st.session_state[BATCH_KEY] = run_batch(settings, uploads)
    batch = st.session_state.get(BATCH_KEY)
    if isinstance(batch, Batch):
        show_table(batch)


def run_batch(settings: UiSettings, uploads: list[Upload]) -> Batch:
    """Analyse each upload in turn with a progress bar; volumes are not kept."""
    import time

    batch = Batch()
    started = time.perf_counter()
    bar = st.progress(0.0, text=f"0 of {len(uploads)} files analysed")
    for done, upload in enumerate(uploads, start=1):
        analysis = analyse_one(settings, upload)
        for item in analysis.items:
            batch.rows.append(batch_row(upload.name, item))
            batch.results.append(item.result.to_dict())
        bar.progress(done / len(uploads), text=f"{done} of {len(uploads)} files analysed")
    batch.seconds = time.perf_counter() - started
    bar.empty()
    return batch


def analyse_one(settings: UiSettings, upload: Upload) -> Analysis:
    from medforensics.scan import ScanResult

    try:
        if settings.remote:
            from medforensics.ui.client import remote_analysis

            analysis = remote_analysis(state.service_client(), [upload])
        else:
            analysis = analyse_uploads([upload], state.detector(), state.session_files())
    except Exception as exc:  # one file must not end the batch
        failed = ScanResult(
            input=upload.name,
            kind=None,
            modality=None,
            shape=None,
            score=None,
            verdict=None,
            error=f"{upload.name}: could not be analysed ({type(exc).__name__}: {exc})",
        )
        return Analysis(
            id="failed", sources=[upload.name], items=[AnalysedItem(1, upload.name, failed)]
        )
    if analysis.folder is not None:
        state.session_files().discard(analysis.folder)
    for item in analysis.items:
        item.volume = item.detection = None  # a batch keeps the table, not the pixels
    return analysis


def show_table(batch: Batch) -> None:
    import json

    import pandas as pd

    frame = pd.DataFrame(batch.rows)
    counts = frame["verdict"].value_counts().to_dict() if len(frame) else {}
    st.markdown(
        f"**{len(frame)} result(s)** in {batch.seconds:.1f} s: "
        + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    )
    left, right = st.columns([2, 3])
    chosen = left.multiselect(
        "Verdicts shown", VERDICTS, default=list(VERDICTS), key="batch_verdicts"
    )
    text = right.text_input("File name contains", key="batch_filter")
    shown = frame[frame["verdict"].isin(chosen)] if len(frame) else frame
    if text and len(shown):
        shown = shown[shown["file"].str.contains(text, case=False, regex=False)]
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "score": st.column_config.NumberColumn(
                "score", help="calibrated probability of manipulation", format="%.3f"
            )
        },
        key="batch_table",
    )
    from medforensics.__about__ import __version__
    from medforensics.scan import TOOL_NAME

    payload = {"tool": TOOL_NAME, "version": __version__, "results": batch.results, "skipped": []}
    columns = st.columns(2)
    columns[0].download_button(
        "CSV (rows shown)",
        data=shown.to_csv(index=False).encode(),
        file_name="medforensics-batch.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        key="batch_csv",
    )
    columns[1].download_button(
        "JSON (all results)",
        data=(json.dumps(payload, indent=2, allow_nan=False) + "\n").encode(),
        file_name="medforensics-batch.json",
        mime="application/json",
        on_click="ignore",
        icon=":material/download:",
        key="batch_json",
    )
