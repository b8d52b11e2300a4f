"""Forwarding to the destination PACS: one C-STORE SCU association per batch.

Files are sent as stored (no decoding) when the destination accepts their transfer syntax; a
compressed file it does not accept is decompressed and sent in Explicit VR Little Endian.
Each instance's status is reported to the caller as soon as it is known, so that the spool
records it before the next one is sent: a crash can only re-send the one instance in flight,
and destinations de-duplicate by SOPInstanceUID.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medforensics.gateway.config import Destination, TlsConfig
from medforensics.gateway.tcp import tune_established
from medforensics.utils.optional import require

LOGGER = logging.getLogger("medforensics.gateway.forward")

#: pynetdicom proposes at most 128 presentation contexts per association
MAX_CONTEXTS = 128
#: the destination does not support the SOP class (no accepted presentation context)
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122


class ForwardError(Exception):
    """The destination could not be reached or dropped the association: try again later."""


@dataclass(frozen=True)
class Outgoing:
    """One file to forward, with the id the caller records its status under."""

    key: int
    path: Path


def is_success(status: int) -> bool:
    """Success and the storage warnings (coercion, elements discarded) count as stored."""
    return status == 0x0000 or 0xB000 <= status <= 0xB0FF


def is_transient(status: int) -> bool:
    """Failures worth retrying later: out of resources, processing failure."""
    return 0xA700 <= status <= 0xA7FF or status in (0x0110, 0x0213)


def client_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca) if tls.ca else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
    return context


def _meta(items: Sequence[Outgoing]) -> dict[int, tuple[str, str]]:
    """(SOP class, transfer syntax) of each item, from its file meta information."""
    found = {}
    for item in items:
        meta = read_file_meta_info(item.path)
        found[item.key] = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
    return found


def keep_stray_responses(assoc: Any) -> None:
    """Hand a response that pynetdicom's reactor thread took back to the request waiting for it.

    Before each request pynetdicom pauses the association's reactor thread through a plain
    flag; under CPU load the reactor can pass its checkpoint just before the pause, find the
    response already queued and drop it as an unexpected message ("Received unexpected C-STORE
    service message"). The request then waits for nothing, times out and aborts although the
    destination stored the instance, and the retry stores it a second time. With this, a
    response the reactor sees while a request is outstanding (its checkpoint cleared) goes back
    on the queue the request reads.
    """
    serve = assoc._serve_request

    def _serve_request(msg: Any, context_id: int) -> None:
        if not msg.is_valid_request and not assoc._reactor_checkpoint.is_set():
            assoc.dimse.msg_queue.put((context_id, msg))
            return
        serve(msg, context_id)

    assoc._serve_request = _serve_request


class Forwarder:
    """Sends files to one destination."""

    def __init__(
        self,
        destination: Destination,
        *,
        calling_ae: str,
        max_pdu: int = 65536,
        timeout_s: float = 30.0,
    ) -> None:
        self.destination = destination
        self.calling_ae = calling_ae
        self.max_pdu = max_pdu
        self.timeout_s = timeout_s

    def __str__(self) -> str:
        d = self.destination
        return f"{d.ae_title}@{d.host}:{d.port}"

    def _associate(self, by_class: dict[str, set[str]]) -> Any:
        pynetdicom = require("pynetdicom", "forwarding to the PACS")
        ae = pynetdicom.AE(ae_title=self.calling_ae)
        ae.maximum_pdu_size = self.max_pdu
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = self.timeout_s
        ae.connection_timeout = self.timeout_s
        plain = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        for sop_class, syntaxes in by_class.items():
            ae.add_requested_context(sop_class, plain)
            stored = sorted(s for s in syntaxes if UID(s) not in plain)
            if stored:
                ae.add_requested_context(sop_class, stored)
        tls_args = None
        if self.destination.tls is not None:
            tls_args = (client_ssl_context(self.destination.tls), self.destination.host)
        assoc = ae.associate(
            self.destination.host,
            self.destination.port,
            ae_title=self.destination.ae_title,
            tls_args=tls_args,
        )
        if assoc.is_established:
            tune_established(assoc)
            keep_stray_responses(assoc)
        if not assoc.is_established:
            raise ForwardError(
                f"destination {self} did not accept an association "
                f"({'rejected' if assoc.is_rejected else 'no answer or aborted'})"
            )
        return assoc

    def send(self, items: Sequence[Outgoing], on_status: Callable[[Outgoing, int], None]) -> None:
        """Send ``items``; ``on_status`` gets each one's final status as soon as it is known.

        Raises:
            ForwardError: the destination is unreachable or the association broke; the items
                without a status were not sent.
        """
        meta = _meta(items)
        by_class: dict[str, set[str]] = {}
        for sop_class, syntax in meta.values():
            by_class.setdefault(sop_class, set()).add(syntax)
        classes = sorted(by_class)
        # two contexts per SOP class: chunk so that one association never proposes too many
        per_association = MAX_CONTEXTS // 2
        for start in range(0, len(classes), per_association):
            chunk = set(classes[start : start + per_association])
            subset = [item for item in items if meta[item.key][0] in chunk]
            self._send_chunk(subset, {c: by_class[c] for c in chunk}, on_status)

    def _send_chunk(
        self,
        items: Sequence[Outgoing],
        by_class: dict[str, set[str]],
        on_status: Callable[[Outgoing, int], None],
    ) -> None:
        assoc = self._associate(by_class)
        try:
            for item in items:
                status = self._store(assoc, item)
                if status is None:
                    raise ForwardError(
                        f"destination {self} stopped answering while storing {item.path.name}"
                    )
                on_status(item, status)
        finally:
            if assoc.is_established:
                assoc.release()

    def _store(self, assoc: Any, item: Outgoing) -> int | None:
        try:
            response = assoc.send_c_store(item.path)
        except ValueError:
            # no accepted context for the file's transfer syntax (or its SOP class at all)
            response = self._store_decoded(assoc, item)
            if response is None:
                return STATUS_SOP_CLASS_NOT_SUPPORTED
        if response is None or "Status" not in response:
            return None
        return int(response.Status)

    def _store_decoded(self, assoc: Any, item: Outgoing) -> Any:
        import pydicom

        dataset = pydicom.dcmread(item.path)
        if dataset.file_meta.TransferSyntaxUID.is_compressed:
            dataset.decompress()
        try:
            return assoc.send_c_store(dataset)
        except ValueError:
            LOGGER.warning("destination %s accepts no context for %s", self, item.path.name)
            return None
