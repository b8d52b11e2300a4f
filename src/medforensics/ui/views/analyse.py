"""The Analyse page: upload or pick from the PACS; verdict, viewer, what was analysed, downloads."""

from __future__ import annotations

from typing import Any

import streamlit as st

from medforensics.explain.render import colour_bar, png_bytes
from medforensics.report.build import FLOOR
from medforensics.scan import ResultFinding
from medforensics.ui import state
from medforensics.ui.analysis import (
    AnalysedItem,
    Analysis,
    Progress,
    analyse_uploads,
    ensure_reports,
    sources_label,
)
from medforensics.ui.session import Upload
from medforensics.ui.settings import UiSettings
from medforensics.ui.viewer import DEFAULT_OPACITY, MapView, View, render_png, window_presets
from medforensics.ui.views import pacs_picker
from medforensics.ui.views.common import (
    download_buttons,
    findings_table,
    guarded,
    show_errors,
    verdict_banner,
)

ANALYSIS_KEY = "mf_analysis"
UPLOAD_KEY = "mf_analysis_upload_key"
FAILURE_KEY = "mf_analysis_failure"
UPLOADER_KEY = "analyse_upload"
ACCEPTED = "DICOM file(s) of one series, a zip of a series or study, NIfTI, PNG, JPEG or TIFF"


def show(settings: UiSettings) -> None:
    st.title("Analyse a scan")
    source = "Upload files"
    if settings.dicomweb_url:
        source = st.radio(
            "Source", ["Upload files", "From the PACS"], horizontal=True, key="analyse_source"
        )
    if source == "From the PACS":
        picked = pacs_picker.show(settings)
        if picked is not None:
            uploads, label = picked
            run_analysis(settings, uploads, label, f"pacs:{label}")
    else:
        uploaded = st.file_uploader(
            f"Upload {ACCEPTED}",
            accept_multiple_files=True,
            key=UPLOADER_KEY,
            help="Files are copied to a private temporary folder for this browser session and "
            "deleted when it ends; your own files are never changed.",
        )
        key = state.upload_key(uploaded)
        if not key:
            forget_analysis()
        elif key != st.session_state.get(UPLOAD_KEY):
            uploads = state.uploads_of(uploaded)
            run_analysis(settings, uploads, sources_label([u.name for u in uploads]), key)
    failure = st.session_state.get(FAILURE_KEY)
    if failure:
        st.error(failure, icon=":material/error:")
    analysis = st.session_state.get(ANALYSIS_KEY)
    if isinstance(analysis, Analysis):
        show_analysis(analysis)
    elif source == "Upload files" and not failure:
        st.info(f"Upload {ACCEPTED} to see whether and where it was manipulated.")


def forget_analysis() -> None:
    """Drop the analysis shown and delete its files (the uploads were removed, or replaced)."""
    analysis = st.session_state.pop(ANALYSIS_KEY, None)
    st.session_state.pop(UPLOAD_KEY, None)
    st.session_state.pop(FAILURE_KEY, None)
    if isinstance(analysis, Analysis) and analysis.folder is not None:
        state.session_files().discard(analysis.folder)
    for key in [k for k in st.session_state if str(k).startswith("mf_map_")]:
        del st.session_state[key]


def run_analysis(settings: UiSettings, uploads: list[Upload], label: str, key: str) -> None:
    """Analyse ``uploads`` with progress shown; the result replaces the analysis on the page."""
    forget_analysis()
    with st.status(f"Analysing {label}…", expanded=True) as status:

        def progress(text: str) -> None:
            status.update(label=text)
            status.write(text)

        try:
            analysis = analyse(settings, uploads, progress)
        except Exception as exc:  # a message on the page, never a stack trace
            status.update(label=f"{label}: not analysed", state="error", expanded=False)
            st.session_state[FAILURE_KEY] = (
                f"{label}: could not be analysed ({type(exc).__name__}: {exc}). Nothing you "
                "uploaded was changed."
            )
            st.session_state[UPLOAD_KEY] = key
            return
        done = f"Analysed {label} in {analysis.seconds:.1f} s"
        if analysis.errors:
            done += f"; {len(analysis.errors)} input(s) could not be analysed"
        failed = bool(analysis.errors) and not analysis.analysed_items
        status.update(label=done, state="error" if failed else "complete", expanded=False)
    st.session_state[ANALYSIS_KEY] = analysis
    st.session_state[UPLOAD_KEY] = key


def analyse(settings: UiSettings, uploads: list[Upload], progress: Progress) -> Analysis:
    if settings.remote:
        from medforensics.ui.client import remote_analysis

        return remote_analysis(state.service_client(), uploads, progress)
    return analyse_uploads(uploads, state.detector(), state.session_files(), progress=progress)


