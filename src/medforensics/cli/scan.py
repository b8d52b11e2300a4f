"""``medforensics scan``: analyse files, folders, zips; table on stdout, JSON on request."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from medforensics.cli.output import results_table, stderr, stdout, write_json_atomic
from medforensics.detect.base import Detector
from medforensics.detect.types import Detection
from medforensics.io.loader import LoadOptions, Skipped
from medforensics.io.types import ImageVolume

if TYPE_CHECKING:
    from medforensics.provenance.audit import AuditHook
from medforensics.scan import DEFAULT_DETECTOR, ScanResult, exit_code, report_dict, scan_paths


def scan_command(
    # str, not Path: the contract reports each input exactly as given ("./a/" stays "./a/")
    paths: list[str] = typer.Argument(
        ..., help="DICOM files or folders, multi-frame DICOM, NIfTI, PNG/JPEG/TIFF, zip."
    ),
    json_out: str | None = typer.Option(
        None, "--json", help="Write the JSON report here ('-' for stdout)."
    ),
    detector: str = typer.Option(
        DEFAULT_DETECTOR, help="Detector to use (see 'medforensics env')."
    ),
    modality: str | None = typer.Option(
        None, help="Modality to assume for non-DICOM inputs (e.g. CT, MR, DX)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table and no progress bar."),
    report_dir: Path | None = typer.Option(
        None,
        "--report",
        help="Write an HTML and PDF report, overlay PNG and evidence JSON per result here "
        "(and DICOM SR/SEG/SC/PDF for DICOM inputs).",
    ),
    include_phi: bool = typer.Option(
        False, "--include-phi", help="Show patient identifiers in the reports (default: withheld)."
    ),
    audit: bool = typer.Option(
        False,
        "--audit",
        help="Append every analysis (input hashes, result, model, user) to the hash-chained "
        "audit log ('medforensics audit verify' checks it).",
    ),
    db_url: str | None = typer.Option(
        None,
        "--db",
        help="Database for --audit (default: $MEDFORENSICS_DB_URL or a SQLite file in the data "
        "directory).",
    ),
) -> None:
    """Scan images for manipulation.

    Exit 0: all authentic; 1: something flagged; 2: some input could not be analysed.
    """
    from medforensics.detect import create_detector

    try:
        active = create_detector(detector)
    except KeyError as exc:
        stderr.print(f"[red]error:[/] {exc.args[0]}")
        raise typer.Exit(2) from exc
    raw_paths = list(paths)
    reporter = _ReportWriter(active, report_dir, include_phi) if report_dir is not None else None
    auditor = _auditor(active, db_url) if audit else None
    hooks = [hook for hook in (reporter, auditor) if hook is not None]
    results: list[ScanResult] = []
    skipped: list[Skipped] = []
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("inputs, {task.fields[done]} results"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=quiet or not stderr.is_terminal,
    )
    with progress:
        task = progress.add_task("scanning", total=len(raw_paths), done=0)
        position = 0
        for result in scan_paths(
            raw_paths,
            reporter.timed if reporter is not None else active,
            LoadOptions(modality=modality),
            skipped.append,
            on_analysed=_chain(hooks) if hooks else None,
        ):
            while position < len(raw_paths) and raw_paths[position] != result.input:
                position += 1
                progress.update(task, completed=position)
            results.append(result)
            progress.update(
                task, done=len(results), description=f"scanning {Path(result.input).name}"
            )
        progress.update(task, completed=len(raw_paths))
    # with '--json -' stdout carries the JSON alone, so the summary moves to stderr
    summary = stderr if json_out == "-" else stdout
    if not quiet:
        summary.print(results_table(results))
        if skipped:
            summary.print(
                f"[dim]{len(skipped)} file(s) inside folders were not images and were skipped "
                "(listed under 'skipped' in the JSON report)[/]"
            )
        for result in results:
            for problem in result.problems:
                stderr.print(f"[yellow]note:[/] {result.location}: {problem}")
        if reporter is not None:
            stderr.print(f"{reporter.written} report(s) written to {report_dir}", markup=False)
        if auditor is not None:
            stderr.print(f"{auditor.recorded} analysis/analyses recorded in the audit log")
    if json_out:
        write_json_atomic(report_dict(results, skipped), json_out)
    raise typer.Exit(exit_code(results))


class _ReportWriter:
    """Writes each analysed volume's reports while its pixels are in memory (``on_analysed``).

    A part of a report that fails becomes a note on that result; the scan, its JSON contract and
    its exit code are not affected.
    """

    label = "report"

    def __init__(self, detector: Detector, out: Path, include_phi: bool) -> None:
        from medforensics.report.build import TimedDetector

        self.detector = detector
        self.timed = TimedDetector(detector)
        self.out = out
        self.include_phi = include_phi
        self.written = 0

    def __call__(self, volume: ImageVolume, detection: Detection, result: ScanResult) -> None:
        from medforensics.report.build import write_reports

        files = write_reports(
            volume,
            detection,
            result,
            self.detector,
            self.out,
            include_phi=self.include_phi,
            timing=self.timed.timing,
        )
        self.written += 1
        result.notes.extend(f"report: {note}" for note in files.notes)


Hook = Callable[[ImageVolume, Detection, ScanResult], None]


def _auditor(detector: Detector, db_url: str | None) -> AuditHook:
    import getpass

    from medforensics.db import make_engine
    from medforensics.provenance.audit import AuditHook, AuditLog

    return AuditHook(AuditLog(make_engine(db_url)), f"cli:{getpass.getuser()}", detector.describe())


def _chain(hooks: Sequence[Hook]) -> Hook:
    """One ``on_analysed`` that runs each hook; one failing does not stop the others."""

    def run(volume: ImageVolume, detection: Detection, result: ScanResult) -> None:
        for hook in hooks:
            try:
                hook(volume, detection, result)
            except Exception as exc:
                label = getattr(hook, "label", "post-processing")
                result.notes.append(f"{label} failed: {type(exc).__name__}: {exc}")

    return run


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_command)
