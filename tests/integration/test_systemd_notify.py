"""sd_notify as systemd sees it: a real sipguard started with NOTIFY_SOCKET pointing at a
datagram socket the test owns sends READY=1 once it answers, WATCHDOG=1 while it runs, and
STOPPING=1 on SIGTERM (Type=notify, WatchdogSec in systemd/sipguard.service)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import base_config
from tests.sipclient import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()


def messages_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    """Every notify datagram received until one contains `wanted` (or the timeout)."""
    seen: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sock.settimeout(max(0.05, end - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(data)
        if wanted in data.split("\n"):
            return seen
    raise AssertionError(f"no {wanted} within {timeout}s; got {seen}")


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_watchdog_stopping(sipguard: Callable[..., Any], notify_socket: tuple[socket.socket, str],
                                 workers: int) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}  # WATCHDOG=1 every 0.2 s
    proc = sipguard(base_config(free_port()), workers=workers, env=env)
    seen = messages_until(sock, "READY=1", 10)
    # READY comes once, before any watchdog ping is worth anything
    assert sum("READY=1" in m.split("\n") for m in seen) == 1
    pings = [m for m in messages_until(sock, "WATCHDOG=1", 5) if m == "WATCHDOG=1"]
    pings += [m for m in messages_until(sock, "WATCHDOG=1", 5) if m == "WATCHDOG=1"]
    assert len(pings) >= 2
    proc.signal(signal.SIGTERM)
    messages_until(sock, "STOPPING=1", 10)
    assert proc.proc.wait(15) == 0


def test_abstract_notify_socket(sipguard: Callable[..., Any]) -> None:
    """systemd may hand out an abstract socket ('@name'): sipguard must reach it too."""
    name = f"sipguard-test-{time.time_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        sipguard(base_config(free_port()), env={"NOTIFY_SOCKET": "@" + name})
        messages_until(sock, "READY=1", 10)
    finally:
        sock.close()


def test_no_notify_socket_no_crash(sipguard: Callable[..., Any]) -> None:
    """Outside systemd (no NOTIFY_SOCKET) sipguard starts and answers as usual."""
    proc = sipguard(base_config(free_port()), env={"NOTIFY_SOCKET": "", "WATCHDOG_USEC": "400000"})
    assert proc.proc.poll() is None
