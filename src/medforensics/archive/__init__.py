"""Archive-scale scanning on Dask: walk a PACS export or research archive lazily, analyse each
series once on a cluster, record results in the database, summarise the batch.

Needs the ``archive`` extra (``dask[distributed]``, ``pyarrow``) and SQLAlchemy. See
docs/archive.md.
"""

from medforensics.archive.cluster import open_client
from medforensics.archive.discover import SkippedFile, WalkProblem, discover
from medforensics.archive.runner import (
    ArchiveError,
    ArchiveOptions,
    RunCounters,
    RunReport,
    run_archive,
)
from medforensics.archive.store import ArchiveRun, ArchiveTask, TaskStore
from medforensics.archive.summary import BatchOutputs, BatchSummary, summarise, write_outputs
from medforensics.archive.tasks import FileStamp, SeriesTask, task_key
from medforensics.archive.worker import TaskOutcome, analyse_batch, detector_for

__all__ = [
    "ArchiveError",
    "ArchiveOptions",
    "ArchiveRun",
    "ArchiveTask",
    "BatchOutputs",
    "BatchSummary",
    "FileStamp",
    "RunCounters",
    "RunReport",
    "SeriesTask",
    "SkippedFile",
    "TaskOutcome",
    "TaskStore",
    "WalkProblem",
    "analyse_batch",
    "detector_for",
    "discover",
    "open_client",
    "run_archive",
    "summarise",
    "task_key",
    "write_outputs",
]
