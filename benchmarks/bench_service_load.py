"""Load test of the REST API: concurrent uploads of mixed sizes against a real server on loopback.

Starts ``medforensics serve`` (SQLite in a temporary data directory), sends ``--uploads``
submissions at once (radiographs as PNG and DICOM, and 64-slice CT series as zips), follows each
to the end and reports 5xx answers, lost submissions (accepted but never finished) and
end-to-end latency (upload start to ``done``) per input kind. A 429 (back-pressure) is
retried after its Retry-After and counted, not treated as lost. The run is bounded by
``--deadline`` seconds.

python benchmarks/bench_service_load.py [--uploads 100] [--series-share 0.2] [--detector auto]
Writes benchmarks/out/bench_service_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass
class Outcome:
    kind: str
    size: int
    status: str = "not sent"
    submit_code: int | None = None
    latency_s: float | None = None
    accept_s: float | None = None
    run_s: float | None = None
    retries_429: int = 0
    codes_5xx: list[int] = field(default_factory=list)
    verdict: str | None = None
    error: str | None = None


def build_inputs(folder: Path, series_size: int, radiograph_size: int) -> dict[str, bytes]:
    from PIL import Image

    from medforensics.samples import (
        chest_ct_phantom,
        radiograph_phantom,
        write_ct_series,
        write_dicom_image,
    )

    rng = np.random.default_rng(0)
    radiograph = radiograph_phantom(radiograph_size, rng=rng)
    png = io.BytesIO()
    Image.fromarray((radiograph[0] / 16).clip(0, 255).astype(np.uint8)).save(png, format="PNG")
    dicom = write_dicom_image(radiograph, folder / "dx.dcm").read_bytes()
    volume = chest_ct_phantom(n_slices=64, size=series_size, rng=rng)
    files = write_ct_series(volume, folder / "series")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in files:
            bundle.write(path, f"series/{path.name}")
    return {"png": png.getvalue(), "dicom": dicom, "series": archive.getvalue()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    data: Path, port: int, args: argparse.Namespace, log: Path
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("MEDFORENSICS_DB_URL", None)
    # one BLAS/torch thread per worker process: the workers are the parallelism
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MEDFORENSICS_REPORTS"] = "true" if args.reports else "false"
    if args.fifo:
        env["MEDFORENSICS_SIZE_PRIORITY_S_PER_MIB"] = "0"
    command = [
        sys.executable, "-m", "medforensics.cli.main", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
        "--workers", str(args.workers), "--detector", args.detector,
        "--queue-limit", str(args.queue_limit), "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as handle:
        return subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip


async def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    import httpx

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError("the server exited during start-up (see its log)")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return time.perf_counter() - started
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s")


async def one_upload(
    client: object, outcome: Outcome, name: str, payload: bytes, deadline: float
) -> None:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    started = time.perf_counter()
    location = None
    while time.perf_counter() < deadline:
        try:
            response = await client.post("/v1/analyses", files={"files": (name, payload)})
        except httpx.HTTPError as exc:
            outcome.error = f"upload: {type(exc).__name__}: {exc}"
            outcome.status = "upload error"
            return
        outcome.submit_code = response.status_code
        if response.status_code >= 500:
            outcome.codes_5xx.append(response.status_code)
            outcome.status = "5xx"
            return
        if response.status_code == 429:
            outcome.retries_429 += 1
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            continue
        if response.status_code != 202:
            outcome.status = f"refused {response.status_code}"
            outcome.error = response.text[:300]
            return
        outcome.accept_s = time.perf_counter() - started
        location = response.headers["location"]
        break
    if location is None:
        outcome.status = "never accepted"
        return
    outcome.status = "lost"  # until it is seen finished
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        try:
            response = await client.get(location)
        except httpx.HTTPError:
            continue
        if response.status_code >= 500:
            outcome.codes_5xx.append(response.status_code)
            continue
        if response.status_code == 429:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            continue
        body = response.json()
        if body["status"] in ("done", "failed"):
            outcome.status = body["status"]
            outcome.latency_s = time.perf_counter() - started
            outcome.verdict = body.get("verdict")
            if body.get("started_at") and body.get("finished_at"):
                outcome.run_s = (
                    datetime.fromisoformat(body["finished_at"])
                    - datetime.fromisoformat(body["started_at"])
                ).total_seconds()
            outcome.error = body.get("error")
            return


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def plan(uploads: int, series_share: float) -> list[str]:
    """Kinds in a shuffled but seeded order: series, then PNG/DICOM radiographs alternating."""
    series = round(uploads * series_share)
    kinds = ["series"] * series + [("png", "dicom")[i % 2] for i in range(uploads - series)]
    order = np.random.default_rng(1).permutation(len(kinds))
    return [kinds[i] for i in order]


async def run(args: argparse.Namespace) -> dict[str, object]:
    import httpx

    from medforensics.db import make_engine
    from medforensics.service.auth import KeyStore

    with tempfile.TemporaryDirectory(prefix="medforensics-bench-") as tmp:
        folder = Path(tmp)
        inputs = build_inputs(folder / "inputs", args.series_size, args.radiograph_size)
        data = folder / "data"
        key = KeyStore(make_engine(f"sqlite:///{data / 'medforensics.db'}")).create(
            "bench", rate_per_min=1_000_000
        )
        port = free_port()
        log = folder / "server.log"
        process = start_server(data, port, args, log)
        base = f"http://127.0.0.1:{port}"
        try:
            ready_s = await wait_ready(base, process, 180)
            kinds = plan(args.uploads, args.series_share)
            names = {"png": "chest.png", "dicom": "chest.dcm", "series": "ct-64.zip"}
            outcomes = [Outcome(kind, len(inputs[kind])) for kind in kinds]
            limits = httpx.Limits(
                max_connections=args.uploads, max_keepalive_connections=args.uploads
            )
            started = time.perf_counter()
            deadline = started + args.deadline
            async with httpx.AsyncClient(
                base_url=base,
                headers={"Authorization": f"Bearer {key.token}"},
                timeout=httpx.Timeout(120.0),
                limits=limits,
            ) as client:
                await asyncio.gather(
                    *(
                        one_upload(
                            client, outcome, names[outcome.kind], inputs[outcome.kind], deadline
                        )
                        for outcome in outcomes
                    )
                )
                wall = time.perf_counter() - started
                metrics = (await client.get("/metrics")).text
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # workers the server leads, if any linger
            server_log = log.read_text(errors="replace")
    radiographs = [o.latency_s for o in outcomes if o.kind != "series" and o.latency_s is not None]
    series = [o.latency_s for o in outcomes if o.kind == "series" and o.latency_s is not None]
    accepts = [o.accept_s for o in outcomes if o.accept_s is not None]
    radiograph_runs = [o.run_s for o in outcomes if o.kind != "series" and o.run_s is not None]
    series_runs = [o.run_s for o in outcomes if o.kind == "series" and o.run_s is not None]
    server_errors = sum(len(o.codes_5xx) for o in outcomes)
    errors_logged = server_log.count('"level":"error"')
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}",
        "settings": {
            "uploads": args.uploads,
            "detector": args.detector,
            "workers": args.workers,
            "reports": args.reports,
            "queue": "fifo" if args.fifo else "size priority (1 s per MiB)",
            "series": f"64 x {args.series_size}^2 CT, zip {len(inputs['series']) / 2**20:.1f} MiB",
            "radiograph": f"{args.radiograph_size}^2, PNG {len(inputs['png']) / 2**10:.0f} KiB, "
            f"DICOM {len(inputs['dicom']) / 2**10:.0f} KiB",
        },
        "server_ready_s": round(ready_s, 2),
        "wall_s": round(wall, 2),
        "counts": {kind: kinds.count(kind) for kind in ("png", "dicom", "series")},
        "http_5xx": server_errors,
        "server_errors_logged": errors_logged,
        "lost": sum(o.status in ("lost", "never accepted", "upload error") for o in outcomes),
        "failed": sum(o.status == "failed" for o in outcomes),
        "refused": sum(o.status.startswith("refused") for o in outcomes),
        "retries_429": sum(o.retries_429 for o in outcomes),
        "radiograph_latency_s": {
            "p50": percentile(radiographs, 50),
            "p95": percentile(radiographs, 95),
        },
        "series_latency_s": {"p50": percentile(series, 50), "p95": percentile(series, 95)},
        "accept_latency_s": {"p50": percentile(accepts, 50), "p95": percentile(accepts, 95)},
        "radiograph_processing_s": {
            "p50": percentile(radiograph_runs, 50),
            "p95": percentile(radiograph_runs, 95),
        },
        "series_processing_s": {
            "p50": percentile(series_runs, 50),
            "p95": percentile(series_runs, 95),
        },
        "queue_metric": [
            line for line in metrics.splitlines() if line.startswith("medforensics_analyses{")
        ],
        "outcomes": [asdict(o) for o in outcomes if o.status != "done"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--series-share", type=float, default=0.2, help="Share of 64-slice zips.")
    parser.add_argument("--series-size", type=int, default=256, help="Rows/cols of each CT slice.")
    parser.add_argument("--radiograph-size", type=int, default=512)
    parser.add_argument("--detector", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue-limit", type=int, default=200)
    parser.add_argument(
        "--fifo", action="store_true", help="Plain first-in-first-out queue (no size priority)."
    )
    parser.add_argument("--reports", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--deadline", type=float, default=900.0, help="Seconds for the whole run.")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "bench_service_load.json")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    def seconds(value: object) -> str:
        return f"{value:.2f} s" if isinstance(value, float) else "n/a"

    settings = report["settings"]
    assert isinstance(settings, dict)
    print(f"service load test, {report['date']}, {report['machine']}")
    print(f"  {args.uploads} concurrent uploads {report['counts']}, detector {args.detector}, "
          f"{args.workers} workers, reports {'on' if args.reports else 'off'}, "
          f"queue {settings['queue']}")  # fmt: skip
    print(f"  series: {settings['series']}; radiograph: {settings['radiograph']}")
    print(f"  server ready in {report['server_ready_s']} s; all finished in {report['wall_s']} s")
    print(f"  5xx: {report['http_5xx']}   lost: {report['lost']}   failed: {report['failed']}   "
          f"refused: {report['refused']}   429 retries: {report['retries_429']}")  # fmt: skip
    print("  latency, upload start to done (queueing included):")
    for label, key in (
        ("radiograph (PNG/DICOM)", "radiograph_latency_s"),
        ("64-slice series zip", "series_latency_s"),
        ("upload accepted (202)", "accept_latency_s"),
        ("radiograph, worker time", "radiograph_processing_s"),
        ("series, worker time", "series_processing_s"),
    ):
        figures = report[key]
        assert isinstance(figures, dict)
        print(f"  {label:24s} p50 {seconds(figures['p50'])}   p95 {seconds(figures['p95'])}")
    print(f"  written to {args.out}")
    ok = report["http_5xx"] == 0 and report["lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
