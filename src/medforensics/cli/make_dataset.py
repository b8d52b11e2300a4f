"""``medforensics make-dataset``: a labelled, patient-split dataset of tampered cases."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import typer

from medforensics.cli.output import stderr, stdout
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume, LoadError


def make_dataset_command(
    authentic_dir: Path = typer.Argument(..., help="Folder (or files) of authentic scans."),
    out_dir: Path = typer.Argument(..., help="New folder for the cases and manifest.csv."),
    seed: int = typer.Option(0, help="Everything is drawn from this seed."),
    cases_per_series: int = typer.Option(4, help="Tampered cases per authentic series or image."),
    attack: list[str] = typer.Option(
        [],
        help="Attacks to draw from (repeatable); default: inject, remove, copy-move, splice, "
        "inpaint.",
    ),
    launder_probability: float = typer.Option(
        0.3, help="Chance that a case is laundered afterwards."
    ),
    context_slices: int = typer.Option(2, help="Untouched slices written on each side of a case."),
) -> None:
    """Tamper every authentic series K times and write OUT_DIR/manifest.csv.

    One manifest row per location: case, file, series and SOP instance UID, slice, x, y, label
    (FM injected, FB removed, TB untouched, or the attack kind), patient id and split
    (train/val/test by patient). The same seed rebuilds the same dataset.
    """
    from medforensics.tamper.dataset import DEFAULT_ATTACKS, build_dataset

    if out_dir.exists() and (out_dir / "manifest.csv").exists():
        raise typer.BadParameter(
            f"{out_dir}: already holds a dataset; choose a new folder", param_hint="OUT_DIR"
        )
    volumes = []
    for item in load_paths([str(authentic_dir)]):
        if isinstance(item, LoadError):
            stderr.print(f"[yellow]skipped[/] {item}")
        elif isinstance(item, ImageVolume):
            volumes.append(item)
    if not volumes:
        raise typer.BadParameter(
            f"{authentic_dir}: no image could be read from it", param_hint="AUTHENTIC_DIR"
        )
    started = time.perf_counter()
    rows = build_dataset(
        volumes,
        out_dir,
        seed=seed,
        cases_per_series=cases_per_series,
        attacks=tuple(attack) or DEFAULT_ATTACKS,
        launder_probability=launder_probability,
        context_slices=context_slices,
    )
    labels = Counter(row["label"] for row in rows)
    splits = Counter(row["split"] for row in rows)
    stdout.print(
        f"{len(volumes)} series, {len({r['case_id'] for r in rows})} cases, {len(rows)} locations "
        f"in {time.perf_counter() - started:.1f} s -> {out_dir / 'manifest.csv'}"
    )
    stdout.print("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items())))
    stdout.print("splits: " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())))


def register(app: typer.Typer) -> None:
    app.command("make-dataset")(make_dataset_command)