def show_analysis(analysis: Analysis) -> None:
    show_errors(analysis.errors)
    if analysis.skipped:
        with st.expander(f"{len(analysis.skipped)} file(s) skipped (not images)"):
            for skipped in analysis.skipped:
                st.write(f"{skipped.path}: {skipped.reason}")
    items = analysis.analysed_items
    if not items:
        return
    item = items[0]
    if len(items) > 1:
        item = st.selectbox(
            f"{len(items)} series or images were analysed; show",
            items,
            format_func=item_label,
            key=f"pick-{analysis.id}",
        )
    show_item(analysis, item)


def item_label(item: AnalysedItem) -> str:
    """One line per result in the picker: where, what, which series, the verdict."""
    result = item.result
    series = f", series …{result.series_instance_uid[-8:]}" if result.series_instance_uid else ""
    shape = "×".join(str(n) for n in result.shape or [])
    return f"{item.name} ({result.modality} {shape}{series}) — {result.verdict} {result.score:.3f}"


def item_title(item: AnalysedItem) -> str:
    """A series is named by its description and file count, an image by its file."""
    description = (item.analysed or {}).get("series_description")
    if item.result.files > 1:
        named = f"“{description}”" if description else item.result.modality or ""
        return f"{named} series, {item.result.files} files · {item.name}"
    return item.name


def show_item(analysis: Analysis, item: AnalysedItem) -> None:
    key = f"{analysis.id}-{item.number}"
    st.subheader(item_title(item))
    verdict_banner(item.result, models=item.models)
    viewer_column, side_column = st.columns([3, 2], gap="large")
    with side_column:
        st.markdown("**Findings**")
        findings_table(item.result, key=f"findings-{key}")
    with viewer_column:
        if item.volume is not None and item.detection is not None:
            with side_column:
                controls = viewer_controls(item, key)
            show_viewer(item, key, controls)
        elif item.overlay_png is not None:
            st.image(
                item.overlay_png,
                caption="The service's overlay of the most suspicious slice (REST mode: the "
                "slice viewer needs the scan in this app)",
                output_format="PNG",
            )
    reports = item.reports
    if reports is None and item.volume is not None:
        with st.spinner("Writing the reports (PDF, HTML, DICOM SR)…"):
            assert analysis.folder is not None
            out_dir = analysis.folder / "reports" / str(item.number)
            reports = guarded(
                "Writing the reports", lambda: ensure_reports(item, state.detector(), out_dir)
            )
    st.markdown("#### Downloads")
    if reports is not None:
        download_buttons(reports.downloads, key)
        for note in reports.notes:
            st.caption(f"• {note}")
    analysed_section(analysis, item)
    model_section(item)


def viewer_controls(item: AnalysedItem, key: str) -> dict[str, Any]:
    """The viewer's widgets (window, map, opacity, rings, jump-to-finding); their values."""
    assert item.volume is not None
    findings = item.result.findings
    slice_key = f"slice-{key}"
    presets = window_presets(item.volume)
    names = list(presets)
    focus = None
    if findings:
        focus = st.selectbox(
            "Jump to finding",
            [None, *range(len(findings))],
            format_func=lambda n: "—" if n is None else finding_label(n, findings[n]),
            key=f"focus-{key}",
            on_change=_jump,
            args=(f"focus-{key}", slice_key, findings, item.volume.shape[0]),
        )
    window_name = st.radio(
        "Window (centre/width)",
        names,
        horizontal=True,
        format_func=lambda n: f"{n} {presets[n][0]:g}/{presets[n][1]:g}",
        key=f"window-{key}",
    )
    show_map = st.toggle("Show the manipulation map", value=True, key=f"map-{key}")
    opacity = st.slider(
        "Map opacity", 0.0, 1.0, DEFAULT_OPACITY, 0.05, key=f"opacity-{key}", disabled=not show_map
    )
    rings = st.toggle("Ring findings", value=True, key=f"rings-{key}")
    return {
        "window_name": window_name,
        "window": presets[window_name],
        "show_map": show_map,
        "opacity": float(opacity),
        "rings": rings,
        "focus": focus,
    }


def finding_label(number: int, finding: ResultFinding) -> str:
    return (
        f"{number + 1}: {finding.kind} {finding.score:.3f} at slice {finding.slice}, "
        f"row {finding.row}, col {finding.col}"
    )


def _jump(focus_key: str, slice_key: str, findings: list[ResultFinding], slices: int) -> None:
    """Move the slice slider to the chosen finding's slice (runs before the page reruns)."""
    chosen = st.session_state.get(focus_key)
    if chosen is not None:
        st.session_state[slice_key] = min(max(int(findings[chosen].slice), 0), slices - 1)


