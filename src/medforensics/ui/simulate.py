"""The simulator page's work: run one attack from ``medforensics.tamper`` on an uploaded scan.

Everything made here is SIMULATED, for training and demonstration: file names start with
``SIMULATED_`` and every archive carries ``ground_truth.json`` saying so. DICOM inputs are
written back as an attacker would (``tamper.dicom_out.write_tampered``: only Pixel Data
changes); 2D images as PNG of the same bit depth; other volumes as NumPy arrays.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume, LoadError
from medforensics.tamper.base import GroundTruth
from medforensics.ui.analysis import (
    MIME,
    Download,
    Relabel,
    download_stem,
    prepare_inputs,
    sources_label,
)
from medforensics.ui.session import SessionFiles, Upload

#: the words every simulated output carries
SIMULATED_NOTICE = "SIMULATED — for training and demonstration"
PREFIX = "SIMULATED_"


@dataclass
class Loaded:
    """The volumes read from an upload for the simulator, and the errors met."""

    volumes: list[ImageVolume]
    names: list[str]
    errors: list[str]
    folder: Path


@dataclass
class Simulation:
    """One attack on one volume: before, after, the ground truth and the files to download."""

    name: str
    attack: str
    seed: int
    original: ImageVolume
    tampered: ImageVolume
    truth: GroundTruth
    downloads: list[Download] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def centre_slice(self) -> int:
        if self.truth.centre is not None:
            return int(self.truth.centre[0])
        return self.original.shape[0] // 2


def load_for_simulation(uploads: Sequence[Upload], files: SessionFiles) -> Loaded:
    """Read the uploaded scan(s); their files stay in the session folder for the write-back."""
    folder, paths = prepare_inputs(uploads, files, purpose="simulate")
    relabel = Relabel(folder / "inputs", sources_label([u.name for u in uploads]))
    loaded = Loaded([], [], [], folder)
    for item in load_paths(paths):
        if isinstance(item, ImageVolume):
            loaded.volumes.append(item)
            where = item.source_files[0] if len(item.source_files) == 1 else item.input
            loaded.names.append(relabel(str(where)) or item.input)
        elif isinstance(item, LoadError):
            loaded.errors.append(relabel(str(item)) or str(item))
    return loaded


def run_simulation(
    volume: ImageVolume, name: str, attack: str, seed: int, out_dir: Path
) -> Simulation:
    """Run ``attack`` with ``seed`` on ``volume`` and prepare the downloads.

    Raises:
        AttackError: the attack cannot run on this image (the message says why).
    """
    from medforensics.tamper.registry import simulate

    result = simulate(volume, attack, seed)
    simulation = Simulation(
        name=name,
        attack=attack,
        seed=seed,
        original=volume,
        tampered=result.as_volume(volume),
        truth=result.truth,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{PREFIX}{download_stem(name)}_{attack}_{seed}"
    simulation.downloads.append(_tampered_download(simulation, stem, out_dir))
    simulation.downloads.append(
        Download(
            "Ground truth (JSON + mask)",
            f"{stem}_ground_truth.zip",
            truth_archive(simulation),
            MIME["zip"],
        )
    )
    return simulation


def ground_truth_json(simulation: Simulation) -> dict[str, Any]:
    """What was done, where, with which seed: the JSON shipped with every simulated output."""
    return {
        "notice": SIMULATED_NOTICE,
        "simulated": True,
        "input": simulation.name,
        "seed": simulation.seed,
        **simulation.truth.to_json(),
    }


def truth_archive(simulation: Simulation) -> bytes:
    """A zip with ``ground_truth.json`` and ``mask.npz`` (packed bits and shape)."""
    mask = simulation.truth.mask
    buffer = io.BytesIO()
    np.savez_compressed(buffer, mask=np.packbits(mask), shape=np.asarray(mask.shape))
    return _zip(
        {
            "ground_truth.json": _json_bytes(ground_truth_json(simulation)),
            "mask.npz": buffer.getvalue(),
        }
    )


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=2, default=str) + "\n").encode()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return buffer.getvalue()


def _tampered_download(simulation: Simulation, stem: str, out_dir: Path) -> Download:
    volume, pixels = simulation.original, simulation.tampered.pixels
    if volume.slices and all(ref.sop_instance_uid for ref in volume.slices):
        from medforensics.tamper.dicom_out import write_tampered

        written = write_tampered(volume, pixels, out_dir / "dicom")
        if len(written) == 1:
            return Download("Tampered DICOM", f"{stem}.dcm", written[0].read_bytes(), MIME["dcm"])
        members = {
            f"{stem}/{path.relative_to(out_dir / 'dicom').as_posix()}": path.read_bytes()
            for path in written
        }
        members[f"{stem}/ground_truth.json"] = _json_bytes(ground_truth_json(simulation))
        return Download("Tampered DICOM series (zip)", f"{stem}.zip", _zip(members), MIME["zip"])
    if volume.shape[0] == 1:
        return Download("Tampered PNG", f"{stem}.png", png_of(pixels[0], volume), MIME["png"])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, pixels=pixels, spacing=np.asarray(volume.spacing))
    return Download("Tampered volume (NumPy .npz)", f"{stem}.npz", buffer.getvalue(), MIME["zip"])


def png_of(plane: np.ndarray, volume: ImageVolume) -> bytes:
    """A 2D image's values as a PNG of the source's bit depth (8 or 16 bits, gray)."""
    from PIL import Image

    deep = (volume.bits_stored or 8) > 8
    limit = 65535 if deep else 255
    values = np.clip(np.rint(plane), 0, limit).astype(np.uint16 if deep else np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue()
