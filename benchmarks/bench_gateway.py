"""DICOM gateway throughput: instances/s received, series/min analysed end to end.

python benchmarks/bench_gateway.py [--quick] [--destination memory|orthanc] [--sign]

1. receive: small CT instances (64×64) over several concurrent associations into the durable
   spool (fsync + atomic rename + index commit per instance), nothing analysed meanwhile;
   also DCMTK ``storescu`` on one association when it is installed;
2. end to end: 128×128×16 chest phantom series sent over concurrent associations, each one
   spooled, analysed by the detector once quiet, reports and DICOM SR / SC / PDF written, and
   forwarded with its results to the destination (an in-process pynetdicom SCP by default, or
   a real Orthanc). Series/min counts from the first instance sent to the last one forwarded.

With ``--sign`` both stages run twice, without and with ``[signing]`` (a site key made for the
run, ``--sign-algorithm rsa`` (3072 bit, the ``keys init`` default) or ``ecdsa``): every
instance signed in the C-STORE handler before it is acknowledged, and verified before it is
forwarded; the report puts the two side by side.

Writes benchmarks/out/bench_gateway.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


class MemoryDestination:
    """A pynetdicom SCP that accepts and counts everything (stands in for the PACS)."""

    def __init__(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        self.received = 0
        ae = AE(ae_title="DEST")
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)

        def on_store(_event: Any) -> int:
            self.received += 1
            return 0x0000

        self.server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
        )
        self.ae_title, self.port = "DEST", int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()


class OrthancDestination:
    def __init__(self, root: Path) -> None:
        sys.path.insert(0, str(HERE.parent))
        from tests.gateway import Orthanc

        self.orthanc = Orthanc(root).start()
        self.ae_title, self.port = self.orthanc.ae_title, self.orthanc.dicom_port

    def stop(self) -> None:
        self.orthanc.stop()


def send_all(port: int, groups: list[list[Path]]) -> tuple[float, int]:
    """Send each group on its own association at once; (seconds, acknowledged)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    acked = [0] * len(groups)

    def run(index: int) -> None:
        ae = AE(ae_title=f"MOD{index:02d}")
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDFORENSICS")
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for path in groups[index]:
            status = assoc.send_c_store(path)
            acked[index] += int(status.Status == 0x0000)
        assoc.release()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(groups))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, sum(acked)


def make_signing(root: Path, algorithm: str) -> Any:
    """A site CA and signer for the run (unencrypted keys in the run's temporary folder)."""
    from medforensics.gateway.config import SigningConfig
    from medforensics.provenance.certs import generate_site

    site = generate_site(root / "keys", algorithm=algorithm, passphrase=None)
    return SigningConfig(key=site.key, cert=site.certificate, trust=site.ca_certificate)


