"""``medforensics info``: what was read from each input, without analysing it."""

from __future__ import annotations

import math
from typing import Any

import typer
from rich.table import Table

from medforensics.cli.output import stdout, write_json_atomic
from medforensics.io.loader import LoadOptions, Skipped, load_paths
from medforensics.io.types import ImageVolume, LoadError


def _describe(volume: ImageVolume) -> dict[str, Any]:
    return {
        "input": volume.input,
        "kind": volume.kind,
        "modality": volume.modality,
        "shape": list(volume.shape),
        "spacing_mm": [None if math.isnan(v) else round(v, 4) for v in volume.spacing],
        "series_instance_uid": volume.series_uid,
        "files": len(volume.source_files),
        "first_file": str(volume.source_files[0]) if volume.source_files else None,
        "transfer_syntax": volume.attributes.get("TransferSyntax"),
        "value_range": [float(volume.pixels.min()), float(volume.pixels.max())],
        "attributes": volume.attributes,
        "problems": volume.problems,
    }


def info_command(
    paths: list[str] = typer.Argument(..., help="Files, folders or zips to describe."),
    json_out: str | None = typer.Option(
        None, "--json", help="Also write JSON here ('-' = stdout)."
    ),
    modality: str | None = typer.Option(None, help="Modality to assume for non-DICOM inputs."),
) -> None:
    """Show what was read: series, modality, shape, spacing, transfer syntax, problems."""
    entries: list[dict[str, Any]] = []
    failed = False
    for item in load_paths(paths, LoadOptions(modality=modality)):
        if isinstance(item, Skipped):
            entries.append({"input": item.input, "skipped": item.path, "reason": item.reason})
        elif isinstance(item, LoadError):
            failed = True
            entries.append({"input": item.input, "path": item.path, "error": item.message})
        else:
            entries.append(_describe(item))
    if json_out != "-":
        for entry in entries:
            table = Table(show_header=False, box=None, pad_edge=False)
            table.add_column(style="bold")
            table.add_column(overflow="fold")
            for key, value in entry.items():
                if key == "attributes":
                    for attr_key, attr_value in value.items():
                        table.add_row(f"  {attr_key}", str(attr_value))
                    continue
                if key == "problems":
                    for problem in value:
                        table.add_row("problem", f"[yellow]{problem}[/]")
                    continue
                style = "[red]" if key == "error" else ""
                table.add_row(key, f"{style}{value}")
            stdout.print(table)
            stdout.print()
    if json_out:
        write_json_atomic({"inputs": entries}, json_out)
    raise typer.Exit(2 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command("info")(info_command)
