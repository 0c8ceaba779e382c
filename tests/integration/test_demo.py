"""``make demo`` on a busy machine: with the config's fixed ports (5060, 5070, 8089, 9090)
taken by other programs, the demo runs on free ports, every call gets its answer, and
what it prints matches ``sipguard traceback`` (numbers with their +, a command that runs)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, need

pytestmark = pytest.mark.integration


def hold(port: int, kind: int) -> socket.socket | None:
    """Take ``port`` as another program would; None when someone else already has it."""
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock


def test_the_demo_runs_on_free_ports_when_its_own_are_taken() -> None:
    need("sipp")
    held = [hold(5060, socket.SOCK_DGRAM), hold(5060, socket.SOCK_STREAM), hold(5070, socket.SOCK_DGRAM),
            hold(8089, socket.SOCK_STREAM), hold(9090, socket.SOCK_STREAM)]
    try:
        run = subprocess.run([sys.executable, "-m", "sipguard.demo", "--config", "config/sipguard.demo.yaml"],
                             cwd=ROOT, capture_output=True, text=True, timeout=240)
    finally:
        for sock in held:
            if sock is not None:
                sock.close()
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert "sipp failed" not in out and "8 calls recorded" in out, out
    assert re.search(r"call 5: unsigned, caller on the DNO list\s+rejected: 603", out), out
    assert re.search(r"call 2: signature tampered with \(tagged, not blocked\)\s+forwarded, answered", out), out
    assert re.search(r"^  \+12024561111 +\+13036231000 +TN-Validation-Failed", out, re.M), out
    assert re.search(r"^  \+18002223333 +911 ", out, re.M), out
    command = re.search(r"Try: (.+?) traceback -c", out)
    assert command, out
    exe = command.group(1).split()[0]
    assert os.access(exe if os.path.isabs(exe) else ROOT / exe, os.X_OK), exe
    assert not list((ROOT / "config").glob(".*.run-*.yaml"))   # the run's config copy is gone


def test_the_demo_config_copy_moves_every_port(tmp_path: Path) -> None:
    from sipguard.config import load_config
    from sipguard.demo import demo_config

    path, ports = demo_config(str(ROOT / "config" / "sipguard.demo.yaml"))
    try:
        config = load_config(str(path))
        assert {(a.transport, a.port) for a in config.listen} == {("udp", ports.sip), ("tcp", ports.sip)}
        assert config.next_hop == f"sip:127.0.0.1:{ports.uas}"
        assert config.signing is not None and config.signing.x5u == f"http://127.0.0.1:{ports.repository}/signing.pem"
        assert config.http_listen == f"127.0.0.1:{ports.http}"
        assert config.base_dir == str(ROOT / "config")
    finally:
        path.unlink()
