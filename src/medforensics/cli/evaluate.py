"""``medforensics evaluate``: measure a detector on scans and simulated attacks; write a report."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.table import Table

from medforensics.cli.output import stderr, stdout
from medforensics.tamper.base import DEFAULT_ATTACKS

PROTOCOLS = ("in-dist", "cross-scanner", "leave-one-attack-out", "robustness")


def _command_line(data: list[Path], options: dict[str, object]) -> str:
    """The command as it could be typed again (defaults included, so nothing is implicit)."""
    words = ["medforensics", "evaluate", *(str(p) for p in data)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            words += [flag] if value else []
        elif isinstance(value, list | tuple):
            for item in value:
                words += [flag, str(item)]
        elif value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def _headline_table(metrics: dict[str, object]) -> Table:
    from medforensics.evaluate.report import HEADLINE_COLUMNS, headline_rows

    model = metrics["model"]
    assert isinstance(model, dict)
    table = Table(title=f"medforensics evaluate: {model['name']}", expand=False)
    for index, column in enumerate(HEADLINE_COLUMNS):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in headline_rows(metrics):
        table.add_row(*row)
    return table


def evaluate_command(
    data: list[Path] = typer.Argument(
        None,
        help="Folders or files of authentic scans (the CT-GAN dataset folder with --ctgan-labels).",
    ),
    model: str = typer.Option(
        ..., "--model", help="Detector name (e.g. noise-residual, ct-local) or a .pt checkpoint."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, report.md/.html, plots."),
    protocol: str = typer.Option(
        "in-dist", "--protocol", help="in-dist, cross-scanner, leave-one-attack-out or robustness."
    ),
    seed: int = typer.Option(0, help="Seed of the simulated attacks, laundering and bootstrap."),
    per_chunk: int = typer.Option(
        1, "--per-chunk", min=1, help="Tampered twins per authentic chunk."
    ),
    chunk: int = typer.Option(5, min=1, help="Slices per case cut from each series."),
    attack: list[str] = typer.Option(
        list(DEFAULT_ATTACKS), "--attack", help="Attacks to simulate (repeat the option)."
    ),
    launder: list[str] = typer.Option(
        [], "--launder", help="Laundering ops for --protocol robustness (default: all)."
    ),
    ctgan_labels: Path | None = typer.Option(
        None,
        "--ctgan-labels",
        help="labels_exp*.csv of a CT-GAN-layout dataset: evaluate on its "
        "scans instead of simulating attacks.",
    ),
    retrain: bool = typer.Option(
        False, "--retrain", help="cross-scanner / leave-one-attack-out: train ct-local per fold."
    ),
    rounds: int = typer.Option(2, min=1, help="--retrain: rounds of fresh simulated cases."),
    steps: int = typer.Option(100, min=1, help="--retrain: optimiser steps per round."),
    bootstrap: int = typer.Option(1000, min=0, help="Bootstrap resamples for the AUC intervals."),
) -> None:
    """Score a detector on authentic scans and their simulated twins; write metrics and a report."""
    from medforensics.evaluate.report import write_report
    from medforensics.evaluate.run import EvaluationConfig, EvaluationError, run_evaluation

    data = list(data or [])
    if protocol not in PROTOCOLS:
        stderr.print(f"[red]error:[/] unknown --protocol {protocol!r}; use {', '.join(PROTOCOLS)}")
        raise typer.Exit(2)
    options: dict[str, object] = {
        "model": model,
        "out": out,
        "protocol": protocol,
        "seed": seed,
        "per_chunk": per_chunk,
        "chunk": chunk,
        "attack": attack,
        "launder": launder,
        "ctgan_labels": ctgan_labels,
        "retrain": retrain,
    }
    if retrain:
        options.update(rounds=rounds, steps=steps)
    config = EvaluationConfig(
        data=data,
        model=model,
        protocol=protocol,
        seed=seed,
        per_chunk=per_chunk,
        chunk=chunk,
        attacks=tuple(attack),
        launder_ops=tuple(launder),
        ctgan_labels=ctgan_labels,
        retrain=retrain,
        rounds=rounds,
        steps=steps,
        bootstrap=bootstrap,
        models_dir=out / "models",
        command=_command_line(data, options),
    )
    try:
        result = run_evaluation(config, progress=lambda message: stderr.print(message))
    except EvaluationError as exc:
        stderr.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    for problem in result.metrics["data"]["skipped"]:
        stderr.print(f"[yellow]skipped[/] {problem}")
    files = write_report(result, out)
    stdout.print(_headline_table(result.metrics))
    loc = result.metrics["localisation"]
    if loc["hit_rate"] is not None:
        stdout.print(f"top-3 localisation hit rate {loc['hit_rate']:.3f} over {loc['cases']} cases")
    stdout.print(
        f"report written to [bold]{files.markdown}[/] and {files.html.name}, "
        f"metrics to {files.metrics.name}"
    )


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
