"""Helpers for the end-to-end tests: a running sipguard with a real certificate repository,
policy files written by the test, and small waits.

    with E2eShaken(tmp_path) as shaken:          # StiPki + loopback CertServer (x5u + CRL)
        config = base_config(uas.port, shaken=shaken.section(), policy=write_policy(...))
        ident = shaken.identity("good")          # a fresh, valid Identity header value

Everything here drives sipguard only from the outside (SIP over UDP, the CLI, files), the way
an operator would; the tests assert what comes back on the wire.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.shaken_pki import CertServer, StiPki, identity_header, shaken_identity, shaken_token

ROOT = Path(__file__).resolve().parents[1]

# Valid, US, non-fictional NANP numbers (555-01XX is "fictional" and makes an invalid caller).
CALLER = "+12127363100"
CALLEE = "+13036231000"

T = TypeVar("T")


class E2eShaken:
    """A small STI PKI published on a loopback HTTP repository, for a running sipguard."""

    def __init__(self, directory: Path) -> None:
        self.server = CertServer()
        self.directory = directory
        self.pki: StiPki | None = None

    def __enter__(self) -> E2eShaken:
        self.server.__enter__()
        self.pki = StiPki(self.directory, now=time.time(), crl_url=self.server.url("/int.crl"))
        self.pki.publish(self.server)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def anchors(self) -> str:
        assert self.pki is not None
        return self.pki.anchors

    def url(self, leaf: str) -> str:
        return self.server.url(f"/{leaf}.pem")

    def section(self, *, allow_networks: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        """The `shaken:` section of a sipguard config trusting this PKI's root (absolute path:
        the config file lives in the fixture's own folder)."""
        nets = ["127.0.0.0/8"] if allow_networks is None else allow_networks
        section: dict[str, Any] = {"trust_anchors": self.anchors,
                                   "x5u": {"allow_http": True, "allow_networks": nets, "allow_private": True,
                                           "timeout": 1.0},
                                   "crl": {"enabled": True, "failure": "fail-open"}}
        section.update(extra)
        return section

    def token(self, leaf: str = "good", *, x5u: str | None = None, orig: str = CALLER[1:],
              dest: list[str] | None = None, iat: int | None = None, **kw: Any) -> str:
        assert self.pki is not None
        return shaken_token(self.pki.key(leaf), x5u or self.url(leaf), orig=orig, dest=dest or [CALLEE[1:]],
                            iat=int(time.time()) if iat is None else iat, **kw)

    def identity(self, leaf: str = "good", *, x5u: str | None = None, info: str | None = None,
                 **kw: Any) -> str:
        """An Identity header value; `info` differing from the token's x5u makes a mismatch."""
        x5u = x5u or self.url(leaf)
        if info is None and not kw:
            assert self.pki is not None
            return shaken_identity(self.pki.key(leaf), x5u, orig=CALLER[1:], dest=[CALLEE[1:]],
                                   iat=int(time.time()))
        return identity_header(self.token(leaf, x5u=x5u, **kw), info or x5u)


def write_policy(path: Path, rules: list[dict[str, Any]], *, default: str = "forward",
                 mode: str | None = None) -> str:
    """Write a policy file (YAML dumped, so numbers stay strings) and return its path."""
    doc: dict[str, Any] = {"version": 1}
    if mode is not None:
        doc["mode"] = mode
    doc["default"] = {"action": default}
    doc["rules"] = rules
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def wait_for(predicate: Callable[[], T], timeout: float = 5.0, step: float = 0.05) -> T:
    """Poll predicate until it returns something truthy (or time is up: its last value)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def cli(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -m sipguard ARGV`` as a subprocess, the way an operator runs it."""
    return subprocess.run([sys.executable, "-m", "sipguard", *argv], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=ROOT)


def reason_text(value: str | None) -> str | None:
    """The text="..." of a Reason header value."""
    if value is None or 'text="' not in value:
        return None
    return value.split('text="', 1)[1].split('"', 1)[0]


__all__ = ["CALLEE", "CALLER", "E2eShaken", "ROOT", "cli", "reason_text", "wait_for", "write_policy"]


def call_through(sg: Any, uas: Any, caller: str, callee: str = CALLEE, **kw: Any) -> tuple[Any, Any]:
    """One INVITE through a running sipguard; returns (final response, the INVITE the UAS got or None)."""
    from tests.sipclient import UdpClient

    client = UdpClient()
    call_id = uuid.uuid4().hex
    try:
        final, _ = client.call(sg.addr, caller=caller, callee=callee, call_id=call_id, **kw)
    finally:
        client.close()
    got = [m for m in uas.invites() if m.header("Call-ID") == call_id]
    return final, (got[0] if got else None)
