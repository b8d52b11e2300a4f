"""medforensics: detect tampered and AI-generated medical images.

The small public API lives here and is imported lazily, so ``import medforensics.io`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medforensics.__about__ import __version__

if TYPE_CHECKING:
    from medforensics.io import ImageVolume, LoadError, load_paths
    from medforensics.scan import ScanResult, scan_paths

__all__ = ["ImageVolume", "LoadError", "ScanResult", "__version__", "load_paths", "scan_paths"]

_LAZY = {
    "ImageVolume": "medforensics.io",
    "LoadError": "medforensics.io",
    "load_paths": "medforensics.io",
    "ScanResult": "medforensics.scan",
    "scan_paths": "medforensics.scan",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medforensics' has no attribute {name!r}")
