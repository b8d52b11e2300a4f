"""A private temporary folder per browser session: uploads and reports live there, never elsewhere.

The folder is created with mode 0700 (``tempfile.mkdtemp``) and removed when its owner is garbage
collected (Streamlit drops a session's state some time after the browser disconnects), when
``cleanup`` is called, or when the process exits. What the user uploaded is copied here; their
own files are never opened for writing.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from medforensics.report.build import safe_name

#: suffixes kept intact when an uploaded file name is cleaned
_DOUBLE_SUFFIXES = (".nii.gz",)


@dataclass(frozen=True)
class Upload:
    """One file as the browser sent it: its name (as the user sees it) and its bytes."""

    name: str
    data: bytes


def upload_file_name(name: str) -> str:
    """A safe file name for an uploaded ``name``: no folders, letters/digits/``._-`` only.

    Browsers may send a relative path (folder uploads) or a Windows path; only the last part is
    kept. The suffix survives, so formats are still recognised by name where that matters.
    """
    base = PureWindowsPath(PurePosixPath(name.replace("\\", "/")).name).name or "upload"
    lower = base.lower()
    suffix = next((s for s in _DOUBLE_SUFFIXES if lower.endswith(s)), Path(base).suffix)
    stem = base[: len(base) - len(suffix)] if suffix else base
    cleaned_suffix = safe_name(suffix, 16) if suffix else ""
    return safe_name(stem, 120) + (f".{cleaned_suffix}" if cleaned_suffix else "")


def save_upload(upload: Upload, folder: Path) -> Path:
    """Write ``upload`` into ``folder`` under a safe name; never overwrites a file.

    A second upload with the same name gets ``-2``, ``-3``... before the suffix.
    """
    name = upload_file_name(upload.name)
    path = folder / name
    for attempt in itertools.count(2):
        if not path.exists():
            break
        stem, dot, suffix = name.partition(".")
        path = folder / f"{stem}-{attempt}{dot}{suffix}"
    with open(path, "xb") as handle:
        handle.write(upload.data)
    return path


class SessionFiles:
    """The temporary folder of one session, with numbered sub-folders for each piece of work.

    Args:
        parent: where to create the folder (default: the system's temporary folder).
    """

    def __init__(self, parent: str | Path | None = None) -> None:
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="medforensics-ui-", dir=parent))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self._counter = itertools.count(1)

    @property
    def alive(self) -> bool:
        """False once the folder has been removed."""
        return self._finalizer.alive

    def new_folder(self, purpose: str) -> Path:
        """A new empty folder ``<root>/<purpose>-<n>`` (0700)."""
        if not self.alive:
            raise RuntimeError("this session's files were already cleaned up")
        folder = self.root / f"{safe_name(purpose, 40)}-{next(self._counter):03d}"
        folder.mkdir(mode=0o700)
        return folder

    def save_uploads(self, uploads: Sequence[Upload], purpose: str = "upload") -> list[Path]:
        """Write ``uploads`` into a new folder; returns their paths, in upload order."""
        folder = self.new_folder(purpose)
        return [save_upload(upload, folder) for upload in uploads]

    def discard(self, folder: Path) -> None:
        """Remove one sub-folder (an analysis the user replaced)."""
        folder = Path(folder)
        if folder.parent == self.root:
            shutil.rmtree(folder, ignore_errors=True)

    def cleanup(self) -> None:
        """Remove the whole folder now."""
        self._finalizer()
