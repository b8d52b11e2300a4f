"""Write an evaluation: metrics.json, PNG plots, report.md and a self-contained report.html.

The report is built once as a list of blocks (headings, paragraphs, tables, figures) and
rendered twice: Markdown that links ``plots/*.png``, and HTML with the same PNGs embedded as
``data:`` URIs so the one file can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medforensics.evaluate.run import EvaluationResult
from medforensics.utils.optional import MissingExtraError

LEVELS = ("slice", "case", "study")
HEADLINE_COLUMNS = (
    "level",
    "authentic / manipulated",
    "ROC-AUC [95% CI]",
    "AP",
    "EER",
    "TPR@FPR 1%",
    "TPR@FPR 5%",
    "accuracy",
    "precision",
    "recall",
    "F1",
    "ECE",
)


@dataclass
class ReportFiles:
    """Where everything was written."""

    metrics: Path
    markdown: Path
    html: Path
    plots: list[Path] = field(default_factory=list)


Block = tuple[Any, ...]


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: ``n/a`` for None/NaN, fixed decimals for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def auc_text(value: Any, interval: Mapping[str, Any] | None) -> str:
    """``0.912 [0.850–0.960]``, or the AUC alone when there is no interval."""
    text = fmt(value)
    if interval and interval.get("low") is not None and interval.get("high") is not None:
        text += f" [{fmt(interval['low'])}–{fmt(interval['high'])}]"
    return text


def headline_rows(metrics: Mapping[str, Any]) -> list[list[str]]:
    """One row per level under ``HEADLINE_COLUMNS`` (shared by the report and the CLI table)."""
    rows = []
    for level in LEVELS:
        m = metrics["levels"].get(level)
        if not m:
            continue
        tpr = m.get("tpr_at_fpr") or {}
        rows.append(
            [
                level,
                f"{m['n_authentic']} / {m['n_manipulated']}",
                auc_text(m.get("roc_auc"), m.get("roc_auc_ci")),
                fmt(m.get("average_precision")),
                fmt(m.get("eer")),
                fmt(tpr.get("0.01")),
                fmt(tpr.get("0.05")),
                fmt(m.get("accuracy")),
                fmt(m.get("precision")),
                fmt(m.get("recall")),
                fmt(m.get("f1")),
                fmt(m.get("ece")),
            ]
        )
    return rows


def json_ready(value: Any) -> Any:
    """numpy types to Python, NaN/inf to None, tuples to lists, floats to 6 significant digits."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is for others to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- plots


def draw_plots(result: EvaluationResult, folder: Path) -> list[tuple[str, Path]]:
    """Every figure the result supports, as ``(caption, path)``."""
    from medforensics.evaluate import plots

    m = result.metrics
    levels = m["levels"]
    out = [
        (
            "ROC curves (slice, case and study level)",
            plots.roc_plot(
                result.curves,
                {k: v.get("roc_auc") for k, v in levels.items()},
                folder / "roc.png",
            ),
        ),
        (
            "Precision-recall curves",
            plots.pr_plot(
                result.curves,
                {k: v.get("average_precision") for k, v in levels.items()},
                folder / "pr.png",
            ),
        ),
        (
            "Reliability (calibration) diagram",
            plots.reliability_plot(
                {k: v.get("reliability") for k, v in levels.items()}, folder / "reliability.png"
            ),
        ),
    ]
    for key, title in (("per_attack", "attack"), ("per_scanner", "scanner")):
        table = m.get(key) or {}
        if len(table) < 1 or (key == "per_scanner" and len(table) < 2):
            continue
        names = list(table)
        spans = [_span(table[n].get("roc_auc_ci")) for n in names]
        out.append(
            (
                f"Case-level ROC-AUC per {title} (whiskers: 95% bootstrap interval)",
                plots.bar_plot(
                    names,
                    {"ROC-AUC": [table[n].get("roc_auc") for n in names]},
                    folder / f"{key}.png",
                    f"ROC-AUC per {title}",
                    intervals={"ROC-AUC": spans},
                ),
            )
        )
    out.extend(_protocol_plots(m["protocol"], levels["case"].get("roc_auc"), folder))
    for index, example in enumerate(result.examples, start=1):
        out.append(
            (
                f"Example heatmap: {example.title} (cyan: changed voxels, +: top findings)",
                plots.heatmap_plot(example, folder / f"heatmap_{index}.png"),
            )
        )
    return out


