"""Run the real server (``medforensics serve``) and a real PostgreSQL as subprocesses.

Every process started here is stopped by its own PID (the server's workers share its process
group, which the server leads).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("MEDFORENSICS_DB_URL", None)
    env.update(extra or {})
    return env


def cli(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medforensics.cli.main", *args],
        capture_output=True,
        text=True,
        env=_env(env),
        cwd=REPO,
        timeout=120,
        check=False,
    )


def create_key(data_dir: Path, db_url: str | None, tenant: str, rate: str = "100000/min") -> str:
    args = ["apikey", "create", "--tenant", tenant, "--rate", rate, "--json"]
    args += ["--data-dir", str(data_dir)] + (["--db-url", db_url] if db_url else [])
    done = cli(args)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["key"])


@dataclass
class Server:
    """A ``medforensics serve`` subprocess on a loopback port."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    data_dir: Path
    db_url: str | None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = None, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the server was not ready in {timeout} s:\n{self.log_tail()}")

    def kill9(self) -> None:
        """A crash: SIGKILL to the server process alone (its workers are orphaned)."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL to the whole group if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self.kill_group()
        return self.process.returncode

    def kill_group(self) -> None:
        # the server leads its own session: this reaches its worker processes, nobody else's
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def start_server(
    data_dir: Path,
    *,
    db_url: str | None = None,
    workers: int = 2,
    detector: str = "noise-residual",
    env: dict[str, str] | None = None,
    port: int | None = None,
    log_name: str = "server.log",
    wait: bool = True,
) -> Server:
    port = port or free_port()
    args = [
        sys.executable,
        "-m",
        "medforensics.cli.main",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--workers",
        str(workers),
        "--detector",
        detector,
    ]
    if db_url:
        args += ["--db-url", db_url]
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / log_name
    with log.open("ab") as handle:
        process = subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=_env(env),
            cwd=REPO,
            start_new_session=True,
        )
    server = Server(process, port, log, data_dir, db_url, dict(env or {}))
    if wait:
        try:
            server.wait_ready()
        except BaseException:
            server.stop(timeout=5)
            raise
    return server


@contextlib.contextmanager
def running_server(data_dir: Path, **options: object) -> Iterator[Server]:
    server = start_server(data_dir, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


# -- PostgreSQL ---------------------------------------------------------------------------------


def postgres_available() -> bool:
    return (PG_BIN / "initdb").is_file() and (PG_BIN / "postgres").is_file()


def _as_postgres_user(command: list[str]) -> list[str]:
    """postgres refuses to run as root: run it as the ``postgres`` system user then."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *command]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(command)]


@dataclass
class Postgres:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            postmaster = int(pid_file.read_text().splitlines()[0])
            os.kill(postmaster, signal.SIGINT)  # "fast" shutdown
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Postgres:
    """initdb a cluster in a fresh temporary folder and run it on 127.0.0.1 only."""
    # not under pytest's tmp_path: the postgres user cannot enter root's 0700 folders
    root = Path(tempfile.mkdtemp(prefix="medforensics-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    data = root / "data"
    init = subprocess.run(
        _as_postgres_user(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    port = free_port()
    process = subprocess.Popen(
        _as_postgres_user(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(root),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=(root / "postgres.log").open("wb"),
        start_new_session=True,
    )
    server = Postgres(root, port, process)
    deadline = time.monotonic() + 60
    import psycopg

    while True:
        try:
            psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2
            ).close()
            return server
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (root / "postgres.log").read_text(errors="replace")
                server.stop()
                raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
            time.sleep(0.2)
