"""A small STI PKI and a loopback certificate repository, for tests that verify SHAKEN calls.

Import it from any test (it is plain code; ``pki = module_pki()`` makes a test module's
``pki`` fixture, the PKI valid around ``NOW`` that the verifier tests share):

    from tests.shaken_pki import StiPki, CertServer, sign_passport, shaken_identity

    with CertServer() as server:                       # loopback HTTP (https=True: HTTPS)
        pki = StiPki(tmp_path, now=NOW, crl_url=server.url("/int.crl"))
        pki.publish(server)                            # /good.pem, /revoked.pem, ..., /int.crl
        ident = shaken_identity(pki.key("good"), server.url("/good.pem"),
                                orig="12025550100", dest=["13035550100"], iat=int(NOW))
        cfg = pki.config(server)                       # ShakenConfig trusting pki.anchors
        ...
        server.hits("/good.pem")                       # requests served for that path

StiPki(directory, now, crl_url=None, spc="1234") builds, valid around `now`:
  root (trust anchor, written to pki.anchors), intermediate "int" (signed by root), and leaves
  signed by int: "good" (TNAuthList SPC, explicit tags), "implicit" (SPC with IMPLICIT tags),
  "no_tnauth" (no TNAuthList), "expired" (notAfter < now), "revoked" (listed on int's CRL),
  "rsa" (an RSA leaf: not a SHAKEN credential), and "untrusted" (signed by a root that is not an
  anchor). pki.chain_pem(name) is the x5u body (leaf + intermediate), pki.key(name) its key,
  pki.crl_der the CRL signed by int (revokes "revoked"). All leaves carry crl_url as CDP if given.

sign_passport(key, header, claims) signs arbitrary JSON (tampering tests); shaken_token() and
shaken_identity() build conforming ones. CertServer serves routes set with server.route(path,
body, status=200, headers=None, delay=0.0); https=True makes a self-signed server certificate
whose CA file is server.ca_bundle (pass it as x5u.tls_ca_bundle).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from sipguard.shaken.config import CrlConfig, ShakenConfig, X5uConfig

TNAUTHLIST_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
# The instant the verifier tests verify at, and the numbers their PASSporTs carry
NOW = 1_790_000_000.0
ORIG, DEST = "12025550100", "13035550100"


def tnauthlist_der(spc: str, *, implicit: bool = False) -> bytes:
    """RFC 8226 TNAuthList with one SPC entry, EXPLICIT (A0 16 ..) or IMPLICIT (80 ..) tagged."""
    raw = spc.encode("ascii")
    ia5 = bytes([0x16, len(raw)]) + raw
    entry = bytes([0x80, len(raw)]) + raw if implicit else bytes([0xA0, len(ia5)]) + ia5
    return bytes([0x30, len(entry)]) + entry


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, start: float, end: float, *,
          ca: bool, tnauth: bytes | None = None, crl_url: str | None = None,
          serial: int | None = None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
               .not_valid_before(dt.datetime.fromtimestamp(start, dt.UTC))
               .not_valid_after(dt.datetime.fromtimestamp(end, dt.UTC))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                            encipher_only=False, decipher_only=False), critical=True))
    if tnauth is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(TNAUTHLIST_OID, tnauth), critical=False)
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class StiPki:
    DAY = 86400.0

    def __init__(self, directory: Path | str, now: float | None = None, crl_url: str | None = None,
                 spc: str = "1234") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.now = time.time() if now is None else now
        self.spc = spc
        start, end = self.now - self.DAY, self.now + 365 * self.DAY
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _cert("STI Test Root", self.root_key, "STI Test Root", self.root_key,
                          start - self.DAY, end + self.DAY, ca=True)
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        self.int = _cert("STI Test Intermediate", self.int_key, "STI Test Root", self.root_key,
                         start, end, ca=True)
        other_key = ec.generate_private_key(ec.SECP256R1())
        self.other_root = _cert("Untrusted Root", other_key, "Untrusted Root", other_key, start, end, ca=True)
        self._keys: dict[str, Any] = {}
        self._chains: dict[str, bytes] = {}
        good = tnauthlist_der(spc)
        self._leaf("good", good, start, end, crl_url)
        self._leaf("implicit", tnauthlist_der(spc, implicit=True), start, end, crl_url)
        self._leaf("no_tnauth", None, start, end, crl_url)
        self._leaf("expired", good, self.now - 30 * self.DAY, self.now - self.DAY, crl_url)
        revoked = self._leaf("revoked", good, start, end, crl_url)
        self._leaf("rsa", good, start, end, crl_url, key=rsa.generate_private_key(65537, 2048))
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _cert("SHAKEN untrusted", key, "Untrusted Root", other_key, start, end, ca=False,
                     tnauth=good, crl_url=crl_url)
        self._keys["untrusted"], self._chains["untrusted"] = key, _pem(leaf)
        self.crl_der = self._crl([revoked.serial_number])
        self.anchors = str(self.dir / "sti-roots.pem")
        Path(self.anchors).write_bytes(_pem(self.root))
        for name, body in self._chains.items():
            (self.dir / f"{name}.pem").write_bytes(body)

    def _leaf(self, name: str, tnauth: bytes | None, start: float, end: float, crl_url: str | None,
              key: Any = None) -> x509.Certificate:
        key = key or ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"SHAKEN {self.spc} {name}", key, "STI Test Intermediate", self.int_key, start, end,
                     ca=False, tnauth=tnauth, crl_url=crl_url)
        self._keys[name] = key
        self._chains[name] = _pem(cert) + _pem(self.int)
        return cert

    def _crl(self, serials: list[int]) -> bytes:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.int.subject)
                   .last_update(dt.datetime.fromtimestamp(self.now - 3600, dt.UTC))
                   .next_update(dt.datetime.fromtimestamp(self.now + 7 * self.DAY, dt.UTC)))
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(dt.datetime.fromtimestamp(self.now - 3600, dt.UTC)).build())
        return builder.sign(self.int_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def key(self, name: str) -> Any:
        return self._keys[name]

    def chain_pem(self, name: str) -> bytes:
        return self._chains[name]

    def publish(self, server: CertServer) -> None:
        for name, body in self._chains.items():
            server.route(f"/{name}.pem", body)
        server.route("/int.crl", self.crl_der)

    def config(self, server: CertServer | None = None, **overrides: Any) -> ShakenConfig:
        x5u = X5uConfig(timeout=overrides.pop("timeout", 2.0), allow_http=True, allow_networks=LOOPBACK,
                        tls_ca_bundle=server.ca_bundle if server is not None else None,
                        max_bytes=overrides.pop("max_bytes", 65536),
                        negative_ttl=overrides.pop("negative_ttl", 30.0),
                        stale_grace=overrides.pop("stale_grace", 3600.0))
        crl = overrides.pop("crl", CrlConfig())
        return ShakenConfig(trust_anchors=self.anchors, x5u=x5u, crl=crl, **overrides)


def module_pki(crl_url: str | None = None) -> Any:
    """A module-scoped fixture of a StiPki valid around NOW (``crl_url``: its leaves' CDP);
    assigned to ``pki`` in a test module, it is that module's ``pki`` fixture. pytest is
    imported here only: benchmarks import this module too."""
    import pytest

    @pytest.fixture(scope="module")
    def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
        return StiPki(tmp_path_factory.mktemp("pki"), now=NOW, crl_url=crl_url)

    return pki


# -- PASSporT signing -------------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_passport(key: ec.EllipticCurvePrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """header.payload.signature with ES256 over exactly the two encoded segments."""
    signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64url(json.dumps(claims, separators=(",", ":")).encode())
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def shaken_token(key: Any, x5u: str, *, orig: str, dest: list[str], iat: int, attest: str = "A",
                 origid: str | None = None, ppt: str = "shaken", **extra: Any) -> str:
    header = {"alg": "ES256", "ppt": ppt, "typ": "passport", "x5u": x5u}
    claims: dict[str, Any] = {"attest": attest, "dest": {"tn": dest}, "iat": iat, "orig": {"tn": orig},
                              "origid": origid or str(uuid.uuid4())}
    claims.update(extra)
    return sign_passport(key, header, claims)


def identity_header(token: str, x5u: str, ppt: str = "shaken", alg: str = "ES256") -> str:
    return f"{token};info=<{x5u}>;alg={alg};ppt={ppt}"


def shaken_identity(key: Any, x5u: str, *, orig: str, dest: list[str], iat: int, **kw: Any) -> str:
    return identity_header(shaken_token(key, x5u, orig=orig, dest=dest, iat=iat, **kw), x5u)


def div_identity(key: Any, x5u: str, *, orig: str, dest: list[str], div: str, iat: int) -> str:
    """An RFC 8946 div PASSporT's Identity value: the call to ``div`` retargeted to ``dest``."""
    header = {"alg": "ES256", "ppt": "div", "typ": "passport", "x5u": x5u}
    claims = {"dest": {"tn": dest}, "div": {"tn": div}, "iat": iat, "orig": {"tn": orig}}
    return identity_header(sign_passport(key, header, claims), x5u, ppt="div")


def rcd_identity(key: Any, x5u: str, *, orig: str, dest: list[str], iat: int, rcd: dict[str, Any],
                 rcdi: dict[str, str] | None = None) -> str:
    """An RFC 9795 rcd PASSporT's Identity value (``rcdi`` as given: a test may tamper it)."""
    header = {"alg": "ES256", "ppt": "rcd", "typ": "passport", "x5u": x5u}
    claims: dict[str, Any] = {"dest": {"tn": dest}, "iat": iat, "orig": {"tn": orig}, "rcd": rcd}
    if rcdi is not None:
        claims["rcdi"] = rcdi
    return identity_header(sign_passport(key, header, claims), x5u, ppt="rcd")


# -- loopback certificate repository ---------------------------------------------------------------

class CertServer:
    """Threaded HTTP(S) server on 127.0.0.1:<free port> serving fixed routes and counting hits."""

    def __init__(self, https: bool = False, directory: Path | str | None = None) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes, float]] = {}
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.https = https
        self.ca_bundle: str | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                with server.lock:
                    server.counts[self.path] = server.counts.get(self.path, 0) + 1
                    status, headers, body, delay = server.routes.get(
                        self.path, (404, {}, b"not found", 0.0))
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        if https:
            self._tls(Path(directory) if directory else None)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _tls(self, directory: Path | None) -> None:
        import tempfile

        folder = directory or Path(tempfile.mkdtemp(prefix="certserver-"))
        key = ec.generate_private_key(ec.SECP256R1())
        now = time.time()
        cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(_name("localhost"))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(dt.datetime.fromtimestamp(now - 3600, dt.UTC))
                .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        cert_path, key_path = folder / "server.pem", folder / "server.key"
        cert_path.write_bytes(_pem(cert))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.ca_bundle = str(cert_path)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.https else 'http'}://{host}:{self.port}{path}"

    def route(self, path: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None,
              delay: float = 0.0) -> None:
        with self.lock:
            self.routes[path] = (status, dict(headers or {}), body, delay)

    def hits(self, path: str) -> int:
        with self.lock:
            return self.counts.get(path, 0)

    def __enter__(self) -> CertServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class MapFetcher:
    """A CertFetcher over a dict url -> body (or a FetchError to raise), counting calls.

    `gate` (an asyncio.Event), when set on the instance, holds every fetch until it is set:
    tests use it to pile up concurrent callers before the one download completes.
    """

    def __init__(self, bodies: dict[str, Any] | None = None) -> None:
        self.bodies: dict[str, Any] = dict(bodies or {})
        self.calls: dict[str, int] = {}
        self.gate: Any = None

    async def fetch(self, url: str, *, crl: bool = False) -> Any:
        from sipguard.shaken.reasons import Reason
        from sipguard.shaken.x5u import Fetched, FetchError

        self.calls[url] = self.calls.get(url, 0) + 1
        if self.gate is not None:
            await self.gate.wait()
        body = self.bodies.get(url)
        if body is None:
            raise FetchError(Reason.X5U_FETCH_FAILED, "HTTP status 404", status=404)
        if isinstance(body, FetchError):
            raise body
        return Fetched(body)

    async def aclose(self) -> None:
        return None
