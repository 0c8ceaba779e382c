"""SIP over TLS end to end: a trunk calling in on tls://, a next hop reached over TLS (sips:),
and mutual TLS (a trunk without a certificate is refused). Certificates are made here: a test
CA, sipguard's certificate and a trunk's client certificate (Python's ssl module as the peer:
the packaged sipp has no TLS)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sipclient import MiniUas, UdpClient, free_port, invite, parse_msg

from sipguard.sip import StreamFramer
from tests.conftest import base_config

pytestmark = pytest.mark.integration


class Pki:
    """A CA, a server certificate for 127.0.0.1 / sipguard.test, a client certificate."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        now = dt.datetime.now(dt.UTC)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipguard test CA")])
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(self.ca_key, hashes.SHA256()))
        (folder / "ca.pem").write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        self.issue("server", ExtendedKeyUsageOID.SERVER_AUTH)
        self.issue("client", ExtendedKeyUsageOID.CLIENT_AUTH)

    def issue(self, who: str, usage: x509.ObjectIdentifier) -> None:
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{who}.sipguard.test")]))
                .issuer_name(self.ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("sipguard.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        (self.folder / f"{who}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.folder / f"{who}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def path(self, name: str) -> str:
        return str(self.folder / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("tls-pki"))


class TlsClient:
    """A trunk calling in over TLS: one connection, messages framed by Content-Length."""

    def __init__(self, addr: tuple[str, int], pki: Pki, with_cert: bool = False, source: str = "127.0.0.1") -> None:
        ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
        ctx.check_hostname = False
        if with_cert:
            ctx.load_cert_chain(pki.path("client.pem"), pki.path("client.key"))
        raw = socket.create_connection(addr, timeout=5, source_address=(source, 0))
        self.sock = ctx.wrap_socket(raw)
        self.framer = StreamFramer(65535)
        self.pending: list[bytes] = []

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> Any:
        while not self.pending:
            chunk = self.sock.recv(65535)
            if not chunk:
                return None
            self.pending += self.framer.feed(chunk)
        return parse_msg(self.pending.pop(0))

    def close(self) -> None:
        self.sock.close()


class TlsUas:
    """A next hop over TLS: answers each INVITE with 200, keeps what it received."""

    def __init__(self, pki: Pki) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[Any] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.listener.accept()
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except OSError:
            return
        framer = StreamFramer(65535)
        while True:
            try:
                chunk = conn.recv(65535)
            except OSError:
                return
            if not chunk:
                return
            for data in framer.feed(chunk):
                msg = parse_msg(data)
                self.received.append(msg)
                if msg.method == "INVITE":
                    lines = ["SIP/2.0 200 OK", *[f"Via: {v}" for v in msg.all("Via")],
                             f"From: {msg.header('From')}", f"To: {msg.header('To')};tag=tlsuas",
                             f"Call-ID: {msg.header('Call-ID')}", f"CSeq: {msg.header('CSeq')}",
                             f"Contact: <sips:uas@127.0.0.1:{self.port}>", "Content-Length: 0"]
                    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def close(self) -> None:
        self.listener.close()


def _final(client: TlsClient) -> list[Any]:
    got = []
    while True:
        msg = client.recv()
        if msg is None:
            return got
        got.append(msg)
        if (msg.status or 0) >= 200:
            return got


@pytest.fixture
def tls_sipguard(sipguard: Any, pki: Pki) -> Iterator[Any]:
    """A sipguard listening on UDP, TCP and TLS (``.tls_addr``), with ``next_hop``."""
    def start(next_hop: str, **tls: Any) -> Any:
        config = base_config(0, tls={"cert": pki.path("server.pem"), "key": pki.path("server.key"),
                                     "ca": pki.path("ca.pem"), **tls})
        config["next_hop"] = next_hop
        sg = sipguard(config, run=False)
        sg.tls_addr = ("127.0.0.1", free_port())
        sg.config["listen"].append(f"tls://127.0.0.1:{sg.tls_addr[1]}")
        sg.path.write_text(yaml.safe_dump(sg.config, sort_keys=False))
        return sg.start()
    yield start


def test_a_trunk_calls_in_over_tls(tls_sipguard: Any, pki: Pki) -> None:
    uas = MiniUas()
    try:
        sg = tls_sipguard(uas.uri)
        client = TlsClient(sg.tls_addr, pki)
        try:
            client.send(invite(sg.tls_addr, client.local, transport="TLS"))
            got = _final(client)
        finally:
            client.close()
        assert [m.status for m in got] == [100, 200]
        forwarded = uas.wait_invites(1)[0]
        vias = forwarded.all("Via")
        assert vias[0].startswith("SIP/2.0/UDP ")             # on to the UDP next hop
        assert "SIP/2.0/TLS 127.0.0.1" in vias[1] and "received=" not in vias[1]
    finally:
        uas.close()


def test_no_open_relay_over_tls(tls_sipguard: Any, pki: Pki) -> None:
    """A MESSAGE naming another host (a local Redis port) over TLS: from a stranger (127.0.0.2)
    refused (403, or the connection closed at accept); from the trunk, to the next hop only."""
    uas = MiniUas()
    target = "sip:x@127.0.0.1:6379;transport=tcp"

    def message(local: tuple[str, int]) -> bytes:
        body = "SET key value\r\n"
        return (f"MESSAGE {target} SIP/2.0\r\nVia: SIP/2.0/TLS {local[0]}:{local[1]};branch=z9hG4bK-m1\r\n"
                "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: tls-relay\r\n"
                f"CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()
    try:
        sg = tls_sipguard(uas.uri)
        try:
            stranger = TlsClient(sg.tls_addr, pki, source="127.0.0.2")
            stranger.send(message(stranger.local))
            got = stranger.recv()
            stranger.close()
        except (OSError, ssl.SSLError):
            got = None
        assert got is None or got.status == 403
        client = TlsClient(sg.tls_addr, pki)
        try:
            client.send(message(client.local))
            end = time.monotonic() + 5
            while time.monotonic() < end and not uas.received:
                time.sleep(0.02)
        finally:
            client.close()
        assert [m.first.split(" ")[:2] for m in uas.received] == [["MESSAGE", target]]
    finally:
        uas.close()


def test_next_hop_over_tls(tls_sipguard: Any, pki: Pki) -> None:
    uas = TlsUas(pki)
    try:
        sg = tls_sipguard(f"sips:127.0.0.1:{uas.port}", server_name="sipguard.test")
        client = UdpClient()
        try:
            final, _ = client.call(sg.addr)
        finally:
            client.close()
        assert final is not None and final.status == 200
        via = uas.received[0].all("Via")[0]
        assert via.startswith(f"SIP/2.0/TLS {sg.tls_addr[0]}:{sg.tls_addr[1]};branch=z9hG4bK")
    finally:
        uas.close()


def test_mutual_tls_refuses_a_trunk_without_a_certificate(tls_sipguard: Any, pki: Pki) -> None:
    uas = MiniUas()
    try:
        sg = tls_sipguard(uas.uri, verify_client=True)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            anonymous = TlsClient(sg.tls_addr, pki)
            anonymous.send(invite(sg.tls_addr, anonymous.local, transport="TLS"))
            assert anonymous.recv() is None              # TLS 1.3: refused after the handshake
            raise ConnectionError("closed by sipguard")
        client = TlsClient(sg.tls_addr, pki, with_cert=True)
        try:
            client.send(invite(sg.tls_addr, client.local, transport="TLS"))
            assert [m.status for m in _final(client)] == [100, 200]
        finally:
            client.close()
    finally:
        uas.close()


def test_sighup_takes_renewed_certificates_for_new_connections(sipguard: Any, pki: Pki, tmp_path: Path) -> None:
    """Certificates renewed in place (same paths, as certbot does) and SIGHUP: the next TLS
    connection gets the new certificate, without a restart and without the client sending SNI."""
    import shutil
    import signal

    from tests.e2e_helpers import wait_for

    for name in ("server.pem", "server.key"):
        shutil.copy(pki.path(name), tmp_path / name)
    uas = MiniUas()
    try:
        config = base_config(uas.port, tls={"cert": str(tmp_path / "server.pem"), "key": str(tmp_path / "server.key")})
        sg = sipguard(config, run=False)
        tls_addr = ("127.0.0.1", free_port())
        sg.config["listen"].append(f"tls://127.0.0.1:{tls_addr[1]}")
        sg.path.write_text(yaml.safe_dump(sg.config, sort_keys=False))
        sg.start()

        def subject() -> str:
            client = TlsClient(tls_addr, pki)
            try:
                cert = x509.load_der_x509_certificate(client.sock.getpeercert(binary_form=True))
                return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
            finally:
                client.close()

        assert subject() == "server.sipguard.test"
        pki.issue("renewed", ExtendedKeyUsageOID.SERVER_AUTH)
        shutil.copy(pki.path("renewed.pem"), tmp_path / "server.pem")
        shutil.copy(pki.path("renewed.key"), tmp_path / "server.key")
        sg.signal(signal.SIGHUP)
        assert wait_for(lambda: "TLS certificates reloaded" in sg.logs()), sg.logs()
        assert subject() == "renewed.sipguard.test"
    finally:
        uas.close()
