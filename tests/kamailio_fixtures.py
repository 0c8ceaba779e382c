"""Real Kamailio for the deployment tests: start one of kamailio/*/kamailio.cfg on a free
loopback port with the defines a test needs, wait until it answers, stop it at the end.

    kam = Kamailio(ROOT / "kamailio/edge-proxy/kamailio.cfg", tmp_path,
                   {"DS_LIST": '"/tmp/x/ds.list"', "DS_PING_INTERVAL": "1"}).start()
    client.call(kam.addr, ...)
    kam.log()          # what Kamailio wrote (stderr, -E)
    kam.stop()

Also the sipguard pieces the Kamailio tests share: a test PKI and loopback certificate
server (tests/shaken_pki.py), signing credentials (tests/sign_fixtures.py), the policy the
tests screen with, and the sipguard config that goes with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.shaken_pki import CertServer, StiPki, rcd_identity, shaken_identity
from tests.sign_fixtures import make_credentials
from tests.sipclient import UdpClient, free_port

ROOT = Path(__file__).resolve().parents[1]
EDGE_CFG = ROOT / "kamailio" / "edge-proxy" / "kamailio.cfg"
REDIRECT_CFG = ROOT / "kamailio" / "redirect" / "kamailio.cfg"

CALLER = "+12127363100"
CALLEE = "+13036231000"
BLOCKED_CALLER = "+12127363199"

# The policy every Kamailio test screens with: one rule per outcome the tests check.
POLICY = """\
version: 1
default: {action: forward}
rules:
  - name: blocked-caller
    when: {caller: "12127363199"}
    action: reject
    status: 603+
    class: analytics
  - name: failed-verification
    when: {verstat: TN-Validation-Failed}
    action: reject
  - name: flag-rcd-from-foreign-trunk
    when: {trunk.role: foreign, rcd.present: true}
    action: forward
    tag: {headers: {X-Call-Screen: rcd-foreign}, passports: true}
  - name: sign-unsigned
    when: {verstat: No-TN-Validation, caller.us: true}
    action: forward
    sign: true
    tag: {headers: {X-Call-Screen: gateway-signed}}
"""


def kamailio_binary() -> str:
    path = shutil.which("kamailio") or ("/usr/sbin/kamailio" if os.path.exists("/usr/sbin/kamailio") else None)
    if path is None:
        pytest.skip("kamailio is not installed (Debian: apt install kamailio; make test installs it)")
    return path


def define_args(defines: dict[str, str | None]) -> list[str]:
    """{'WITH_X': None, 'PORT': '5'} -> ['-A', 'WITH_X', '-A', 'PORT=5'] (kamailio -A NAME[=VALUE])."""
    args: list[str] = []
    for name, value in defines.items():
        args += ["-A", name if value is None else f"{name}={value}"]
    return args


class Kamailio:
    """kamailio -DD -E (foreground, log on stderr) on 127.0.0.1:<free port>."""

    def __init__(self, cfg: Path, workdir: Path, defines: dict[str, str | None] | None = None) -> None:
        self.cfg = cfg
        self.port = free_port()
        self.workdir = workdir / f"kamailio-{self.port}"
        self.workdir.mkdir(parents=True)
        self.defines = {"KAM_LISTEN": f"udp:127.0.0.1:{self.port}",
                        "KAM_ALIAS": f'"127.0.0.1:{self.port}"', **(defines or {})}
        self.log_path = self.workdir / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def command(self) -> list[str]:
        return [kamailio_binary(), "-f", str(self.cfg), "-DD", "-E", "-n", "2", "-m", "64", "-M", "8",
                "-Y", str(self.workdir), *define_args(self.defines)]

    def start(self, timeout: float = 15.0) -> Kamailio:
        with open(self.log_path, "ab") as log:
            # own session: stop() can signal Kamailio's children by this group id
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, start_new_session=True)
        client = UdpClient()
        try:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kamailio exited with {self.proc.returncode}:\n{self.log()}")
                client.send(options(self.addr, client.addr), self.addr)
                msg = client.recv(0.3)
                if msg is not None and msg.status == 200:
                    return self
            raise RuntimeError(f"kamailio did not answer OPTIONS within {timeout}s:\n{self.log()}")
        finally:
            client.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # session leader: its pid is the group id
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            os.killpg(pgid, signal.SIGKILL)  # any child the main process left behind
        except ProcessLookupError:
            pass


def options(target: tuple[str, int], local: tuple[str, int]) -> bytes:
    tag = time.time_ns()
    return (f"OPTIONS sip:{target[0]}:{target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{tag};rport\r\n"
            f"From: <sip:probe@{local[0]}>;tag={tag}\r\nTo: <sip:{target[0]}>\r\n"
            f"Call-ID: kamprobe-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


class Screening:
    """What a sipguard behind Kamailio needs: PKI + cert server, signing keys, policy."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.server = CertServer().__enter__()
        self.pki = StiPki(self.dir / "pki")
        self.pki.publish(self.server)
        (self.dir / "signer").mkdir()
        self.creds = make_credentials(self.dir / "signer", now=time.time())
        self.policy = self.dir / "policy.yaml"
        self.policy.write_text(POLICY)

    def config(self, mode: str, next_hop_port: int, **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "mode": mode,
            "next_hop": f"sip:127.0.0.1:{next_hop_port}",
            "unknown_source": "reject",
            "trunks": [{"id": "edge-foreign", "role": "foreign", "sources": ["127.0.0.1/32"]}],
            "store": "memory",
            "shaken": {
                "trust_anchors": self.pki.anchors,
                "x5u": {"timeout": 2.0, "allow_http": True, "allow_networks": ["127.0.0.0/8"],
                        "allow_private": True},
                "crl": {"enabled": False},
                "signing": {"key": str(self.creds.key_path), "cert": str(self.creds.cert_path),
                            "x5u": "https://certs.example.net/sipguard.pem", "attest": "C"},
            },
            "policy": str(self.policy),
            "blocking": {"redress": {"url": "https://example.net/blocked", "tel": "+18005550100"}},
            "traceback": {"path": "var/traceback.db"},
        }
        config.update(extra)
        return config

    def identity(self, *, orig: str = CALLER, dest: str = CALLEE, signed_orig: str | None = None) -> str:
        """A valid SHAKEN Identity for orig -> dest, or one signed for signed_orig (orig-mismatch)."""
        return shaken_identity(self.pki.key("good"), self.server.url("/good.pem"),
                               orig=(signed_orig or orig).lstrip("+"), dest=[dest.lstrip("+")],
                               iat=int(time.time()))

    def rcd(self, *, orig: str = CALLER, dest: str = CALLEE, rcdi: str = "good") -> str:
        """An rcd PASSporT (RFC 9795) with an inline jCard and its rcdi digest ("good" or "tampered")."""
        from sipguard.shaken.rcd import integrity

        jcard = ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Bank"]]]
        return rcd_identity(self.pki.key("good"), self.server.url("/good.pem"), orig=orig.lstrip("+"),
                            dest=[dest.lstrip("+")], iat=int(time.time()), rcd={"nam": "Example Bank", "jcd": jcard},
                            rcdi={"/jcd": integrity(jcard if rcdi == "good" else ["tampered"])})

    def close(self) -> None:
        self.server.__exit__(None, None, None)


def write_dispatcher_list(path: Path, ports: list[int]) -> Path:
    """Set 1 with one sipguard per port; the first has the highest priority."""
    lines = [f"1 sip:127.0.0.1:{port} 0 {len(ports) - index}" for index, port in enumerate(ports)]
    path.write_text("\n".join(lines) + "\n")
    return path
