"""SIGHUP applies what it promises (README, "SIGHUP applies the config"): ``limits``,
``proxy.shed_delay``, ``proxy.retry_after`` and ``proxy.tcp`` reach the objects that use them,
and the admin listener's limits, which a running process cannot change, are named in the
restart warning instead of being silently ignored."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from sipguard.clock import SystemClock
from sipguard.config import load_config
from sipguard.pipeline import Pipeline
from sipguard.proxy.connlimits import ConnectionLimits
from sipguard.proxy.overload import OverloadGuard
from sipguard.proxy.worker import Worker

BEFORE = """\
limits:
  per_caller: {key: caller, rate: 5/s}
proxy:
  shed_delay: 0.02
  retry_after: 5
  tcp: {max_connections: 100, max_per_source: 8}
"""

AFTER = """\
limits:
  per_caller: {key: caller, rate: 1/s}
  per_trunk: {key: trunk, rate: 50/s}
proxy:
  shed_delay: 0.5
  retry_after: 30
  tcp: {max_connections: 10, max_per_source: 2}
http:
  read_timeout: 9
"""


def test_sighup_applies_limits_shedding_and_connection_numbers(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sipguard.yaml"
    path.write_text(BEFORE)

    async def main() -> None:
        cfg = load_config(str(path))
        worker = Worker(cfg)
        worker.pipeline = await Pipeline.create(cfg, SystemClock())
        worker.guard = OverloadGuard(cfg.proxy.shed_delay, cfg.proxy.retry_after, cfg.proxy.max_message_size,
                                     lambda *a: None)
        limits = ConnectionLimits(cfg.proxy.tcp, open_fds=10, fd_limit=1024)
        worker.transports = SimpleNamespace(limits=limits, reload_tls=lambda tls: None)  # type: ignore[assignment]
        assert [spec.name for spec in worker.pipeline.store.limits] == ["per_caller"]
        assert limits.cap == 100 and worker.guard.state.threshold == 0.02

        path.write_text(AFTER)
        with caplog.at_level(logging.WARNING, logger="sipguard"):
            await worker.reload()
        assert [spec.name for spec in worker.pipeline.store.limits] == ["per_caller", "per_trunk"]
        assert worker.guard.state.threshold == 0.5
        assert b"Retry-After: 30\r\n" in worker.guard.headers
        assert limits.cap == 10 and limits.settings.max_per_source == 2
        assert "only after a restart: http.read_timeout" in caplog.text
        assert "proxy" not in caplog.text.split("only after a restart:", 1)[1]
        await worker.pipeline.aclose()

    asyncio.run(main())


def test_connection_cap_keeps_the_descriptor_budget_measured_at_start() -> None:
    """A reload does not count the connections held now against the descriptor budget again."""
    from sipguard.config import ConnectionSettings

    limits = ConnectionLimits(ConnectionSettings(max_connections=5000, fd_reserve=64), open_fds=36, fd_limit=1024)
    assert limits.cap == 1024 - 36 - 64
    limits.reconfigure(ConnectionSettings(max_connections=5000, fd_reserve=100))
    assert limits.cap == 1024 - 36 - 100
    limits.reconfigure(ConnectionSettings(max_connections=20, fd_reserve=100))
    assert limits.cap == 20


def test_sighup_resolves_named_next_hops_off_the_event_loop(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A next hop given as a name is resolved in a thread on SIGHUP (a slow DNS answer must not
    stop the loop), and the core's peers take the answer without resolving again."""
    import socket
    import threading

    from sipguard import trunks
    from sipguard.trunks import Peers

    asked: list[tuple[str, bool]] = []

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        asked.append((host, threading.current_thread() is threading.main_thread()))
        return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("192.0.2.9", 0))]

    monkeypatch.setattr(trunks.socket, "getaddrinfo", getaddrinfo)
    path = tmp_path / "sipguard.yaml"
    path.write_text("next_hop: sip:127.0.0.1:5070\n")

    async def main() -> None:
        cfg = load_config(str(path))
        worker = Worker(cfg)
        worker.pipeline = await Pipeline.create(cfg, SystemClock())
        handed: list[object] = []
        worker.core = SimpleNamespace(reconfigure=handed.append)  # type: ignore[assignment]
        path.write_text("next_hop: sip:hop.example.net:5070\n")
        await worker.reload()
        (settings,) = handed
        assert asked == [("hop.example.net", False)]             # resolved, and not on the loop's thread
        assert settings.hop_addresses == frozenset({"192.0.2.9"})  # type: ignore[attr-defined]
        peers = Peers.of(settings)  # type: ignore[arg-type]
        assert peers.kind("192.0.2.9") == Peers.HOP and len(asked) == 1   # no second lookup
        await worker.pipeline.aclose()

    asyncio.run(main())