def _span(interval: Mapping[str, Any] | None) -> tuple[float, float] | None:
    if not interval or interval.get("low") is None or interval.get("high") is None:
        return None
    return float(interval["low"]), float(interval["high"])


def _protocol_plots(
    protocol: Mapping[str, Any], clean_auc: float | None, folder: Path
) -> list[tuple[str, Path]]:
    from medforensics.evaluate import plots

    if protocol.get("ops"):
        ops = protocol["ops"]
        names = ["none", *ops]
        values = [clean_auc, *(ops[op].get("roc_auc") for op in ops)]
        path = plots.bar_plot(
            names, {"ROC-AUC": values}, folder / "robustness.png", "ROC-AUC after laundering"
        )
        return [("Case-level ROC-AUC after each laundering operation", path)]
    folds = protocol.get("folds") or {}
    if not folds:
        return []
    names = list(folds)
    if protocol["name"] == "cross-scanner":
        series = {
            "given model": [_get(folds[n], "given_model", "roc_auc") for n in names],
            "retrained without it": [_get(folds[n], "retrained", "roc_auc") for n in names],
        }
        title, caption = "ROC-AUC on each held-out scanner", "Leave-one-scanner-out ROC-AUC"
    else:
        series = {
            "held-out attack": [_get(folds[n], "held_out", "roc_auc") for n in names],
            "seen attacks": [_get(folds[n], "seen_attacks", "roc_auc") for n in names],
        }
        title, caption = "ROC-AUC without each attack", "Leave-one-attack-out ROC-AUC"
    path = plots.bar_plot(names, series, folder / f"{protocol['name']}.png", title)
    return [(caption, path)]


def _get(entry: Mapping[str, Any], part: str, key: str) -> float | None:
    value = (entry.get(part) or {}).get(key)
    return float(value) if isinstance(value, int | float) else None


# ----------------------------------------------------------------------------- blocks


def build_blocks(metrics: Mapping[str, Any], figures: Sequence[tuple[str, str]]) -> list[Block]:
    """The report's content, independent of the output format."""
    model, data, protocol = metrics["model"], metrics["data"], metrics["protocol"]
    blocks: list[Block] = [
        ("h", 1, f"Evaluation of {model['name']}"),
        (
            "ul",
            [
                f"Created {metrics['created']} by medforensics {metrics['software_version']}",
                f"Command: `{metrics['command']}`" if metrics.get("command") else "Command: n/a",
                f"Model: {model['spec']}"
                + (
                    f" (sha256 {model['checkpoint_sha256']})"
                    if model.get("checkpoint_sha256")
                    else ""
                ),
                f"Decision threshold {fmt(model['threshold'], 4)} ({model['threshold_source']})",
                f"Protocol: {protocol['name']}"
                + (" with retraining" if protocol["retrain"] else ""),
                f"Seed {metrics['seed']} (cases drawn with seed {data['case_seed']})",
            ],
        ),
        ("h", 2, "Data"),
        ("p", _data_sentence(data)),
    ]
    scanners = data.get("scanners") or {}
    if scanners:
        blocks.append(
            (
                "table",
                ["scanner", "patients", "authentic cases", "manipulated cases"],
                [
                    [
                        name,
                        str(s["patients"]),
                        str(s["authentic_cases"]),
                        str(s["manipulated_cases"]),
                    ]
                    for name, s in scanners.items()
                ],
            )
        )
    problems = [
        *data.get("skipped", []),
        *(f"{k} ({n}x)" for k, n in data.get("unscored", {}).items()),
    ]
    problems += [f"attack failed: {k} ({n}x)" for k, n in data.get("attack_errors", {}).items()]
    if problems:
        blocks += [("p", "Skipped or not scored:"), ("ul", problems[:50])]
    blocks += [
        ("h", 2, "Headline figures"),
        ("table", list(HEADLINE_COLUMNS), headline_rows(metrics)),
        (
            "p",
            "Slice: a slice is manipulated when the attack changed a voxel in it; its score is the "
            "maximum of the anomaly map over the slice (the case score when there is no map). "
            "Case: one chunk of consecutive slices or one scan. Study: the maximum over a study's "
            "cases; each tampered twin makes one tampered study with the study's other chunks.",
        ),
    ]
    confusion = metrics["levels"]["case"].get("confusion") or {}
    if confusion:
        blocks += [
            ("h", 3, f"Case-level confusion at threshold {fmt(model['threshold'], 4)}"),
            (
                "table",
                ["", "called authentic", "called manipulated"],
                [
                    ["authentic", str(confusion["tn"]), str(confusion["fp"])],
                    ["manipulated", str(confusion["fn"]), str(confusion["tp"])],
                ],
            ),
        ]
    loc = metrics["localisation"]
    blocks += [
        ("h", 2, "Localisation"),
        (
            "p",
            f"Top-3 hit rate {fmt(loc['hit_rate'])} over {loc['cases']} tampered cases; mean "
            f"distance from the nearest top-3 finding to the attack centre "
            f"{fmt(loc['mean_distance_voxels'], 1)} voxels; {loc['cases_without_findings']} "
            f"case(s) had no local finding. Rule: {loc['rule']}.",
        ),
    ]
    blocks += _breakdown_blocks("Per attack (authentic vs that attack)", metrics.get("per_attack"))
    if len(metrics.get("per_scanner") or {}) > 1 or protocol["name"] == "cross-scanner":
        blocks += _breakdown_blocks("Per scanner", metrics.get("per_scanner"))
    blocks += _protocol_blocks(protocol)
    warnings = [
        f"{name}: {note}"
        for name, level in metrics["levels"].items()
        for note in [*level.get("warnings", []), *(level.get("roc_auc_ci") or {}).get("notes", [])]
    ]
    if warnings:
        blocks += [("h", 2, "Read with care"), ("ul", warnings)]
    if figures:
        blocks.append(("h", 2, "Figures"))
        blocks += [("img", caption, rel) for caption, rel in figures]
    elif metrics.get("plots_skipped"):
        blocks += [("h", 2, "Figures"), ("p", f"No plots: {metrics['plots_skipped']}")]
    return blocks


