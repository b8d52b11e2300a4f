"""``medforensics env``: versions and capabilities, for bug reports."""

from __future__ import annotations

import importlib.metadata as metadata
import platform
import sys

import typer

from medforensics.__about__ import __version__
from medforensics.cli.output import stdout, write_json_atomic

_PACKAGES = (
    "numpy",
    "scipy",
    "pydicom",
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
    "nibabel",
    "Pillow",
    "scikit-image",
    "scikit-learn",
    "opencv-python-headless",
    "torch",
    "monai",
    "highdicom",
    "pynetdicom",
    "reportlab",
    "fastapi",
    "streamlit",
    "dask",
)


def collect() -> dict[str, object]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS  # noqa: F401
    from pydicom.uid import UID

    decoders = {}
    from pydicom.pixels import get_decoder

    for uid in (
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.5",
    ):
        try:
            decoders[UID(uid).name] = get_decoder(uid).is_available
        except (NotImplementedError, ValueError):
            decoders[UID(uid).name] = False
    from medforensics.detect import list_detectors

    return {
        "medforensics": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "pixel_decoders": decoders,
        "detectors": list_detectors(),
    }


def env_command(
    json_out: str | None = typer.Option(None, "--json", help="Write JSON here ('-' = stdout)."),
) -> None:
    """Print versions, available pixel decoders and detectors (paste this into bug reports)."""
    info = collect()
    if json_out:
        write_json_atomic(info, json_out)
        if json_out == "-":
            return
    stdout.print(
        f"medforensics {info['medforensics']}  python {info['python']}  {info['platform']}"
    )
    for name, version in info["packages"].items():  # type: ignore[attr-defined]
        stdout.print(f"  {name:24s} {version or '[dim]not installed[/]'}")
    stdout.print("pixel decoders:")
    for name, ok in info["pixel_decoders"].items():  # type: ignore[attr-defined]
        stdout.print(f"  {name:60s} {'yes' if ok else '[red]no[/]'}")
    stdout.print(f"detectors: {', '.join(info['detectors'])}")  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    app.command("env")(env_command)
