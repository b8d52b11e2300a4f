"""Where the archive scanner's tasks run: a local Dask cluster, or an existing scheduler."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from medforensics.utils.optional import require

if TYPE_CHECKING:
    from distributed import Client

#: share of this machine's memory given to a local cluster's workers, all together; the rest is
#: for the client (discovery, database) and the system
LOCAL_MEMORY_SHARE = 0.85


def default_workers() -> int:
    """One single-threaded worker process per CPU core."""
    return max(1, os.cpu_count() or 1)


def local_memory_limit(workers: int) -> int:
    """Bytes per worker: 85 % of this machine's memory shared out (about 10 GiB each for two
    workers on a 24 GB machine). Dask pauses a worker at 80 % of it and restarts it at 95 %."""
    from distributed.system import MEMORY_LIMIT

    return int(MEMORY_LIMIT * LOCAL_MEMORY_SHARE / max(1, workers))


@contextmanager
def open_client(
    workers: int | None = None,
    scheduler: str | None = None,
    memory_limit: str | int | None = None,
) -> Iterator[Client]:
    """A Dask client: connected to ``scheduler`` if given, else to a new local cluster of
    ``workers`` processes with one thread each, closed on exit.

    Raises:
        MissingExtraError: dask.distributed is not installed.
        ValueError: both ``workers`` and ``scheduler`` were given.
    """
    distributed = require("distributed", "archive scanning")
    if scheduler is not None and workers is not None:
        raise ValueError("give either a number of local workers or a scheduler address, not both")
    if scheduler is not None:
        client = distributed.Client(scheduler, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    n_workers = workers or default_workers()
    cluster = distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit or local_memory_limit(n_workers),
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
