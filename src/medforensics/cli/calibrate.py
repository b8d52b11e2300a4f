"""``medforensics calibrate``: fit a detector's calibration on authentic scans plus attacks."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medforensics.cli.output import stderr, stdout
from medforensics.tamper.base import DEFAULT_ATTACKS


def calibrate_command(
    authentic: list[Path] = typer.Option(..., "--authentic", help="Folder(s) of authentic scans."),
    out: Path = typer.Option(..., "--out", help="Calibration JSON to write."),
    detector: str = typer.Option("noise-residual", help="Detector to calibrate."),
    attack: list[str] = typer.Option(
        list(DEFAULT_ATTACKS), "--attack", help="Attacks to simulate."
    ),
    seed: int = typer.Option(0, help="Seed for attacks and the patient split."),
    chunk: int = typer.Option(8, help="Slices per case cut from each series."),
    target_fpr: float = typer.Option(0.01, help="False-positive rate of the verdict threshold."),
) -> None:
    """Calibrate on half of the patients, report held-out figures from the other half."""
    from medforensics.detect import create_detector
    from medforensics.io.loader import load_paths
    from medforensics.io.types import ImageVolume
    from medforensics.train.calibrate import build_cases, calibrate_cases
    from medforensics.train.cases import patient_key

    active = create_detector(detector)
    statistic = getattr(active, "statistic", None)
    if statistic is None:
        stderr.print(f"[red]error:[/] detector {detector!r} has no raw statistic to calibrate")
        raise typer.Exit(2)
    volumes = []
    for item in load_paths([str(p) for p in authentic]):
        if isinstance(item, ImageVolume):
            volumes.append((patient_key(item), item))
    if not volumes:
        stderr.print("[red]error:[/] no readable images under the --authentic folders")
        raise typer.Exit(2)
    stderr.print(
        f"{len(volumes)} authentic series/images from {len({p for p, _ in volumes})} patients"
    )
    cases, skipped = build_cases(statistic, volumes, attack, seed=seed, chunk=chunk)
    report = calibrate_cases(
        cases,
        seed=seed,
        target_fpr=target_fpr,
        card={
            "detector": detector,
            "trained_on": sorted({str(p) for p in authentic}),
            "attacks": list(attack),
            "seed": seed,
            "chunk_slices": chunk,
            "fit_patients": None,
            "command": "medforensics calibrate --authentic ... --out ...",
        },
    )
    report.record.card["fit_patients"] = report.fit_patients
    report.record.save(out)
    stdout.print_json(json.dumps({"held_out": report.held_out, "skipped": skipped}))
    stdout.print(f"calibration written to [bold]{out}[/]")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
