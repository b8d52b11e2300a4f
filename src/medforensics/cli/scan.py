"""``medforensics scan``: analyse files, folders, zips; table on stdout, JSON on request."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from medforensics.cli.output import results_table, stderr, stdout, write_json_atomic
from medforensics.io.loader import LoadOptions, Skipped
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
        for result in scan_paths(raw_paths, active, LoadOptions(modality=modality), skipped.append):
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
    if json_out:
        write_json_atomic(report_dict(results, skipped), json_out)
    raise typer.Exit(exit_code(results))


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_command)
