"""Interop: an Identity header signed by sipguard verifies with secsipidx (asipto, Go).

Two ways: against the public key file, and fetching the certificate from the x5u URL on a
loopback HTTP server started here (the way a real verifier meets our header). Negative
cases prove the check can fail: a flipped signature byte and a stale iat.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sipguard.shaken.sign import Signer
from tests.sign_fixtures import Credentials, make_credentials

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("secsipidx") is None, reason="secsipidx is not installed")]

ORIG, DEST = "12024561111", "13035551234"


def secsipidx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["secsipidx", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def cert_server(tmp_path: Path) -> Iterator[tuple[str, Credentials]]:
    """Serve the signer's certificate at http://127.0.0.1:<free port>/cert.pem."""
    now = time.time()
    creds = make_credentials(tmp_path, now)
    body = creds.cert_path.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self.send_response(200 if self.path == "/cert.pem" else 404)
            self.send_header("Content-Type", "application/pem-certificate-chain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cert.pem", creds
    finally:
        server.shutdown()
        server.server_close()


def _signed(creds: Credentials, x5u: str, iat: float) -> str:
    signer = Signer.load(creds.config(x5u=x5u), time.time())
    return signer.sign(ORIG, [DEST], iat, signer.origid_for("carrier-a"))


def test_secsipidx_accepts_with_public_key(cert_server: tuple[str, Credentials], tmp_path: Path) -> None:
    x5u, creds = cert_server
    ident = tmp_path / "identity.txt"
    ident.write_text(_signed(creds, x5u, time.time()))
    result = secsipidx("-check", "-fidentity", str(ident), "-fpubkey", str(creds.pub_path), "-expire", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def secsipidx_http() -> Iterator[str]:
    """secsipidx's HTTP verifier (the mode that downloads x5u), on a free loopback port."""
    port = _free_port()
    proc = subprocess.Popen(["secsipidx", "-H", f"127.0.0.1:{port}", "-expire", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("secsipidx -H did not start")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1/check"
    finally:
        proc.kill()
        proc.wait(timeout=5)


def _http_check(url: str, identity: str) -> str:
    request = urllib.request.Request(url, data=identity.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode().strip())
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"


def test_secsipidx_accepts_fetching_x5u(cert_server: tuple[str, Credentials], secsipidx_http: str) -> None:
    x5u, creds = cert_server
    assert _http_check(secsipidx_http, _signed(creds, x5u, time.time())) == "OK"
    token, params = _signed(creds, x5u, time.time()).split(";", 1)
    head, payload, sig = token.split(".")
    flipped = sig[:20] + ("A" if sig[20] != "A" else "B") + sig[21:]
    assert _http_check(secsipidx_http, f"{head}.{payload}.{flipped};{params}") != "OK"


def test_secsipidx_rejects_tampered_and_stale(cert_server: tuple[str, Credentials]) -> None:
    x5u, creds = cert_server
    token, params = _signed(creds, x5u, time.time()).split(";", 1)
    head, payload, sig = token.split(".")
    flipped = sig[:20] + ("A" if sig[20] != "A" else "B") + sig[21:]
    bad = secsipidx("-check", "-identity", f"{head}.{payload}.{flipped};{params}",
                    "-fpubkey", str(creds.pub_path), "-expire", "60")
    assert bad.returncode != 0
    stale = secsipidx("-check", "-identity", _signed(creds, x5u, time.time() - 3600),
                      "-fpubkey", str(creds.pub_path), "-expire", "60")
    assert stale.returncode != 0
