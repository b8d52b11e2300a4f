"""``medforensics scan-archive``: analyse a whole archive on a Dask cluster, resumably."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from medforensics.cli.output import stderr, stdout
from medforensics.scan import DEFAULT_DETECTOR, EXIT_ERROR


class _ProgressView:
    """A rich progress bar: answered / found so far, series/s and an ETA once the walk ends."""

    def __init__(self, quiet: bool) -> None:
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=stderr,
            transient=False,
            disable=quiet or not stderr.is_terminal,
        )
        self.task: TaskID | None = None
        self.last = 0.0

    def __enter__(self) -> _ProgressView:
        self.progress.__enter__()
        self.task = self.progress.add_task("walking", total=None, line="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def __call__(self, counters: object, elapsed: float, force: bool = False) -> None:
        from medforensics.archive.runner import RunCounters

        assert isinstance(counters, RunCounters) and self.task is not None
        now = time.monotonic()
        if now - self.last < 0.2 and not force:
            return
        self.last = now
        todo = counters.submitted
        done = counters.answered
        rate = done / elapsed if elapsed > 0 else 0.0
        if counters.discovery_done or counters.limit_reached:
            left = max(todo - done, 0)
            eta = f"ETA {left / rate:,.0f} s" if rate > 0 else "ETA -"
            description = "analysing"
        else:
            eta = "ETA after the walk"
            description = "walking + analysing"
        line = (
            f"{done:,}/{todo:,} series ({counters.failed} failed, "
            f"{counters.skipped_done + counters.skipped_failed:,} already recorded) "
            f"{rate:.2f} series/s {eta}"
        )
        self.progress.update(
            self.task, description=description, total=max(todo, 1), completed=done, line=line
        )


def _summary_table(summary: object) -> Table:
    from medforensics.archive.summary import BatchSummary

    assert isinstance(summary, BatchSummary)
    table = Table(title=f"medforensics scan-archive: {summary.root}")
    table.add_column("")
    table.add_column("series", justify="right")
    for verdict, count in summary.verdicts.items():
        table.add_row(verdict, str(count))
    table.add_row("could not be analysed", str(summary.tasks.get("failed", 0)))
    if summary.tasks.get("queued"):
        table.add_row("not analysed yet", str(summary.tasks["queued"]))
    return table


def scan_archive_command(
    root: Path = typer.Argument(..., help="Folder of the archive (a PACS export, a research set)."),
    out: Path = typer.Option(
        ..., "--out", help="Results folder: summary.json, report.html, series table, database."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Local worker processes (default: one per CPU core)."
    ),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Use an existing Dask scheduler (tcp://HOST:PORT)."
    ),
    db_url: str | None = typer.Option(
        None,
        "--db",
        help="Database URL (default: SQLite at RESULTS/archive.db; postgresql+psycopg://...).",
    ),
    detector: str = typer.Option(DEFAULT_DETECTOR, help="Detector to use on every series."),
    plugin: list[str] = typer.Option(
        [], "--plugin", help="Module to import on every worker first (registers detectors)."
    ),
    retry_failed: bool = typer.Option(
        True,
        "--retry-failed/--skip-failed",
        help="Analyse again the series a previous run could not (default), or skip them.",
    ),
    audit: bool = typer.Option(
        False, "--audit", help="Append every analysis to the audit log in the same database."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Analyse at most this many new series, then stop."
    ),
    batch_files: int = typer.Option(
        64,
        "--batch-files",
        min=1,
        help="Small series share one cluster task up to this many files.",
    ),
    memory_limit: str | None = typer.Option(
        None, "--memory-limit", help="Per local worker, e.g. 8GiB (default: 85% of RAM shared)."
    ),
    table_format: str | None = typer.Option(
        None, "--format", help="Series table: parquet (default if pyarrow) or csv."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Scan a whole archive on Dask; a rerun skips what is done.

    Exit 0: all authentic; 1: something flagged; 2: something could not be analysed.
    """
    from medforensics.archive import (
        ArchiveError,
        ArchiveOptions,
        TaskStore,
        open_client,
        run_archive,
        write_outputs,
    )
    from medforensics.db import make_engine
    from medforensics.utils.optional import MissingExtraError

    if workers is not None and scheduler is not None:
        stderr.print("[red]error:[/] give --workers or --scheduler, not both")
        raise typer.Exit(EXIT_ERROR)
    if table_format not in (None, "parquet", "csv"):
        stderr.print(f"[red]error:[/] --format must be parquet or csv, not {table_format!r}")
        raise typer.Exit(EXIT_ERROR)
    if not root.exists():
        stderr.print(f"[red]error:[/] {root}: no such file or folder", markup=False)
        raise typer.Exit(EXIT_ERROR)
    out.mkdir(parents=True, exist_ok=True)
    store = TaskStore(make_engine(db_url or f"sqlite:///{out.resolve() / 'archive.db'}"))
    options = ArchiveOptions(
        detector=detector,
        plugins=tuple(plugin),
        retry_failed=retry_failed,
        audit=audit,
        limit=limit,
        batch_files=batch_files,
    )
    try:
        with (
            open_client(workers, scheduler, memory_limit) as client,
            _ProgressView(quiet) as view,
        ):
            report = run_archive(str(root), client, store, options, on_progress=view)
            view(report.counters, report.elapsed_s, force=True)
    except (ArchiveError, MissingExtraError, ValueError, OSError) as exc:
        stderr.print(f"[red]error:[/] {exc}", markup=False)
        raise typer.Exit(EXIT_ERROR) from exc
    except KeyboardInterrupt as exc:
        stderr.print("interrupted: what was recorded stays; run the same command to resume")
        raise typer.Exit(130) from exc
    summary, files = write_outputs(store, report, out, table_format)  # type: ignore[arg-type]
    if not quiet:
        stdout.print(_summary_table(summary))
        for series in summary.top_series[:5]:
            if series["verdict"] != "authentic":
                stdout.print(
                    f"  {series['verdict']:<12} {series['score']:.3f}  {series['location']}",
                    markup=False,
                )
        for error in summary.errors[:5]:
            stderr.print(f"error: {error['error']}", markup=False)
        if summary.errors_total > 5:
            stderr.print(f"... {summary.errors_total - 5} more errors in the report", markup=False)
        run = summary.this_run
        stderr.print(
            f"{run['analysed'] + run['failed']} series analysed in {summary.elapsed_s:.1f} s "
            f"({summary.series_per_s:.2f} series/s), {run['skipped_done']} already done; "
            f"report {files.report_html}, table {files.table}",
            markup=False,
        )
        if report.status == "limited":
            stderr.print(f"stopped after {limit} series (--limit): rerun to go on", markup=False)
        if run["lost"]:
            stderr.print(
                f"{run['lost']} series were lost by the cluster and not analysed: rerun the same "
                "command to analyse them",
                markup=False,
            )
        if run["audit_errors"]:
            stderr.print(f"{run['audit_errors']} audit log entries could not be written")
    raise typer.Exit(summary.exit_code)


def register(app: typer.Typer) -> None:
    app.command("scan-archive")(scan_archive_command)
