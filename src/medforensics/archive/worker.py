"""What runs on a Dask worker: read a task's files, analyse them, return a small outcome.

Workers never touch the database: they send back plain outcomes and the client records them, so
a worker killed halfway loses nothing that was recorded and a result is recorded once however
often Dask had to recompute it. The detector is created once per worker process and kept in a
module-level cache keyed by detector name and plugin modules.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from medforensics.archive.tasks import DONE, FAILED, SeriesTask
from medforensics.detect import Detector, create_detector
from medforensics.io.dicom import read_header
from medforensics.io.loader import Skipped, load_path
from medforensics.io.series import assemble_multiframes, assemble_series, group_series
from medforensics.io.types import ImageVolume, LoadError, ReadError
from medforensics.scan import ScanResult, analyse_volume, result_from_error
from medforensics.utils.hashing import file_sha256

_DETECTORS: dict[tuple[str, tuple[str, ...]], Detector] = {}
_LOCK = threading.Lock()


def import_plugins(modules: Sequence[str]) -> None:
    """Import modules that register extra detectors (``register_detector``) in this process."""
    for name in modules:
        importlib.import_module(name)


def detector_for(name: str, plugins: Sequence[str] = ()) -> Detector:
    """The detector ``name``, created on first use in this process and reused afterwards."""
    key = (name, tuple(plugins))
    with _LOCK:
        detector = _DETECTORS.get(key)
        if detector is None:
            import_plugins(plugins)
            detector = create_detector(name)
            _DETECTORS[key] = detector
        return detector


@dataclass
class TaskOutcome:
    """A task's answer as the client records it.

    Attributes:
        key: the task key.
        status: ``done`` when every volume was analysed, ``failed`` when anything could not be.
        results: scan-contract results (``ScanResult.to_dict()``), one per volume or error.
        load_s, detect_s: seconds spent reading pixels and in the detector.
        cpu_s: CPU seconds the worker process used during the task, all its threads counted
            (a detector may run parts side by side); exact for one-thread workers, an
            overcount when a worker runs several tasks at once.
        worker: the worker's address and process id.
        input_hashes: SHA-256 of every source file, when the run keeps an audit log.
        model: the detector's ``describe()``, when the run keeps an audit log.
    """

    key: str
    status: str
    results: list[dict[str, Any]]
    load_s: float
    detect_s: float
    worker: str
    pid: int
    cpu_s: float = 0.0
    input_hashes: dict[str, str] = field(default_factory=dict)
    model: dict[str, Any] | None = None

    @property
    def total_s(self) -> float:
        return self.load_s + self.detect_s

    @property
    def error(self) -> str | None:
        errors = [r["error"] for r in self.results if r.get("error")]
        return "; ".join(errors) if errors else None


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


_Built = TypeVar("_Built", ImageVolume, list[ImageVolume])


def _load_series(label: str, paths: Sequence[str]) -> Iterator[ImageVolume | LoadError]:
    """The loader's series assembly for exactly these files (one folder, one series UID)."""
    headers = []
    for path in paths:
        try:
            header = read_header(Path(path))
        except ReadError as error:
            yield LoadError(label, error.path, error.message)
            continue
        if header.is_multiframe:  # rewritten since discovery: still analyse it, on its own
            built = _assemble(label, partial(assemble_multiframes, label, header), path)
            yield from built if isinstance(built, list) else [built]
        else:
            headers.append(header)
    for key, members in group_series(headers).items():
        yield _assemble(label, partial(assemble_series, label, members, key), str(members[0].path))


def _assemble(label: str, build: Callable[[], _Built], where: str) -> _Built | LoadError:
    try:
        return build()
    except ReadError as error:
        return LoadError(label, error.path, error.message)
    except MemoryError:
        return LoadError(label, where, "ran out of memory while reading this series")
    except Exception as exc:  # a reader bug must not lose the rest of the batch
        return LoadError(label, where, f"could not be read ({type(exc).__name__}: {exc})")


def load_task(task: SeriesTask) -> Iterator[ImageVolume | LoadError]:
    """Read a task's volumes; problems come back as ``LoadError`` naming the file."""
    label = os.path.join(task.root, task.location)
    if task.kind == "dicom-series":
        yield from _load_series(label, task.paths)
        return
    for item in load_path(task.paths[0]):
        if not isinstance(item, Skipped):
            yield item


def analyse_task(task: SeriesTask, detector: Detector, audit: bool = False) -> TaskOutcome:
    """Load and analyse one task; never raises for a bad input or a detector bug."""
    results: list[ScanResult] = []
    load_s = detect_s = 0.0
    hashes: dict[str, str] = {}
    cpu_started = time.process_time()
    started = time.perf_counter()
    volumes = load_task(task)
    while True:
        try:
            item = next(volumes)
        except StopIteration:
            break
        except Exception as exc:  # the loader promises not to raise; be safe anyway
            results.append(result_from_error(_internal(task, "reading", exc)))
            break
        load_s += time.perf_counter() - started
        started = time.perf_counter()
        if isinstance(item, LoadError):
            results.append(result_from_error(item))
        else:
            results.append(_analyse(item, detector, task))
            if audit and not results[-1].failed:
                hashes.update({str(p): file_sha256(p) for p in item.source_files})
        detect_s += time.perf_counter() - started
        started = time.perf_counter()
    load_s += time.perf_counter() - started
    if not results:
        results.append(
            result_from_error(
                LoadError(task.location, task.paths[0], "holds no image this tool can analyse")
            )
        )
    status = FAILED if any(r.failed for r in results) else DONE
    return TaskOutcome(
        key=task.key,
        status=status,
        results=[r.to_dict() for r in results],
        load_s=round(load_s, 6),
        detect_s=round(detect_s, 6),
        worker=_worker_name(),
        pid=os.getpid(),
        cpu_s=round(time.process_time() - cpu_started, 6),
        input_hashes=hashes,
        model=detector.describe() if audit else None,
    )


def _internal(task: SeriesTask, doing: str, exc: BaseException) -> LoadError:
    return LoadError(
        os.path.join(task.root, task.location),
        os.path.join(task.root, task.location),
        f"{doing} failed with an internal error ({type(exc).__name__}: {exc}); "
        "please report it with 'medforensics env' output",
    )


def _analyse(volume: ImageVolume, detector: Detector, task: SeriesTask) -> ScanResult:
    try:
        return analyse_volume(volume, detector)[1]
    except MemoryError:
        return result_from_error(
            LoadError(volume.input, os.path.join(task.root, task.location), "ran out of memory")
        )
    except Exception as exc:  # a detector bug must not end the batch
        return result_from_error(_internal(task, "analysis", exc))


def preload(detector: str, plugins: Sequence[str] = ()) -> dict[str, Any]:
    """Create this worker's detector now (a probe run on each worker before the batch starts):
    a missing plugin or model fails the run at once instead of failing every task."""
    return {
        "worker": _worker_name(),
        "pid": os.getpid(),
        **detector_for(detector, plugins).describe(),
    }


def analyse_batch(
    tasks: Sequence[SeriesTask], detector: str, plugins: Sequence[str] = (), audit: bool = False
) -> list[TaskOutcome]:
    """The function the cluster runs: every task of one batch, with this process's detector."""
    active = detector_for(detector, plugins)
    return [analyse_task(task, active, audit) for task in tasks]
