"""Forensic reports: evidence JSON, HTML and PDF per input, plus DICOM results for PACS.

* ``write_reports(volume, detection, result, detector, out_dir)`` writes them all
  (``report.build``);
* ``report.evidence``: hashes, model card summary, software versions, times, identifiers;
* ``report.html`` / ``report.pdf``: the two layouts of the same content;
* ``report.dicom``: SR, SEG, Secondary Capture and Encapsulated PDF.

Names are imported on first use, so ``import medforensics.report.dicom`` pulls in nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medforensics.report.build import ReportFiles, write_reports

__all__ = ["ReportFiles", "write_reports"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from medforensics.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'medforensics.report' has no attribute {name!r}")
