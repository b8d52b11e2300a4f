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
from medforensics.tamper.base import TamperResult


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
    from medforensics.tamper.registry import simulate

    if attack.startswith("header-"):
        _tamper_headers(source, out, attack, seed)
        return
    options = {"donor": _volumes(donor)[0]} if donor is not None else None
    volumes = _volumes(source)
    cases = []
    for k, volume in enumerate(volumes):
        target = out if len(volumes) == 1 else out / f"{k:03d}"
        result = simulate(volume, attack, [seed, k], launder=launder, options=options, **params)
        cases.append(_write_case(volume, result, target, out, attack))
    write_json_atomic({"seed": seed, "attack": attack, "cases": cases}, out / "ground_truth.json")


#: keys of a study result's ``params["study"]`` that describe one series, not the study
_SERIES_KEYS = ("series_index", "series_uid", "input", "series", "sequence", "sequence_from")


def _tamper_study(
    source: Path,
    out: Path,
    attack: str,
    seed: int,
    launder: list[str],
    params: dict[str, Any],
    donor: Path | None,
) -> None:
    """Every series under ``source`` is one MR study: one edit, one place, every series."""
    from medforensics.tamper.study import series_label, simulate_study

    volumes = _volumes(source)
    donors = _paired_donors(volumes, _volumes(donor)) if donor is not None else None
    results = simulate_study(volumes, attack, seed, launder=launder, donors=donors, **params)
    cases = [
        _write_case(volume, result, out / f"{k:03d}", out, attack, series_label(volume))
        for k, (volume, result) in enumerate(zip(volumes, results, strict=True))
    ]
    study = {
        key: value
        for key, value in results[0].truth.params["study"].items()
        if key not in _SERIES_KEYS
    }
    write_json_atomic(
        {"seed": seed, "attack": attack, "study": study, "cases": cases}, out / "ground_truth.json"
    )


def _paired_donors(volumes: list[ImageVolume], donors: list[ImageVolume]) -> list[ImageVolume]:
    """For each series the donor series of the same sequence (T1 for T1...), each used once."""
    from medforensics.tamper.sequence import guess_sequence, header_values

    def kind(volume: ImageVolume) -> str:
        return guess_sequence(header_values(volume))[0]

    left = list(donors)
    paired = []
    for volume in volumes:
        match = next((d for d in left if kind(d) == kind(volume)), None)
        if match is None:
            raise typer.BadParameter(
                f"the donor study has no {kind(volume)} series left for {volume.input}; give a "
                "donor study with the same sequences",
                param_hint="--donor",
            )
        left.remove(match)
        paired.append(match)
    return paired


def _write_case(
    volume: ImageVolume,
    result: TamperResult,
    target: Path,
    out: Path,
    attack: str,
    label: str | None = None,
) -> dict[str, Any]:
    """Write one tampered series (DICOM back in place, else ``tampered.npz``) and its mask."""
    from medforensics.tamper.dicom_out import write_tampered

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
    z, y, x = result.truth.centre or (0, 0, 0)
    stdout.print(
        f"{label or volume.input}: {attack} ({result.truth.label}) at slice {z}, row {y}, col {x}; "
        f"{int(result.truth.mask.sum())} voxels changed -> {target}",
        markup=False,
    )
    return {
        "input": volume.input,
        "series_uid": volume.series_uid,
        "files": len(files),
        **result.truth.to_json(),
    }


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
    study: bool = typer.Option(
        False,
        "--study",
        help="IN holds several MR series of one study: place the edit once in patient "
        "coordinates and apply it to every series consistently (inject, remove, inpaint, "
        "copy-move, splice; --donor is then a donor study).",
    ),
) -> None:
    """Tamper a scan (IN) into a new folder (OUT), with OUT/ground_truth.json.

    DICOM inputs are written file by file with only Pixel Data changed, in the same transfer
    syntax; other inputs are written as OUT/tampered.npz. With several series, each goes to
    OUT/000, OUT/001, ...
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
    source, out = paths
    if out.exists() and any(out.iterdir()):
        raise typer.BadParameter(
            f"{out}: exists and is not empty; choose a new folder", param_hint="OUT"
        )
    if study and attack.startswith("header-"):
        raise typer.BadParameter(
            "--study applies to pixel attacks; header forgeries already cover every file of IN",
            param_hint="--study",
        )
    from medforensics.tamper.base import AttackError
    from medforensics.tamper.dicom_out import WriteBackError

    run = _tamper_study if study else _tamper
    try:
        run(source, out, attack, seed, launder, _parse_params(param), donor)
    except (AttackError, WriteBackError) as exc:
        stderr.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(1) from exc


def register(app: typer.Typer) -> None:
    app.command("tamper")(tamper_command)
