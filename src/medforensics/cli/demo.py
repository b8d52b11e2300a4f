"""``medforensics demo``: make sample scans (authentic and tampered), scan them, show the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from medforensics.cli.output import results_table, stdout, write_json_atomic
from medforensics.detect import create_detector
from medforensics.detect.types import Detection
from medforensics.io.types import ImageVolume
from medforensics.samples.demo import build_demo_inputs
from medforensics.scan import DEFAULT_DETECTOR, ScanResult, report_dict, scan_paths


def demo_command(
    out: Path = typer.Option(Path("demo-out"), help="Folder for the sample scans and report."),
    seed: int = typer.Option(7, help="Seed for the synthetic samples."),
) -> None:
    """Build phantom CT and radiograph samples, tamper copies of them, scan all four, report."""
    from medforensics.report.build import write_reports

    inputs = build_demo_inputs(out, np.random.default_rng(seed))
    stdout.print(f"samples written under [bold]{out}[/]:")
    for path, description in inputs.items():
        stdout.print(f"  {path}  [dim]{description}[/]")
    detector = create_detector(DEFAULT_DETECTOR)
    reports = out / "reports"

    def write(volume: ImageVolume, detection: Detection, result: ScanResult) -> None:
        files = write_reports(volume, detection, result, detector, reports)
        result.notes.extend(f"report: {note}" for note in files.notes)

    results = list(scan_paths([str(p) for p in inputs], detector, on_analysed=write))
    stdout.print(results_table(results))
    report = out / "report.json"
    write_json_atomic(report_dict(results), report)
    stdout.print(f"JSON report: [bold]{report}[/]")
    stdout.print(f"HTML/PDF reports, overlays and DICOM results: [bold]{reports}[/]")
    failed = [r for r in results if r.failed]
    if failed:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
