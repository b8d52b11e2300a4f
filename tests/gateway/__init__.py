"""Helpers for the gateway tests: real peers (Orthanc, a counting SCP, SCUs), phantom series.

Every peer binds loopback ports picked at run time and keeps its state in the test's tmp_path,
so tests can run side by side (pytest-xdist) and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = PLUGIN_DIR / "libOrthancDicomWeb.so"
PYTHON_PLUGIN = PLUGIN_DIR / "libOrthancPython.so"
GATEWAY_AE = "MEDFORENSICS"


#: what the test SCUs propose unless told otherwise
DEFAULT_CONTEXTS = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.1.1",  # Verification
)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: every probe stays bound until all are chosen
    (two probes in turn can get the same port, and Orthanc then fails to bind its second)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def have_orthanc(*plugins: Path) -> bool:
    return Path(ORTHANC).exists() and all(p.exists() for p in plugins)


# -- DICOM peers ---------------------------------------------------------------------------------


def associate(
    port: int,
    *,
    called: str = GATEWAY_AE,
    calling: str = "MODALITY",
    contexts: Any = None,
    timeout: float = 20,
    **kwargs: Any,
) -> Any:
    """An association from a pynetdicom SCU, Nagle off (as a well-behaved modality would)."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for context in contexts if contexts is not None else DEFAULT_CONTEXTS:
        # a context is an abstract syntax, or (abstract syntax, [transfer syntaxes])
        if isinstance(context, tuple):
            ae.add_requested_context(*context)
        else:
            ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, **kwargs)
    if assoc.is_established and assoc.dul.socket is not None:
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return assoc


def echo(port: int, **kwargs: Any) -> int | None:
    """C-ECHO status, or None when no association could be made."""
    from pynetdicom import sop_class

    assoc = associate(port, contexts=[sop_class.Verification], **kwargs)
    if not assoc.is_established:
        return None
    try:
        response = assoc.send_c_echo()
        return int(response.Status) if "Status" in response else None
    finally:
        assoc.release()


@dataclass
class CountingSCP:
    """A destination PACS in the test process: counts every C-STORE by SOPInstanceUID.

    With ``save_dir``, each instance stored is also written there as a DICOM file, exactly as
    it was sent (``<SOPInstanceUID>.dcm``), for checks that need the bytes (signatures).
    """

    ae_title: str = "DEST"
    status: int = 0x0000
    received: list[str] = field(default_factory=list)
    datasets: list[Any] = field(default_factory=list)
    port: int = 0
    save_dir: Path | None = None
    _server: Any = None

    def start(self) -> CountingSCP:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

        ae = AE(ae_title=self.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)

        def on_store(event: Any) -> int:
            if self.status == 0x0000:
                ds = event.dataset
                self.received.append(str(ds.SOPInstanceUID))
                self.datasets.append(ds)
                if self.save_dir is not None:
                    self.save_dir.mkdir(parents=True, exist_ok=True)
                    target = self.save_dir / f"{ds.SOPInstanceUID}.dcm"
                    target.write_bytes(event.encoded_dataset(include_meta=True))
            return self.status

        self._server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
        )
        self.port = int(self._server.server_address[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


# -- Orthanc ------------------------------------------------------------------------------------


class Orthanc:
    """A real Orthanc on loopback ports with its own storage, started and stopped by PID."""

    def __init__(
        self,
        root: Path,
        *,
        plugins: Sequence[Path] = (DICOMWEB_PLUGIN,),
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.http_port, self.dicom_port = free_ports(2)
        self.ae_title = "ORTHANC"
        self.log = root / "orthanc.log"
        config = {
            "Name": "medforensics-test",
            "StorageDirectory": str(root / "db"),
            "IndexDirectory": str(root / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "Plugins": [str(p) for p in plugins],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 60,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 4,
            **(extra or {}),
        }
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> Orthanc:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [ORTHANC, str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start:\n{self.log_text()[-3000:]}")
            with contextlib.suppress(OSError):
                self.get("/system")
                return self
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not answer in {timeout} s:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # its storage is a temporary folder: a second of grace, then no more waiting
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=20) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any, content_type: str = "application/json") -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method="POST", headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
        return json.loads(text) if text else None

    def upload(self, paths: Sequence[Path]) -> None:
        for path in paths:
            self.post("/instances", path.read_bytes(), "application/dicom")

    def sop_instance_uids(self) -> list[str]:
        """SOPInstanceUID of every stored instance (a list: duplicates would show)."""
        found = self.post("/tools/find", {"Level": "Instance", "Query": {}, "Expand": True})
        return [item["MainDicomTags"]["SOPInstanceUID"] for item in found]

    def qido_series(self, study_uid: str) -> list[dict[str, Any]]:
        return self.get(
            f"/dicom-web/studies/{study_uid}/series?includefield=0008103E&includefield=00080070"
        )


def qido_value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


# -- HTTP peers ---------------------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request; the server's ``reply(method, path, body)`` answers it with a JSON
    value, or a ``(status, content type, bytes)`` tuple."""

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server: Any = self.server
        server.requests.append((method, self.path, dict(self.headers), body))
        answer = server.reply(method, self.path, body) if server.reply else {"ok": True}
        if isinstance(answer, tuple):
            status, content_type, payload = answer
        else:
            status, content_type, payload = (
                server.status,
                "application/json",
                json.dumps(answer).encode(),
            )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        self._answer("POST")

    def do_GET(self) -> None:
        self._answer("GET")

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def http_recorder(reply: Any = None, status: int = 200) -> Iterator[Any]:
    """A loopback HTTP server that records ``(method, path, headers, body)`` of each request."""
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests = []
    server.reply = reply
    server.status = status
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# -- phantom series -----------------------------------------------------------------------------


def write_phantom_series(
    folder: Path, *, slices: int = 12, size: int = 128, seed: int = 0, study_uid: str | None = None
) -> list[Path]:
    """An authentic chest CT phantom series, one file per slice."""
    from medforensics.samples import chest_ct_phantom, write_ct_series

    hu = chest_ct_phantom(n_slices=slices, size=size, rng=np.random.default_rng(seed))
    return write_ct_series(hu, folder, study_uid=study_uid)


def write_copy_move_series(folder: Path, *, seed: int = 0) -> list[Path]:
    """A phantom series tampered by the simulator's copy-move attack (written as DICOM)."""
    from medforensics.io.loader import load_paths
    from medforensics.io.types import ImageVolume
    from medforensics.tamper.dicom_out import write_tampered
    from medforensics.tamper.registry import simulate

    source = folder.parent / f"{folder.name}-source"
    write_phantom_series(source, seed=seed)
    volume = next(item for item in load_paths([source]) if isinstance(item, ImageVolume))
    tampered = simulate(volume, "copy-move", seed=seed)
    return write_tampered(volume, tampered.pixels, folder)


def wait_for(condition: Any, timeout: float, poll: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return bool(condition())
