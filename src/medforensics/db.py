"""One database for the whole product: SQLAlchemy over SQLite (default) or PostgreSQL.

Every persistent table (analyses, API keys, the audit log...) derives from ``Base`` so that one
``create_all`` makes the schema. The URL comes from the caller, else ``$MEDFORENSICS_DB_URL``, else
a SQLite file in the data directory (``$MEDFORENSICS_DATA`` or ``~/.local/share/medforensics``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

DATA_ENV = "MEDFORENSICS_DATA"
URL_ENV = "MEDFORENSICS_DB_URL"


class Base(DeclarativeBase):
    """Declarative base of every medforensics table."""


def data_dir() -> Path:
    """Where medforensics keeps its state (database, uploads, spool) unless told otherwise."""
    root = os.environ.get(DATA_ENV)
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "medforensics"


def default_url(directory: Path | None = None) -> str:
    """``$MEDFORENSICS_DB_URL``, else ``sqlite:///<data dir>/medforensics.db``."""
    if directory is None and os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    folder = directory if directory is not None else data_dir()
    return f"sqlite:///{folder / 'medforensics.db'}"


def make_engine(url: str | None = None, *, create: bool = True) -> Engine:
    """An engine for ``url`` (default: ``default_url()``), with the schema created if asked.

    SQLite gets WAL journaling and a busy timeout so that a server and a CLI can share one file.
    """
    url = url or default_url()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) not in ("", ":memory:"):
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    else:
        engine = create_engine(url, pool_pre_ping=True)
    if create:
        # import the modules that define tables so create_all sees them all
        _import_table_modules()
        Base.metadata.create_all(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


#: modules that define tables on ``Base``; a module that adds tables appends itself here
TABLE_MODULES: list[str] = [
    "medforensics.service.models",
    "medforensics.provenance.audit",
    "medforensics.gateway.tables",
    "medforensics.archive.store",
]


def _import_table_modules() -> None:
    import importlib

    for name in TABLE_MODULES:
        importlib.import_module(name)
