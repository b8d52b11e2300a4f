"""The Storage SCP: C-ECHO and C-STORE for every storage SOP class, handlers kept thin.

A C-STORE handler checks that the data set is whole and carries the UIDs it needs, signs it
when the gateway signs on ingest (``signing.IngestSigner``), hands the bytes to the spool and
answers: ``0x0000`` once the spool has made the instance durable
(or already holds those very bytes under that UID), ``0xA700`` when it cannot (disk full, index
unavailable), ``0xC210`` for a data set that cannot be understood (truncated, undecodable),
``0xA900`` when it does not match its request (missing or different UIDs). Analysis never runs
here: the spool's worker queue picks complete series up.

Protection against hostile peers: calling AE titles can be restricted, PDUs larger than the
negotiated maximum (or absurd lengths in any PDU) abort the association before being read, and
unknown SOP classes are refused at negotiation.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from medforensics.gateway.config import GatewayConfig, TlsConfig
from medforensics.gateway.signing import IngestSigner
from medforensics.gateway.spool import Spool, SpoolError
from medforensics.gateway.tcp import guarded_socket_class, no_delay
from medforensics.gateway.validate import (
    STATUS_CANNOT_UNDERSTAND,
    RejectedInstance,
    instance_keys,
    pixel_problem,
    structural_problem,
)
from medforensics.utils.optional import require

if TYPE_CHECKING:
    from pynetdicom.events import Event
    from pynetdicom.transport import ThreadedAssociationServer

LOGGER = logging.getLogger("medforensics.gateway.scp")


def server_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """TLS for the SCP; with a CA bundle, clients must present a certificate signed by it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
    if tls.ca is not None:
        context.load_verify_locations(cafile=str(tls.ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    # ErrorComment is LO: 64 characters at most
    status.ErrorComment = comment[:64]
    return status


def _signed(
    signer: IngestSigner, dataset: Dataset, event: Event, spool: Spool, sop_instance: str
) -> tuple[bytes, str] | None:
    """The instance signed, or None (stored unsigned) when it cannot be signed."""
    try:
        return signer.sign(dataset, event.file_meta)
    except Exception as exc:  # an odd data set must not cost the sender its instance
        message = (
            f"instance {sop_instance} could not be signed and is stored unsigned: "
            f"{type(exc).__name__}: {exc}"
        )
        LOGGER.error(message)
        spool.log_event("error", message)
        return None


def handle_store(
    event: Event,
    spool: Spool,
    on_stored: Callable[[], None] | None,
    signer: IngestSigner | None = None,
) -> int | Dataset:
    """EVT_C_STORE: validate, sign (if asked), spool durably, answer. Never raises."""
    from pynetdicom.dsutils import encode_file_meta

    request = event.request
    calling_ae = str(event.assoc.requestor.ae_title).strip()
    sop_instance = str(getattr(request, "AffectedSOPInstanceUID", "") or "")
    try:
        transfer_syntax = UID(event.context.transfer_syntax)
        stream = event.encoded_dataset(include_meta=False)
        problem = structural_problem(
            stream,
            implicit_vr=transfer_syntax.is_implicit_VR,
            little_endian=transfer_syntax.is_little_endian,
            deflated=transfer_syntax.is_deflated,
        )
        if problem is not None:
            raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, problem)
        try:
            dataset = event.dataset
        except Exception as exc:
            raise RejectedInstance(
                STATUS_CANNOT_UNDERSTAND, f"the data set cannot be decoded ({exc})"
            ) from exc
        keys = instance_keys(dataset, str(request.AffectedSOPClassUID or ""), sop_instance)
        problem = pixel_problem(dataset, transfer_syntax.is_compressed)
        if problem is not None:
            raise RejectedInstance(STATUS_CANNOT_UNDERSTAND, problem)
        received = b"".join((b"\x00" * 128, b"DICM", encode_file_meta(event.file_meta), stream))
        signed = _signed(signer, dataset, event, spool, sop_instance) if signer else None
        spool.store(
            signed[0] if signed else received,
            sop_uid=keys.sop_instance_uid,
            sop_class_uid=keys.sop_class_uid,
            study_uid=keys.study_uid,
            series_uid=keys.series_uid,
            calling_ae=calling_ae,
            received_sha256=hashlib.sha256(received).hexdigest() if signed else None,
            signature_uid=signed[1] if signed else None,
        )
    except RejectedInstance as exc:
        LOGGER.warning(
            "refused instance %s from %s: 0x%04X %s", sop_instance, calling_ae, exc.status, exc
        )
        return _status(exc.status, exc.message)
    except SpoolError as exc:
        LOGGER.error("could not spool instance %s from %s: %s", sop_instance, calling_ae, exc)
        spool.log_event("error", f"instance {sop_instance} from {calling_ae} refused: {exc}")
        return _status(exc.status, exc.message)
    except Exception as exc:  # a handler bug must not cost the sender its instance silently
        LOGGER.exception("internal error storing %s", sop_instance)
        return _status(0xC211, f"internal error: {type(exc).__name__}")
    if on_stored is not None:
        on_stored()
    return 0x0000


def handle_echo(event: Event) -> int:
    return 0x0000


def _log_event(event: Event) -> None:
    requestor = event.assoc.requestor
    LOGGER.info(
        "%s: %s (%s:%s)",
        event.event.name,
        str(requestor.ae_title).strip(),
        requestor.address,
        requestor.port,
    )


def _request_handler_class(max_pdata: int) -> type:
    from pynetdicom.transport import AssociationSocket, RequestHandler

    guarded = guarded_socket_class()

    class GuardedRequestHandler(RequestHandler):
        def _create_association(self) -> Any:
            no_delay(self.request)
            assoc = super()._create_association()
            sock = assoc.dul.socket
            # swap the class in place: building a second socket would signal Evt5 twice
            if type(sock) is AssociationSocket:
                sock.__class__ = guarded
                sock.max_pdata = max_pdata  # type: ignore[attr-defined]
            return assoc

    return GuardedRequestHandler


class StorageSCP:
    """The gateway's listening side; ``start`` returns once it accepts associations."""

    def __init__(
        self,
        config: GatewayConfig,
        spool: Spool,
        on_stored: Callable[[], None] | None = None,
        signer: IngestSigner | None = None,
    ) -> None:
        self.config = config
        self.spool = spool
        self.on_stored = on_stored
        self.signer = signer
        self._server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None

    def _application_entity(self) -> Any:
        pynetdicom = require("pynetdicom", "the DICOM gateway")
        from pynetdicom import _config as netconfig

        if self.config.accept_unknown_sop_classes:
            netconfig.UNRESTRICTED_STORAGE_SERVICE = True
        ae = pynetdicom.AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = self.config.max_pdu
        ae.network_timeout = self.config.network_timeout_s
        ae.acse_timeout = self.config.network_timeout_s
        ae.dimse_timeout = self.config.network_timeout_s
        ae.maximum_associations = 64
        ae.require_called_aet = True
        if self.config.allowed_calling_aes:
            ae.require_calling_aet = list(self.config.allowed_calling_aes)
        syntaxes = list(pynetdicom.ALL_TRANSFER_SYNTAXES)
        for context in pynetdicom.AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context(pynetdicom.sop_class.Verification)
        return ae

    def start(self) -> tuple[str, int]:
        """Listen; returns the bound ``(host, port)`` (useful with port 0)."""
        from pynetdicom import evt
        from pynetdicom.transport import ThreadedAssociationServer

        ae = self._application_entity()
        handlers: list[Any] = [
            (evt.EVT_C_STORE, handle_store, [self.spool, self.on_stored, self.signer]),
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_ACCEPTED, _log_event),
            (evt.EVT_REJECTED, _log_event),
            (evt.EVT_ABORTED, _log_event),
        ]
        context = server_ssl_context(self.config.tls) if self.config.tls else None
        server = ae.make_server(
            (self.config.host, self.config.port),
            ssl_context=context,
            evt_handlers=handlers,
            server_class=ThreadedAssociationServer,
            request_handler=_request_handler_class(self.config.max_pdu),
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="gateway-scp", daemon=True
        )
        self._thread.start()
        host, port = server.server_address[:2]
        LOGGER.info(
            "Storage SCP %s listening on %s:%s%s",
            self.config.ae_title,
            host,
            port,
            " (TLS)" if context else "",
        )
        return str(host), int(port)

    def stop(self) -> None:
        """Stop accepting, abort associations still open (their instances were not acked)."""
        server, self._server = self._server, None
        if server is None:
            return
        # pynetdicom's shutdown also forgets the server, which it never knew: ValueError
        with contextlib.suppress(ValueError):
            server.shutdown()
        for assoc in list(server.active_associations):
            assoc.abort()
        if self._thread is not None:
            self._thread.join(timeout=5)