def bench_receive(
    root: Path, instances: int, associations: int, signing: Any = None, size: int = 64
) -> dict[str, Any]:
    from medforensics.gateway.app import Gateway
    from medforensics.gateway.config import GatewayConfig
    from medforensics.samples import chest_ct_phantom, write_ct_series

    tag = "-signed" if signing is not None else ""
    per = instances // associations
    rng = np.random.default_rng(0)
    groups = [
        write_ct_series(chest_ct_phantom(per, size, rng), root / f"receive{tag}" / f"a{k}")
        for k in range(associations)
    ]
    gateway = Gateway(
        GatewayConfig(
            spool_dir=root / f"spool-receive{tag}",
            port=0,
            quiet_seconds=3600,
            detector="metadata",
            signing=signing,
        )
    )
    host, port = gateway.start()
    try:
        figures: dict[str, Any] = {"associations": associations, "image_size": size}
        if shutil.which("storescu"):
            # senders in processes of their own: the gateway's figure, not the senders' GIL
            start = time.perf_counter()
            senders = [
                subprocess.Popen(
                    ["storescu", "-aet", f"MOD{k:02d}", "-aec", "MEDFORENSICS", "+sd", host,
                     str(port), str(group[0].parent)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for k, group in enumerate(groups)
            ]  # fmt: skip
            failed = sum(sender.wait() != 0 for sender in senders)
            seconds = time.perf_counter() - start
            sent = sum(len(g) for g in groups)
            figures.update(
                sender="DCMTK storescu, one process per association",
                instances=sent,
                failed_senders=failed,
                seconds=round(seconds, 3),
                instances_per_s=round(sent / seconds, 1),
            )
            start = time.perf_counter()
            single = subprocess.run(
                [
                    "storescu",
                    "-aec",
                    "MEDFORENSICS",
                    "+sd",
                    host,
                    str(port),
                    str(groups[0][0].parent),
                ],
                capture_output=True,
            )
            if single.returncode == 0:
                elapsed = time.perf_counter() - start
                figures["one_association_per_s"] = round(len(groups[0]) / elapsed, 1)
        else:
            seconds, acked = send_all(port, groups)
            figures.update(
                sender="pynetdicom threads in the benchmark process",
                instances=acked,
                seconds=round(seconds, 3),
                instances_per_s=round(acked / seconds, 1),
            )
        figures["signed_on_ingest"] = signing is not None
        if signing is not None:
            assert gateway.spool is not None
            from medforensics.gateway.status import read_status

            figures["instances_signed"] = read_status(
                gateway.spool.engine, gateway.spool.root
            ).signed
    finally:
        gateway.stop()
    return figures


def bench_end_to_end(
    root: Path,
    series: int,
    slices: int,
    associations: int,
    detector: str,
    destination: Any,
    reports: bool,
    signing: Any = None,
) -> dict[str, Any]:
    from medforensics.gateway.app import Gateway
    from medforensics.gateway.config import Destination, GatewayConfig
    from medforensics.gateway.tables import GatewayBatch
    from medforensics.samples import chest_ct_phantom, write_ct_series

    tag = "-signed" if signing is not None else ""
    rng = np.random.default_rng(1)
    written = [
        write_ct_series(chest_ct_phantom(slices, 128, rng), root / f"e2e{tag}" / f"s{k:03d}")
        for k in range(series)
    ]
    groups = [[p for s in written[k::associations] for p in s] for k in range(associations)]
    config = GatewayConfig(
        spool_dir=root / f"spool-e2e{tag}",
        port=0,
        quiet_seconds=1.0,
        detector=detector,
        write_reports=reports,
        destination=Destination(destination.ae_title, "127.0.0.1", destination.port),
        signing=signing,
    )
    gateway = Gateway(config)
    _host, port = gateway.start()
    already = getattr(destination, "received", 0)
    try:
        start = time.perf_counter()
        seconds_sending, acked = send_all(port, groups)
        if not gateway.wait_idle(timeout=1800):
            raise RuntimeError("the gateway did not finish in 30 minutes")
        total = time.perf_counter() - start
        assert gateway.spool is not None
        from sqlalchemy import select

        with gateway.spool.engine.connect() as connection:
            rows = connection.execute(
                select(
                    GatewayBatch.last_received_at,
                    GatewayBatch.analysed_at,
                    GatewayBatch.done_at,
                    GatewayBatch.outcome,
                )
            ).all()
        from medforensics.gateway.status import read_status

        status = read_status(gateway.spool.engine, gateway.spool.root)
    finally:
        gateway.stop()
    latency = [done - last for last, _analysed, done, _outcome in rows if done]
    outcomes: dict[str, int] = {}
    for *_times, outcome in rows:
        outcomes[str(outcome)] = outcomes.get(str(outcome), 0) + 1
    return {
        "series": len(rows),
        "slices_per_series": slices,
        "image_size": 128,
        "associations": associations,
        "detector": detector,
        "reports": reports,
        "instances_acknowledged": acked,
        "seconds_sending": round(seconds_sending, 2),
        "seconds_total": round(total, 2),
        "series_per_min": round(60 * len(rows) / total, 1),
        "instances_per_s_end_to_end": round(acked / total, 1),
        "latency_after_quiet_s_median": round(statistics.median(latency) - 1.0, 2)
        if latency
        else None,
        "objects_at_destination": getattr(destination, "received", 0) - already,
        "outcomes": outcomes,
        "signing": signing is not None,
        "signed": status.signed,
        "verified_before_forwarding": status.verified,
        "broken_signatures": status.broken,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Smaller runs (under a minute).")
    parser.add_argument("--destination", choices=("memory", "orthanc"), default="memory")
    parser.add_argument("--detector", default="classical")
    parser.add_argument("--associations", type=int, default=8)
    parser.add_argument("--no-reports", action="store_true", help="Analyse only, attach nothing.")
    parser.add_argument(
        "--sign", action="store_true", help="Also run both stages with signing and verifying."
    )
    parser.add_argument("--sign-algorithm", choices=("rsa", "ecdsa"), default="rsa")
    parser.add_argument(
        "--receive-size", type=int, default=64, help="Rows and columns of the received images."
    )
    parser.add_argument("--out", type=Path, default=HERE / "out" / "bench_gateway.json")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
    instances = 400 if args.quick else 1600
    series = 8 if args.quick else 24
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        root = Path(tmp)
        destination: Any = (
            OrthancDestination(root / "orthanc")
            if args.destination == "orthanc"
            else MemoryDestination()
        )
        signing = make_signing(root, args.sign_algorithm) if args.sign else None
        runs = [None, signing] if signing is not None else [None]
        receive: dict[str, Any] = {}
        end_to_end: dict[str, Any] = {}
        try:
            for key, config in zip(("plain", "signed"), runs, strict=False):
                receive[key] = bench_receive(
                    root, instances, args.associations, config, args.receive_size
                )
            for key, config in zip(("plain", "signed"), runs, strict=False):
                end_to_end[key] = bench_end_to_end(
                    root, series, 16, args.associations, args.detector, destination,
                    not args.no_reports, config,
                )  # fmt: skip
        finally:
            destination.stop()
    report = {
        "benchmark": "gateway",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "destination": args.destination,
        "receive": receive["plain"],
        "end_to_end": end_to_end["plain"],
    }
    if signing is not None:
        report["signing"] = {
            "algorithm": args.sign_algorithm,
            "receive": receive["signed"],
            "end_to_end": end_to_end["signed"],
        }
    for key in receive:
        print_figures(key, receive[key], end_to_end[key], args.destination)
    if signing is not None:
        plain, signed = receive["plain"], receive["signed"]
        print(
            f"signing on ingest ({args.sign_algorithm}): {plain['instances_per_s']} -> "
            f"{signed['instances_per_s']} instances/s received "
            f"({signed['instances_per_s'] / plain['instances_per_s']:.0%})"
        )
        if "one_association_per_s" in plain and "one_association_per_s" in signed:
            print(
                f"  one association: {plain['one_association_per_s']} -> "
                f"{signed['one_association_per_s']} instances/s"
            )
        a, b = end_to_end["plain"], end_to_end["signed"]
        print(
            f"  end to end (sign + verify before forwarding): {a['series_per_min']} -> "
            f"{b['series_per_min']} series/min"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def print_figures(key: str, receive: dict[str, Any], e2e: dict[str, Any], destination: str) -> None:
    label = " (signing on ingest, verifying before forwarding)" if key == "signed" else ""
    print(f"--- {key}{label}")
    print(
        f"gateway receive: {receive['instances']} instances of "
        f"{receive['image_size']}x{receive['image_size']} over "
        f"{receive['associations']} associations"
    )
    print(f"  {receive['instances_per_s']:8.1f} instances/s acknowledged (fsynced + indexed)")
    print(f"  senders: {receive['sender']}")
    if "one_association_per_s" in receive:
        print(f"  {receive['one_association_per_s']:8.1f} instances/s on one association")
    print(
        f"gateway end to end: {e2e['series']} series of 128x128x{e2e['slices_per_series']}, "
        f"detector {e2e['detector']}, reports {'on' if e2e['reports'] else 'off'}, "
        f"to {destination}"
    )
    print(
        f"  {e2e['series_per_min']:8.1f} series/min analysed and forwarded "
        f"({e2e['seconds_total']} s)"
    )
    print(f"  {e2e['instances_per_s_end_to_end']:8.1f} instances/s end to end")
    print(f"  {e2e['latency_after_quiet_s_median']} s median from quiet period to forwarded")
    print(f"  outcomes: {e2e['outcomes']}")


if __name__ == "__main__":
    sys.exit(main())
