"""``medforensics demo``: make sample scans (authentic and tampered), scan them, show the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from medforensics.cli.output import results_table, stdout, write_json_atomic
from medforensics.samples.demo import build_demo_inputs
from medforensics.scan import report_dict, scan_paths


def demo_command(
    out: Path = typer.Option(Path("demo-out"), help="Folder for the sample scans and report."),
    seed: int = typer.Option(7, help="Seed for the synthetic samples."),
) -> None:
    """Build phantom CT and radiograph samples, tamper copies of them, and scan all four."""
    inputs = build_demo_inputs(out, np.random.default_rng(seed))
    stdout.print(f"samples written under [bold]{out}[/]:")
    for path, description in inputs.items():
        stdout.print(f"  {path}  [dim]{description}[/]")
    results = list(scan_paths([str(p) for p in inputs]))
    stdout.print(results_table(results))
    report = out / "report.json"
    write_json_atomic(report_dict(results), report)
    stdout.print(f"JSON report: [bold]{report}[/]")
    failed = [r for r in results if r.failed]
    if failed:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
