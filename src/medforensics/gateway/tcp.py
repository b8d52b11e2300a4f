"""TCP details that decide whether DIMSE runs at 20 or 200 instances per second, and PDU limits.

DIMSE writes a command and its data set as separate small messages. With Nagle's algorithm on
one side and delayed ACKs on the other, every C-STORE waits ~40 ms for an ACK (measured: 20
instances/s between pynetdicom peers, 11/s from storescu to Orthanc, against 110-210/s without
the stall). Our sockets therefore send without Nagle (``TCP_NODELAY``) and acknowledge at once
(``TCP_QUICKACK``, Linux), which also rescues peers that leave Nagle on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import struct
from typing import Any

LOGGER = logging.getLogger("medforensics.gateway.tcp")

#: any PDU other than P-DATA (association requests...) larger than this is refused
MAX_CONTROL_PDU = 1024 * 1024
P_DATA_TF = 0x04
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def no_delay(sock: Any) -> None:
    """Send small writes at once (Nagle's algorithm off)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def quick_ack(sock: Any) -> None:
    """Acknowledge received data at once; the kernel clears the flag, so set it after reads."""
    if _QUICKACK is not None and sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


@functools.cache
def quick_ack_socket_class() -> type:
    """A pynetdicom AssociationSocket that acknowledges every read at once."""
    from pynetdicom.transport import AssociationSocket

    class QuickAckSocket(AssociationSocket):
        def recv(self, nr_bytes: int) -> bytearray:
            data = super().recv(nr_bytes)
            quick_ack(self.socket)
            return data

    return QuickAckSocket


@functools.cache
def guarded_socket_class() -> type:
    """A quick-ACK AssociationSocket that refuses PDUs larger than the SCP agreed to receive.

    pynetdicom reads whatever length a PDU header announces; a peer announcing 4 GiB would make
    it buffer until memory runs out. This socket looks at each PDU header as it is read and, for
    an oversized one, queues Evt19 (invalid PDU: the state machine sends A-ABORT and closes)
    instead of reading the body. ``max_pdata`` is set on each instance.
    """

    class GuardedSocket(quick_ack_socket_class()):  # type: ignore[misc]
        max_pdata = 0
        _refuse_next = False

        def recv(self, nr_bytes: int) -> bytearray:
            if self._refuse_next:
                self._refuse_next = False
                return bytearray()
            data: bytearray = super().recv(nr_bytes)
            if nr_bytes == 6 and len(data) == 6:
                pdu_type, _, length = struct.unpack(">BBL", bytes(data))
                limit = self.max_pdata if pdu_type == P_DATA_TF else MAX_CONTROL_PDU
                if length > max(limit, 0):
                    LOGGER.warning(
                        "aborting association: PDU type 0x%02X of %d bytes exceeds %d",
                        pdu_type,
                        length,
                        limit,
                    )
                    self._refuse_next = True
                    self.event_queue.put("Evt19")
            return data

    return GuardedSocket


def tune_established(assoc: Any) -> None:
    """Nagle off and quick ACKs on an association pynetdicom made as requestor."""
    from pynetdicom.transport import AssociationSocket

    sock = assoc.dul.socket
    if sock is None:
        return
    no_delay(sock.socket)
    if type(sock) is AssociationSocket:
        # swap the class in place; pynetdicom builds the socket itself
        sock.__class__ = quick_ack_socket_class()