def _data_sentence(data: Mapping[str, Any]) -> str:
    cases = data["cases"]
    by_attack = ", ".join(f"{k} {v}" for k, v in cases["by_attack"].items()) or "none"
    source = (
        f"CT-GAN labels {data['ctgan']['labels_file']} (experiment {data['ctgan']['experiment']})"
        if data.get("source") == "ctgan"
        else f"simulated attacks on chunks of {data['chunk_slices']} slices, "
        f"{data['per_chunk']} twin(s) per chunk"
    )
    text = (
        f"{data['volumes']} series/images ({data['slices']} slices) from {data['patients']} "
        f"patient(s); {source}. Scored {cases['scored']} of {cases['built']} cases: "
        f"{cases['authentic']} authentic, {cases['manipulated']} manipulated ({by_attack}); "
        f"{cases['inconclusive']} could not be assessed by the detector."
    )
    if data.get("source") == "ctgan" and data["ctgan"].get("outside_scan"):
        text += (
            f" {data['ctgan']['outside_scan']} labelled location(s) fall outside their scan: "
            "check that the labels' slice order matches the reader's."
        )
    return text


def _breakdown_blocks(title: str, table: Mapping[str, Any] | None) -> list[Block]:
    if not table:
        return []
    rows = [
        [
            name,
            f"{e['authentic_cases']} / {e['manipulated_cases']}",
            auc_text(e.get("roc_auc"), e.get("roc_auc_ci")),
            fmt(e.get("average_precision")),
            fmt((e.get("tpr_at_fpr") or {}).get("0.05")),
            fmt(e.get("tpr_at_threshold")),
            fmt(e.get("fpr_at_threshold")),
            fmt(e.get("localisation_hit_rate")),
        ]
        for name, e in table.items()
    ]
    headers = [
        "",
        "authentic / manipulated",
        "ROC-AUC [95% CI]",
        "AP",
        "TPR@FPR 5%",
        "TPR at threshold",
        "FPR at threshold",
        "top-3 hit rate",
    ]
    return [("h", 2, title), ("table", headers, rows)]


_SHORT_HEADERS = [
    "authentic / manipulated",
    "ROC-AUC",
    "AP",
    "TPR@FPR 5%",
    "TPR at thr.",
    "FPR at thr.",
    "top-3 hit rate",
]


