"""Import heavy optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

#: which extra provides which top-level module
EXTRA_FOR_MODULE = {
    "torch": "ml",
    "monai": "ml",
    "highdicom": "dicom-out",
    "reportlab": "report",
    "fastapi": "service",
    "uvicorn": "service",
    "sqlalchemy": "service",
    "pynetdicom": "gateway",
    "dicomweb_client": "gateway",
    "streamlit": "ui",
    "dask": "archive",
    "distributed": "archive",
    "pyarrow": "archive",
    "cryptography": "provenance",
}


class MissingExtraError(ImportError):
    """Raised when an optional dependency is needed but not installed."""


def require(module: str, feature: str = "") -> ModuleType:
    """Import ``module`` or raise an error telling the user which extra to install.

    Args:
        module: dotted module name, e.g. ``"monai.networks.nets"``.
        feature: what the caller wanted to do, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRA_FOR_MODULE.get(top, "all")
        what = f" for {feature}" if feature else ""
        raise MissingExtraError(
            f"'{top}' is needed{what} but is not installed. "
            f"Install it with: pip install 'medforensics[{extra}]'"
        ) from exc
