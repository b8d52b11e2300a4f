"""``medforensics tamper``: run one attack on a scan and write it the way an attacker would."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import typer

from medforensics.cli.output import stderr, stdout, write_json_atomic
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume, LoadError


def _volumes(path: Path) -> list[ImageVolume]:
    volumes = []
    for item in load_paths([str(path)]):
        if isinstance(item, LoadError):
            stderr.print(f"[red]{item}[/]")
        elif isinstance(item, ImageVolume):
            volumes.append(item)
    if not volumes:
        raise typer.BadParameter(f"{path}: no image could be read from it", param_hint="IN")
    return volumes


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(
                f"{pair!r}: write parameters as key=value", param_hint="--param"
            )
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _tamper_headers(source: Path, out: Path, attack: str, seed: int) -> None:
    import pydicom

    from medforensics.tamper.header import forge_headers

    files = sorted(p for p in ([source] if source.is_file() else source.rglob("*")) if p.is_file())
    datasets, paths = [], []
    for path in files:
        try:
            datasets.append(pydicom.dcmread(path))
            paths.append(path)
        except pydicom.errors.InvalidDicomError:
            continue
    if not datasets:
        raise typer.BadParameter(f"{source}: holds no DICOM file to forge", param_hint="IN")
    result = forge_headers(datasets, attack.removeprefix("header-"), seed)
    base = source if source.is_dir() else source.parent
    for ds, path in zip(result.datasets, paths, strict=True):
        target = out / path.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target)
    write_json_atomic({"seed": seed, "cases": [result.truth.to_json()]}, out / "ground_truth.json")


def _tamper(
    source: Path,
    out: Path,
    attack: str,
    seed: int,
    launder: list[str],
    params: dict[str, Any],
    donor: Path | None,
) -> None:
    from medforensics.tamper.dicom_out import write_tampered
    from medforensics.tamper.registry import simulate

    if out.exists() and any(out.iterdir()):
        raise typer.BadParameter(
            f"{out}: exists and is not empty; choose a new folder", param_hint="OUT"
        )
    if attack.startswith("header-"):
        _tamper_headers(source, out, attack, seed)
        return
    options = {"donor": _volumes(donor)[0]} if donor is not None else None
    volumes = _volumes(source)
    cases = []
    for k, volume in enumerate(volumes):
        target = out if len(volumes) == 1 else out / f"{k:03d}"
        result = simulate(volume, attack, [seed, k], launder=launder, options=options, **params)
        target.mkdir(parents=True, exist_ok=True)
        if volume.slices and volume.slices[0].sop_instance_uid is not None:
            written = write_tampered(volume, result.pixels, target)
            files = [str(p.relative_to(out)) for p in written]
        else:
            np.savez_compressed(target / "tampered.npz", pixels=result.pixels)
            files = [str((target / "tampered.npz").relative_to(out))]
        np.savez_compressed(
            target / "mask.npz", mask=np.packbits(result.truth.mask), shape=result.truth.mask.shape
        )
        cases.append(
            {
                "input": volume.input,
                "series_uid": volume.series_uid,
                "files": len(files),
                **result.truth.to_json(),
            }
        )
        z, y, x = result.truth.centre or (0, 0, 0)
        stdout.print(
            f"{volume.input}: {attack} ({result.truth.label}) at slice {z}, row {y}, col {x}; "
            f"{int(result.truth.mask.sum())} voxels changed -> {target}"
        )
    write_json_atomic({"seed": seed, "attack": attack, "cases": cases}, out / "ground_truth.json")


def _gallery(out: Path, inputs: list[Path], seed: int) -> None:
    from medforensics.samples import chest_ct_phantom, radiograph_phantom
    from medforensics.tamper.gallery import render_gallery

    volumes: dict[str, ImageVolume] = {}
    for path in inputs:
        for k, volume in enumerate(_volumes(path)):
            volumes[f"{path.stem.split('.')[0]}{'' if k == 0 else k}"] = volume
    if not volumes:
        rng = np.random.default_rng(seed)
        volumes["phantom-ct"] = ImageVolume(
            "phantom-ct",
            "dicom-series",
            "CT",
            chest_ct_phantom(8, 256, rng),
            spacing=(2.5, 1.4, 1.4),
        )
        volumes["phantom-xray"] = ImageVolume(
            "phantom-xray",
            "image",
            "DX",
            radiograph_phantom(512, rng),
            spacing=(math.nan, 0.8, 0.8),
        )
    for path in render_gallery(volumes, out, seed):
        stdout.print(str(path))


def tamper_command(
    paths: list[Path] = typer.Argument(None, help="IN OUT (tamper), or the inputs of --gallery."),
    attack: str = typer.Option(
        "inject",
        help="Attack name; see --list. Header forgeries: header-patient-swap, header-date-shift.",
    ),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same output."),
    launder: list[str] = typer.Option(
        [],
        help="Laundering after the attack, repeatable: resample, smooth, noise, requantise, "
        "jpeg, jpeg2000, window.",
    ),
    param: list[str] = typer.Option(
        [], help="Override a parameter, key=JSON value (e.g. box=[10,14,300,350,280,330])."
    ),
    donor: Path | None = typer.Option(None, help="Donor scan for splice."),
    gallery: Path | None = typer.Option(
        None, "--gallery", help="Render before/after PNG crops of every attack into this folder."
    ),
    list_names: bool = typer.Option(
        False, "--list", help="List the attacks and laundering operations."
    ),
) -> None:
    """Tamper a scan (IN) into a new folder (OUT), with OUT/ground_truth.json.

    DICOM inputs are written file by file with only Pixel Data changed, in the same transfer
    syntax; other inputs are written as OUT/tampered.npz.
    """
    from medforensics.tamper.launder import LAUNDER_OPS
    from medforensics.tamper.registry import list_attacks

    paths = paths or []
    if list_names:
        stdout.print(
            "attacks: " + ", ".join(list_attacks()) + ", header-patient-swap, header-date-shift"
        )
        stdout.print("laundering: " + ", ".join(LAUNDER_OPS))
        return
    if gallery is not None:
        _gallery(gallery, paths, seed)
        return
    if len(paths) != 2:
        raise typer.BadParameter("give IN and OUT (or --gallery OUTDIR)", param_hint="PATHS")
    if attack not in list_attacks() and not attack.startswith("header-"):
        raise typer.BadParameter(
            f"unknown attack {attack!r}; known: {', '.join(list_attacks())}", param_hint="--attack"
        )
    _tamper(paths[0], paths[1], attack, seed, launder, _parse_params(param), donor)


def register(app: typer.Typer) -> None:
    app.command("tamper")(tamper_command)
