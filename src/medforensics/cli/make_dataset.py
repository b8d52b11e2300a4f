"""``medforensics make-dataset``: a labelled, patient-split dataset of tampered cases."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from medforensics.cli.output import stderr, stdout
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume, LoadError

if TYPE_CHECKING:
    from medforensics.tamper.annotations import Lesion


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
    annotations: list[Path] = typer.Option(
        [],
        "--annotations",
        help="CSV of real lesions (repeatable): tumour boxes (xmin,ymin,xmax,ymax), CT-GAN "
        "labels (type,uuid,slice,x,y) or x0,y0,x1,y1 boxes; gives TM rows and real removals.",
    ),
    point_radius: float = typer.Option(
        10.0, help="Half-size in pixels of the box a CT-GAN point annotation becomes."
    ),
) -> None:
    """Tamper every authentic series K times and write OUT_DIR/manifest.csv.

    One manifest row per location: case, file, series and SOP instance UID, slice, x, y, label
    (FM injected, FB removed, TB untouched, TM a real annotated lesion, or the attack kind),
    patient id and split (train/val/test by patient). The same seed rebuilds the same dataset.
    """
    from medforensics.tamper.annotations import AnnotationError, read_annotations
    from medforensics.tamper.dataset import DEFAULT_ATTACKS, build_dataset

    if out_dir.exists() and (out_dir / "manifest.csv").exists():
        raise typer.BadParameter(
            f"{out_dir}: already holds a dataset; choose a new folder", param_hint="OUT_DIR"
        )
    lesions: list[Lesion] = []
    for path in annotations:
        try:
            lesions.extend(read_annotations(path, point_radius))
        except AnnotationError as error:
            raise typer.BadParameter(str(error), param_hint="--annotations") from None
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
    if annotations:
        _report_matches(volumes, lesions)
    started = time.perf_counter()
    rows = build_dataset(
        volumes,
        out_dir,
        seed=seed,
        cases_per_series=cases_per_series,
        attacks=tuple(attack) or DEFAULT_ATTACKS,
        launder_probability=launder_probability,
        context_slices=context_slices,
        annotations=lesions,
    )
    labels = Counter(row["label"] for row in rows)
    splits = Counter(row["split"] for row in rows)
    cases = {r["case_id"] for r in rows if r["label"] != "TM"}
    stdout.print(
        f"{len(volumes)} series, {len(cases)} cases, {len(rows)} locations "
        f"in {time.perf_counter() - started:.1f} s -> {out_dir / 'manifest.csv'}"
    )
    stdout.print("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items())))
    stdout.print("splits: " + ", ".join(f"{k} {v}" for k, v in sorted(splits.items())))


def _report_matches(volumes: list[ImageVolume], lesions: list[Lesion]) -> None:
    """Print how many annotations were found in the volumes; warn about those that were not."""
    from medforensics.tamper.annotations import lesions_in, match_slices

    found = [False] * len(lesions)
    n_lesions = n_series = 0
    for volume in volumes:
        hits = match_slices(volume, lesions)
        if any(z is not None for z in hits):
            n_series += 1
            n_lesions += len(lesions_in(volume, lesions))
        found = [seen or z is not None for seen, z in zip(found, hits, strict=True)]
    stdout.print(
        f"annotations: {sum(found)} of {len(lesions)} matched {n_lesions} lesion(s) "
        f"in {n_series} series"
    )
    missed = [lesion for lesion, seen in zip(lesions, found, strict=True) if not seen]
    if missed:
        listed = "; ".join(lesion.describe() for lesion in missed[:10])
        more = f"; and {len(missed) - 10} more" if len(missed) > 10 else ""
        stderr.print(
            f"[yellow]warning[/] {len(missed)} annotation(s) matched no volume: "
            + escape(listed + more)
        )


def register(app: typer.Typer) -> None:
    app.command("make-dataset")(make_dataset_command)
