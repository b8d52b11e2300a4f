"""medforensics: detect tampered and AI-generated medical images.

The small public API lives here; everything else is reached through its subpackage.
"""

from __future__ import annotations

from medforensics.__about__ import __version__
from medforensics.io import ImageVolume, LoadError, load_paths
from medforensics.scan import ScanResult, scan_paths

__all__ = ["ImageVolume", "LoadError", "ScanResult", "__version__", "load_paths", "scan_paths"]
