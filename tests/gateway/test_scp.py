"""The Storage SCP over real TCP: AE checks, TLS, and hostile or broken input.

Each bad input gets the answer DICOM prescribes (a refused context, an A-ABORT, or a C-STORE
failure status) and the gateway carries on: a normal C-ECHO works afterwards every time.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medforensics.gateway.app import Gateway
from medforensics.gateway.config import GatewayConfig, TlsConfig
from tests.gateway import GATEWAY_AE, associate, echo, wait_for, write_phantom_series

pytest.importorskip("pynetdicom")


def start(tmp_path: Path, **settings: object) -> Gateway:
    config = GatewayConfig(
        spool_dir=tmp_path / "spool",
        port=0,
        quiet_seconds=300,  # nothing leaves the spool during these tests
        detector="metadata",
        max_pdu=16384,
        **settings,  # type: ignore[arg-type]
    )
    gateway = Gateway(config)
    gateway.start()
    return gateway


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    running = start(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def series(tmp_path: Path) -> list[Path]:
    return write_phantom_series(tmp_path / "series", slices=2, size=64)


def port_of(gateway: Gateway) -> int:
    assert gateway.address is not None
    return gateway.address[1]


def spooled(gateway: Gateway) -> list[Path]:
    assert gateway.spool is not None
    return sorted((gateway.spool.root / "incoming").rglob("*.dcm"))


def test_echo_and_store(gateway: Gateway, series: list[Path]) -> None:
    port = port_of(gateway)
    assert echo(port) == 0x0000
    assoc = associate(port)
    statuses = [int(assoc.send_c_store(path).Status) for path in series]
    assoc.release()
    assert statuses == [0x0000, 0x0000]
    assert {p.name for p in spooled(gateway)} == {
        f"{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in series
    }
    assert gateway.counters.received == 2


def test_wrong_called_or_calling_ae_is_rejected(tmp_path: Path) -> None:
    gateway = start(tmp_path, allowed_calling_aes=("CT01",))
    try:
        port = port_of(gateway)
        assert echo(port, calling="INTRUDER") is None
        assert echo(port, calling="CT01", called="SOMEONE") is None
        assert echo(port, calling="CT01") == 0x0000
    finally:
        gateway.stop()


def test_garbage_bytes_are_dropped(gateway: Gateway) -> None:
    port = port_of(gateway)
    for garbage in (b"\xde\xad\xbe\xef" * 64, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x01\x00"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(garbage)
            raw.shutdown(socket.SHUT_WR)
            reply = raw.recv(64)
        # nothing, or an A-ABORT (PDU type 0x07): never an association
        assert reply == b"" or reply[0] == 0x07
        assert echo(port) == 0x0000


def test_truncated_data_sets_are_refused(
    gateway: Gateway, tmp_path: Path, series: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynetdicom import _config

    port = port_of(gateway)
    whole = series[0].read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(whole[: len(whole) - 1000])  # the file ends inside PixelData
    assoc = associate(port, contexts=[(CTImageStorage, [ExplicitVRLittleEndian])])
    # sent as read by pydicom (lenient): a well-formed data set whose pixels are too short
    short = assoc.send_c_store(cut)
    # sent byte for byte: the PixelData element announces more bytes than follow
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    raw = assoc.send_c_store(cut)
    assoc.release()
    for response in (short, raw):
        assert int(response.Status) == 0xC210
        assert "truncated" in str(response.ErrorComment)
    assert spooled(gateway) == []
    assert echo(port) == 0x0000


def test_data_set_without_its_uids_does_not_match(gateway: Gateway, series: list[Path]) -> None:
    ds = pydicom.dcmread(series[0])
    del ds.StudyInstanceUID
    assoc = associate(port_of(gateway))
    response = assoc.send_c_store(ds)
    assoc.release()
    assert int(response.Status) == 0xA900
    assert "StudyInstanceUID" in str(response.ErrorComment)
    assert spooled(gateway) == []


def test_oversized_pdu_aborts_the_association(gateway: Gateway, series: list[Path]) -> None:
    port = port_of(gateway)
    assoc = associate(port)
    assert assoc.acceptor.maximum_length == 16384
    # a P-DATA-TF PDU announcing 64 MiB, far above the 16 KiB the gateway agreed to
    header = struct.pack(">BBL", 0x04, 0, 64 * 1024 * 1024)
    assoc.dul.socket.socket.sendall(header + b"\x00" * 1024)
    assert wait_for(lambda: assoc.is_aborted or not assoc.is_established, timeout=10)
    assert spooled(gateway) == []
    assert echo(port) == 0x0000


def test_absurd_association_request_is_aborted(gateway: Gateway) -> None:
    port = port_of(gateway)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0) + b"\x00" * 512)
        start = time.monotonic()
        reply = raw.recv(64)
    assert reply[:1] in (b"", b"\x07") and time.monotonic() - start < 5
    assert echo(port) == 0x0000


def test_unknown_sop_class_is_refused_at_negotiation(gateway: Gateway, series: list[Path]) -> None:
    unknown = "1.2.826.0.1.3680043.9.9999.1.1"
    assoc = associate(port_of(gateway), contexts=[unknown, CTImageStorage])
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    rejected = {str(cx.abstract_syntax) for cx in assoc.rejected_contexts}
    assert unknown in rejected and unknown not in accepted
    ds = pydicom.dcmread(series[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = unknown
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    with pytest.raises(ValueError, match="presentation context"):
        assoc.send_c_store(ds)
    # the known class on the same association still works
    assert int(assoc.send_c_store(series[0]).Status) == 0x0000
    assoc.release()
    assert echo(port_of(gateway)) == 0x0000


def test_full_spool_answers_out_of_resources(tmp_path: Path, series: list[Path]) -> None:
    gateway = start(tmp_path, min_free_bytes=1 << 62)
    try:
        assoc = associate(port_of(gateway))
        response = assoc.send_c_store(series[0])
        assoc.release()
        assert int(response.Status) == 0xA700
        assert gateway.spool is not None
        assert "almost full" in str(response.ErrorComment)
    finally:
        gateway.stop()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1, valid for a day."""
    import datetime as dt
    import ipaddress

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert, key_path = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_path


def test_tls_associations(tmp_path: Path, series: list[Path]) -> None:
    cert, key = make_certificate(tmp_path)
    gateway = start(tmp_path, tls=TlsConfig(cert=cert, key=key))
    try:
        port = port_of(gateway)
        client = ssl.create_default_context(cafile=str(cert))
        assert echo(port, tls_args=(client, "localhost")) == 0x0000
        assoc = associate(port, tls_args=(client, "localhost"))
        assert int(assoc.send_c_store(series[0]).Status) == 0x0000
        assoc.release()
        # a plain association to a TLS port gets nowhere
        assert echo(port) is None
    finally:
        gateway.stop()


def test_called_ae_is_the_configured_one(gateway: Gateway) -> None:
    assert echo(port_of(gateway), called=GATEWAY_AE) == 0x0000
