"""``medforensics train`` and ``adapt``: build a local model from a site's authentic scans.

``--modality`` picks the model: ``CT`` (``ct-local``, the default), ``XR`` (``xr-local``, for
CR/DX radiographs and PNG/JPEG/TIFF images) or ``MR`` (``mr-local``).

``train`` starts from random weights; ``adapt`` starts from a shipped (or given) checkpoint and
fine-tunes it on the site's own authentic scans with fewer steps, then re-calibrates, so the
false-alarm rate is set on the site's scanners.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medforensics.cli.output import stderr, stdout
from medforensics.tamper.base import DEFAULT_ATTACKS

MODALITIES = ("CT", "XR", "MR")


def _load_authentic(folders: list[Path], modality: str = "CT") -> list[object]:
    from medforensics.io.loader import load_paths
    from medforensics.io.types import ImageVolume, LoadError
    from medforensics.train.pipeline import FAMILIES

    accepted = FAMILIES[modality].modalities
    volumes: list[object] = []
    for item in load_paths([str(p) for p in folders]):
        if isinstance(item, ImageVolume):
            if item.modality in accepted:
                volumes.append(item)
            else:
                stderr.print(f"skipped {item.input}: modality {item.modality}, not {modality}")
        elif isinstance(item, LoadError):
            stderr.print(f"[yellow]skipped[/] {item.input}: {item.message}")
    if not volumes:
        stderr.print(
            f"[red]error:[/] no readable {modality} images under the --authentic folders "
            f"(accepted modalities: {', '.join(accepted)})"
        )
        raise typer.Exit(2)
    return volumes


def _check_modality(modality: str) -> str:
    value = modality.upper()
    if value not in MODALITIES:
        stderr.print(f"[red]error:[/] --modality {modality!r}: use one of {', '.join(MODALITIES)}")
        raise typer.Exit(2)
    return value


def _run(
    authentic: list[Path],
    out: Path,
    attack: list[str],
    seed: int,
    rounds: int,
    steps: int,
    target_fpr: float,
    description: str,
    init: Path | None,
    modality: str = "CT",
) -> None:
    import torch

    from medforensics.detect.checkpoint import CheckpointError, load_checkpoint
    from medforensics.train.local import LocalTrainConfig
    from medforensics.train.pipeline import train_local_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    volumes = _load_authentic(authentic, modality)
    init_state = None
    width = 32
    if init is not None:
        try:
            init_state, meta = load_checkpoint(init)
        except CheckpointError as exc:
            stderr.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        width = int(meta.get("architecture", {}).get("width", width))
    config = LocalTrainConfig(rounds=rounds, steps_per_round=steps, seed=seed, width=width)
    if init_state is not None:
        config.lr = config.lr / 4
    try:
        result = train_local_model(
            volumes,  # type: ignore[arg-type]
            out,
            config,
            attacks=attack,
            target_fpr=target_fpr,
            data_description=description
            or f"authentic {modality} from " + ", ".join(str(p) for p in authentic),
            progress=lambda message: stderr.print(message),
            init_state=init_state,
            modality=modality,
        )
    except ValueError as exc:
        stderr.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    stdout.print_json(json.dumps(result.meta["validation"]))
    stdout.print(f"model written to [bold]{result.path}[/] (card: {result.path.stem}.card.json)")


def train_command(
    authentic: list[Path] = typer.Option(
        ..., "--authentic", help="Folder(s) of authentic scans (repeat the option)."
    ),
    out: Path = typer.Option(..., "--out", help="Checkpoint to write (e.g. site-ct.pt)."),
    modality: str = typer.Option(
        "CT", "--modality", help="CT (ct-local), XR (xr-local: radiographs) or MR (mr-local)."
    ),
    attack: list[str] = typer.Option(
        list(DEFAULT_ATTACKS), "--attack", help="Attacks to simulate (repeat the option)."
    ),
    seed: int = typer.Option(0, help="Seed of the split, the attacks and the weights."),
    rounds: int = typer.Option(6, help="Rounds of fresh simulated cases."),
    steps: int = typer.Option(250, help="Optimiser steps per round."),
    target_fpr: float = typer.Option(0.01, help="False-positive rate of the verdict threshold."),
    description: str = typer.Option("", help="What the data is, for the model card."),
) -> None:
    """Train a local model: split by patient, train on simulated attacks, calibrate, write."""
    modality = _check_modality(modality)
    _run(authentic, out, attack, seed, rounds, steps, target_fpr, description, None, modality)


def adapt_command(
    authentic: list[Path] = typer.Option(
        ..., "--authentic", help="Folder(s) of the site's authentic scans."
    ),
    out: Path = typer.Option(..., "--out", help="Checkpoint to write."),
    modality: str = typer.Option(
        "CT", "--modality", help="CT (ct-local), XR (xr-local: radiographs) or MR (mr-local)."
    ),
    model: Path | None = typer.Option(
        None, "--model", help="Checkpoint to start from (default: the shipped model)."
    ),
    attack: list[str] = typer.Option(list(DEFAULT_ATTACKS), "--attack"),
    seed: int = typer.Option(0),
    rounds: int = typer.Option(2, help="Rounds of fresh simulated cases."),
    steps: int = typer.Option(150, help="Optimiser steps per round."),
    target_fpr: float = typer.Option(0.01),
    description: str = typer.Option("", help="What the data is, for the model card."),
) -> None:
    """Fine-tune a model on a site's own authentic scans and re-calibrate its threshold."""
    from medforensics.detect.local import LOCAL_DETECTORS, shipped_checkpoint

    modality = _check_modality(modality)
    start = model or shipped_checkpoint(LOCAL_DETECTORS[modality].default_checkpoint)
    if not start.is_file():
        stderr.print(
            f"[red]error:[/] {start}: no model to start from; train one with `medforensics "
            f"train --modality {modality}` or pass --model"
        )
        raise typer.Exit(2)
    _run(authentic, out, attack, seed, rounds, steps, target_fpr, description, start, modality)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("adapt")(adapt_command)
