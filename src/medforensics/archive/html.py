"""The batch report: one self-contained HTML page (no scripts, no links, everything escaped).

Text from the archive (paths, UIDs, error messages) goes through ``html.escape``, and a
Content-Security-Policy forbids scripts and any load from outside the file, so a file name
crafted to look like markup can only ever show as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from medforensics.archive.summary import BatchSummary
from medforensics.report.html import NEUTRAL, VERDICT_COLOURS

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1a1a1a;"
    "padding:0 1em;line-height:1.4}h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid"
    " #ccc;margin-top:1.8em}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th"
    "{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}th{background:"
    "#f3f3f3}.mono{font-family:monospace;font-size:.85em;word-break:break-all}.tiles{display:"
    "flex;gap:.8em;flex-wrap:wrap}.tile{color:#fff;border-radius:6px;padding:.6em 1em;min-width:"
    "9em}.tile b{display:block;font-size:1.6em}.note{color:#555;font-size:.9em}"
)
_EXIT_MEANING = {
    0: "every series analysed was judged authentic",
    1: "some series were flagged (manipulated or inconclusive)",
    2: "some series could not be analysed",
}


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _score(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else ""


def _table(
    header: Sequence[str], rows: Iterable[Sequence[object]], mono: Sequence[int] = ()
) -> str:
    parts = ["<table>"]
    if any(header):
        parts += ["<tr>", *(f"<th>{_e(h)}</th>" for h in header), "</tr>"]
    for row in rows:
        parts.append("<tr>")
        for column, value in enumerate(row):
            css = ' class="mono"' if column in mono else ""
            parts.append(f"<td{css}>{_e(value)}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    return "".join(parts)


def _tile(label: str, count: int, colour: str) -> str:
    return f'<div class="tile" style="background:{colour}"><b>{count}</b>{_e(label)}</div>'


def _none_flagged(summary: BatchSummary) -> str:
    return "" if summary.top_series else '<p class="note">No series was flagged.</p>'


def render_batch_html(summary: BatchSummary) -> str:
    """The batch report for ``summary`` as one HTML document."""
    run = summary.this_run
    tiles = [_tile(v, summary.verdicts.get(v, 0), c) for v, c in VERDICT_COLOURS.items()]
    tiles.append(_tile("could not be analysed", summary.tasks.get("failed", 0), "#6a1b9a"))
    if summary.tasks.get("queued"):
        tiles.append(_tile("not analysed yet", summary.tasks["queued"], NEUTRAL))
    facts = [
        ("archive", summary.root),
        ("detector", summary.detector),
        ("run", f"{summary.run_id} ({summary.status}), started {summary.started} UTC"),
        ("workers", summary.workers),
        ("this run", f"{run['analysed']} analysed, {run['failed']} failed, "
                     f"{run['skipped_done']} already done, {run['skipped_failed']} failed before "
                     f"(not retried), {run['duplicates']} repeated answers ignored"),
        ("time", f"{summary.elapsed_s:.1f} s, {summary.series_per_s:.2f} series/s"),
        ("exit code", f"{summary.exit_code}: {_EXIT_MEANING.get(summary.exit_code, '')}"),
    ]  # fmt: skip
    body = [
        "<h1>medforensics archive scan</h1>",
        f'<div class="tiles">{"".join(tiles)}</div>',
        _table(("", ""), facts),
        "<h2>Most suspicious studies</h2>",
        _none_flagged(summary)
        or _table(
            ("study", "series", "flagged series", "highest score", "example"),
            (
                (
                    s["study_uid"] or "(no study UID)",
                    s["series"],
                    s["flagged_series"],
                    _score(s["max_score"]),
                    s["example"],
                )
                for s in summary.top_studies
            ),
            mono=(0, 4),
        ),
        "<h2>Most suspicious series</h2>",
        _none_flagged(summary)
        or _table(
            ("location", "modality", "files", "score", "verdict", "findings"),
            (
                (
                    s["location"],
                    s["modality"],
                    s["files"],
                    _score(s["score"]),
                    s["verdict"],
                    s["findings"],
                )
                for s in summary.top_series
            ),
            mono=(0,),
        ),
        f"<h2>Errors ({summary.errors_total})</h2>",
        _table(("location", "error"), ((e["location"], e["error"]) for e in summary.errors), (0,)),
    ]
    if summary.errors_total > len(summary.errors):
        body.append(
            f'<p class="note">{summary.errors_total - len(summary.errors)} more in the series '
            "table (status 'failed').</p>"
        )
    if summary.walk_problems:
        body.append(f"<h2>Folders or files the walk could not read ({run['walk_problems']})</h2>")
        body.append(
            _table(("path", "problem"), ((p["path"], p["message"]) for p in summary.walk_problems))
        )
    if run["skipped_files"]:
        body.append(f"<h2>Files skipped as not images ({run['skipped_files']})</h2>")
        body.append(
            _table(("path", "reason"), ((s["path"], s["reason"]) for s in summary.skipped_files))
        )
    body.append(
        '<p class="note">Scores are the detector\'s calibrated probability of manipulation; a '
        "flag is a reason to look, not a proof. Every series is in the series table and the "
        "database.</p>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>medforensics archive scan: {_e(summary.root)}</title><style>{_STYLE}</style>"
        f"</head><body>{''.join(body)}</body></html>\n"
    )