def _short_row(entry: Mapping[str, Any] | None) -> list[str]:
    if not entry:
        return ["n/a"] * len(_SHORT_HEADERS)
    return [
        f"{entry['authentic_cases']} / {entry['manipulated_cases']}",
        fmt(entry.get("roc_auc")),
        fmt(entry.get("average_precision")),
        fmt(entry.get("tpr_at_fpr_0.05")),
        fmt(entry.get("tpr_at_threshold")),
        fmt(entry.get("fpr_at_threshold")),
        fmt(entry.get("localisation_hit_rate")),
    ]


def _protocol_blocks(protocol: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = [("h", 2, f"Protocol: {protocol['name']}")]
    blocks += [("p", note) for note in protocol.get("notes", [])]
    if protocol.get("ops"):
        blocks += [
            ("p", f"Robustness: {protocol['rule']}."),
            (
                "table",
                ["laundering", *_SHORT_HEADERS],
                [[op, *_short_row(entry)] for op, entry in protocol["ops"].items()],
            ),
        ]
    folds = protocol.get("folds") or {}
    if folds and protocol["name"] == "cross-scanner":
        rows = []
        for name, fold in folds.items():
            rows.append([name, "given model", *_short_row(fold.get("given_model"))])
            retrained = fold.get("retrained")
            rows.append([name, "retrained on the others", *_short_row(retrained)])
            if fold.get("error"):
                rows[-1][2] = f"training failed: {fold['error']}"
        blocks.append(("table", ["held-out scanner", "model", *_SHORT_HEADERS], rows))
    elif folds:
        blocks.append(("p", f"Split: {protocol.get('split', 'n/a')}."))
        rows = []
        for name, fold in folds.items():
            if fold.get("error"):
                rows.append(
                    [name, f"training failed: {fold['error']}"] + [""] * len(_SHORT_HEADERS)
                )
                continue
            rows.append([name, "held-out attack", *_short_row(fold.get("held_out"))])
            rows.append([name, "seen attacks", *_short_row(fold.get("seen_attacks"))])
        blocks.append(("table", ["left-out attack", "test cases", *_SHORT_HEADERS], rows))
    if protocol.get("checkpoints"):
        blocks.append(("p", f"Retrained checkpoints: {protocol['checkpoints']}"))
    return blocks if len(blocks) > 1 else []


# ----------------------------------------------------------------------------- rendering


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown; figures link their PNG files."""
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{block[1]}]({block[2]})", "", f"*{block[1]}*", ""]
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}table{border-collapse:collapse;margin:0.5rem 0 1rem}td,th{border:1px solid #ccc;"
    "padding:0.25rem 0.5rem;text-align:right}td:first-child,th:first-child{text-align:left}"
    "th{background:#f3f3f3}figure{display:inline-block;margin:0.5rem;vertical-align:top}"
    "figcaption{font-size:0.85rem;max-width:32rem}code{background:#f3f3f3}"
)


def _inline(text: str) -> str:
    """Escape, then show `code` spans as <code>."""
    parts = html.escape(str(text)).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: Sequence[Block], root: Path) -> str:
    """The blocks as one self-contained HTML page; figures are embedded as base64 PNG."""
    title = next((b[2] for b in blocks if b[0] == "h"), "Evaluation")
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                for row in block[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((root / block[2]).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{html.escape(block[1])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline(block[1])}</figcaption></figure>"
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(result: EvaluationResult, out_dir: str | Path) -> ReportFiles:
    """Write plots, metrics.json, report.md and report.html into ``out_dir``."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    metrics = dict(result.metrics)
    metrics.setdefault("created", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    figures: list[tuple[str, Path]] = []
    try:
        figures = draw_plots(result, root / "plots")
    except MissingExtraError as exc:
        metrics["plots_skipped"] = str(exc)
    relative = [(caption, path.relative_to(root).as_posix()) for caption, path in figures]
    metrics["plots"] = [rel for _, rel in relative]
    files = ReportFiles(root / "metrics.json", root / "report.md", root / "report.html")
    files.plots = [path for _, path in figures]
    text = json.dumps(json_ready(metrics), indent=2, allow_nan=False) + "\n"
    _write_atomic(files.metrics, text)
    blocks = build_blocks(metrics, relative)
    _write_atomic(files.markdown, render_markdown(blocks))
    _write_atomic(files.html, render_html(blocks, root))
    return files
