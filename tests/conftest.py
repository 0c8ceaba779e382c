"""Fixtures shared by the whole suite: running a real ``sipguard serve`` and real peers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

# CI runs the property tests on a fixed sequence of examples (green stays green); developers'
# runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

sys.path.insert(0, str(Path(__file__).parent))

from sipclient import UdpClient, free_port, parse_msg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def need(binary: str) -> str:
    """The path of a real component, or skip the test saying how to get it."""
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        pytest.skip(f"{binary} is not installed (make test installs it)")
    return path


class SipguardProcess:
    """``python -m sipguard serve -c CONFIG`` in a subprocess, ready when it answers OPTIONS."""

    def __init__(self, config: dict[str, Any], workdir: Path, workers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        config.setdefault("listen", [f"udp://127.0.0.1:{self.port}", f"tcp://127.0.0.1:{self.port}"])
        self.config = config
        self.workdir = workdir
        self.path = workdir / "sipguard.yaml"
        self.path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "sipguard.log"
        self.workers = workers
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, timeout: float = 20.0) -> SipguardProcess:
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sipguard", "serve", "-c", str(self.path), "--workers", str(self.workers)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        client = UdpClient()
        try:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sipguard exited with {self.proc.returncode}:\n{self.logs()}")
                options = (f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
                           f"Via: SIP/2.0/UDP {client.addr[0]}:{client.addr[1]};branch=z9hG4bK{time.time_ns()}\r\n"
                           "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
                           f"Call-ID: probe-{time.time_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                           "Content-Length: 0\r\n\r\n").encode()
                client.send(options, self.addr)
                msg = client.recv(0.3)
                if msg is not None and msg.status == 200:
                    return
            raise RuntimeError(f"sipguard did not answer OPTIONS within {timeout}s:\n{self.logs()}")
        finally:
            client.close()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


@pytest.fixture
def sipguard(tmp_path: Path) -> Iterator[Callable[..., SipguardProcess]]:
    """Factory: ``sipguard(config_dict, workers=1)`` starts a real sipguard; all stopped at the end."""
    started: list[SipguardProcess] = []

    def start(config: dict[str, Any], workers: int = 1, env: dict[str, str] | None = None,
              run: bool = True) -> SipguardProcess:
        workdir = tmp_path / f"sg{len(started)}"
        workdir.mkdir()
        proc = SipguardProcess(config, workdir, workers, env)
        started.append(proc)
        return proc.start() if run else proc

    yield start
    for proc in started:
        proc.stop()


def base_config(next_hop_port: int, **extra: Any) -> dict[str, Any]:
    """A minimal config: one foreign trunk for 127.0.0.1, memory store, no policy file."""
    config: dict[str, Any] = {
        "mode": "proxy",
        "next_hop": f"sip:127.0.0.1:{next_hop_port}",
        "unknown_source": "reject",
        "trunks": [{"id": "carrier-a", "role": "foreign", "sources": ["127.0.0.1/32"],
                    "provider": {"name": "Carrier A", "frn": "0012345678", "rmd": "RMD0001234",
                                 "country": "GB"}}],
        "store": "memory",
        "traceback": {"path": "var/traceback.db"},
    }
    config.update(extra)
    return config


__all__ = ["SipguardProcess", "base_config", "need", "parse_msg", "free_port", "UdpClient"]
