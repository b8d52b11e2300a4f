"""``medforensics train-attack KIND``: train a learned attack's generator on authentic scans.

``cube-gan`` is the CT-GAN-style in-painter behind ``gan-inject`` and ``gan-remove``;
``vae-deconv`` and ``vae-resize`` are the slice generators behind ``synthetic``. Without
``--out`` the generator goes to the cache (``$MEDFORENSICS_CACHE/generators`` or the XDG
cache), where the attacks find it; ``--out`` writes it elsewhere (pass it to an attack with
``inpainter_path=`` / ``generator_path=``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medforensics.cli.output import stderr, stdout

if TYPE_CHECKING:
    from medforensics.io.types import ImageVolume

KINDS = ("cube-gan", "vae-deconv", "vae-resize")


def _volumes(folders: list[Path], modality: str | None) -> list[ImageVolume]:
    from medforensics.io.loader import load_paths
    from medforensics.io.types import ImageVolume, LoadError

    volumes: list[ImageVolume] = []
    for item in load_paths([str(p) for p in folders]):
        if isinstance(item, LoadError):
            stderr.print(f"[yellow]skipped[/] {item.input}: {item.message}")
        elif isinstance(item, ImageVolume):
            if modality is not None and item.modality != modality:
                stderr.print(f"skipped {item.input}: modality {item.modality}, not {modality}")
                continue
            volumes.append(item)
    modalities = sorted({v.modality for v in volumes})
    if not volumes:
        stderr.print("[red]error:[/] no readable image under the --authentic paths")
        raise typer.Exit(2)
    if len(modalities) > 1:
        stderr.print(
            f"[red]error:[/] the --authentic paths hold {', '.join(modalities)} images; a "
            "generator learns one modality: pick it with --modality"
        )
        raise typer.Exit(2)
    return volumes


def train_attack_command(
    kind: str = typer.Argument(..., help=f"What to train: {', '.join(KINDS)}."),
    authentic: list[Path] = typer.Option(
        ..., "--authentic", help="Authentic scans (files or folders; repeatable)."
    ),
    modality: str | None = typer.Option(
        None, help="Use only images of this modality (CT, MR, DX...)."
    ),
    out: Path | None = typer.Option(None, help="Write here instead of the cache."),
    steps: int = typer.Option(600, help="Optimiser steps."),
    seed: int = typer.Option(0, help="Seeds the data, the weights and the batches."),
) -> None:
    """Train the generator of a learned attack on a site's own authentic scans.

    It learns from authentic images only; nothing is downloaded. The result is seeded: the same
    scans, steps and seed give the same weights.
    """
    import torch

    if kind not in KINDS:
        stderr.print(f"[red]error:[/] unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        raise typer.Exit(2)
    if steps < 1:
        stderr.print(f"[red]error:[/] --steps must be at least 1, not {steps}")
        raise typer.Exit(2)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    typed = _volumes(authentic, modality.upper() if modality else None)

    def progress(line: str) -> None:
        stderr.print(line)

    try:
        if kind == "cube-gan":
            from medforensics.tamper import cubegan

            inpainter = cubegan.train_inpainter(typed, seed, steps=steps, progress=progress)
            path = inpainter.save(out) if out else cubegan.save_to_cache(inpainter)
            card = inpainter.describe()
        else:
            from medforensics.tamper import synthetic

            generator = synthetic.train_generator(
                [v.pixels for v in typed],
                kind,
                seed,
                steps=steps,
                modality=typed[0].modality,
                progress=progress,
            )
            generator.card["trained_on"] = sorted({v.input for v in typed})
            path = generator.save(out) if out else synthetic.save_to_cache(generator)
            card = generator.describe()
    except ValueError as exc:  # e.g. no lung or foreground to cut training cubes from
        stderr.print(f"[red]error:[/] cannot train {kind} on the --authentic scans: {exc}")
        raise typer.Exit(2) from exc
    stdout.print(f"{kind} ({typed[0].modality}, {len(typed)} series, {steps} steps) -> {path}")
    stdout.print(f"id {card['id']}")


def register(app: typer.Typer) -> None:
    app.command("train-attack")(train_attack_command)