def map_view(item: AnalysedItem, key: str) -> MapView:
    cache_key = f"mf_map_{key}"
    cached = st.session_state.get(cache_key)
    if not isinstance(cached, MapView):
        assert item.volume is not None and item.detection is not None
        cached = MapView.of(item.detection, item.volume.shape)
        st.session_state[cache_key] = cached
    return cached


def show_viewer(item: AnalysedItem, key: str, controls: dict[str, Any]) -> None:
    assert item.volume is not None
    maps = map_view(item, key)
    slices = item.volume.shape[0]
    slice_key = f"slice-{key}"
    if slice_key not in st.session_state:
        st.session_state[slice_key] = maps.start_slice(item.result.findings)
    index = 0
    if slices > 1:
        index = st.slider("Slice (0-based, as in the findings table)", 0, slices - 1, key=slice_key)
    view = View(
        index=int(index),
        window=controls["window"],
        show_map=controls["show_map"],
        opacity=controls["opacity"],
        rings=controls["rings"],
        focus=controls["focus"],
    )
    png = render_png(item.volume, maps, item.result.findings, view)
    centre, width = view.window
    peak = float(maps.slice_peaks()[index])
    caption = (
        f"slice {index} of {slices} · window {controls['window_name']} {centre:g}/{width:g} · "
        + (f"map on, opacity {view.opacity:.2f}" if view.show_map else "map off")
        + f" · map peak on this slice {peak:.3f}"
    )
    if view.focus is not None:
        caption += f" · finding {view.focus + 1} selected"
    st.image(png, caption=caption, output_format="PNG")
    if view.show_map:
        st.image(png_bytes(colour_bar(floor=FLOOR)), width=256, output_format="PNG")
        st.caption(
            "Colour marks regions more suspicious than this image's typical region "
            f"(calibrated probability {maps.baseline:.3f}): yellow just above it, red at "
            "probability 1. Cyan rings mark findings. The map shows where the evidence is "
            "strongest; it is not a segmentation of an edited region."
        )


def analysed_section(analysis: Analysis, item: AnalysedItem) -> None:
    st.markdown("#### What was analysed")
    analysed = dict(item.analysed or {})
    evidence = item.reports.evidence if item.reports is not None else None
    rows = [
        ("input", item.result.input),
        ("series description", analysed.get("series_description")),
        ("modality", item.result.modality),
        ("size (slices × rows × cols)", " × ".join(str(n) for n in item.result.shape or [])),
        ("spacing mm (slice, row, col)", ", ".join(_mm(v) for v in item.result.spacing or [])),
        ("manufacturer / model", _join(analysed.get("manufacturer"), analysed.get("model_name"))),
        ("kernel", analysed.get("kernel")),
        ("transfer syntax", ", ".join(analysed.get("transfer_syntax") or [])),
        ("files", item.result.files),
        ("series UID", item.result.series_instance_uid),
    ]
    for name, digest in analysis.upload_sha256.items():
        rows.append((f"SHA-256 of upload {name}", digest))
    if evidence is not None:
        rows.append(("SHA-256 of the analysed pixels", evidence.get("pixel_sha256")))
    table = [{"what": k, "value": str(v)} for k, v in rows if v not in (None, "", [])]
    st.dataframe(
        table, hide_index=True, width="stretch", key=f"analysed-{analysis.id}-{item.number}"
    )
    if evidence is not None and evidence.get("files"):
        with st.expander(f"Hashes of the {len(evidence['files'])} source file(s)"):
            st.dataframe(
                [
                    {
                        "file": (f.get("member") or f.get("path", "")).split("/")[-1],
                        "size": f.get("size"),
                        "SHA-256": f.get("sha256"),
                        "Pixel Data SHA-256": f.get("pixel_data_sha256"),
                        "SOPInstanceUID": f.get("sop_instance_uid"),
                    }
                    for f in evidence["files"]
                ],
                hide_index=True,
                width="stretch",
            )
            for what, definition in (evidence.get("hash_definitions") or {}).items():
                st.caption(f"{what}: {definition}")
    for problem in item.result.problems:
        st.caption(f"• reading: {problem}")


def model_section(item: AnalysedItem) -> None:
    st.markdown("#### Which model answered")
    for summary in item.models:
        flat = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
        nested = {k: v for k, v in summary.items() if isinstance(v, dict | list)}
        st.markdown(f"**{summary.get('name', 'model')}**")
        st.dataframe(
            [{"": k, "value": str(v)} for k, v in flat.items() if k != "name"],
            hide_index=True,
            width="stretch",
        )
        for name, value in nested.items():
            if value:
                st.caption(f"{name}: {value}")
    with st.expander("Model card (the detector's full description)"):
        st.json(item.described, expanded=False)


def _mm(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g}"


def _join(*values: Any) -> str | None:
    joined = " / ".join(str(v) for v in values if v)
    return joined or None
