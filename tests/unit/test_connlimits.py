"""TCP/TLS connection limits (issue "Hold the edge", item 4): admission at accept, the
timeouts with time as an input, the descriptor budget, the known peers, the config keys."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sipguard.config import load_config
from sipguard.errors import ConfigError
from sipguard.proxy.connlimits import ConnectionLimits, ConnectionSettings, _fd_budget
from sipguard.trunks import Peers
from tests.proxy_fixtures import proxy_config


def limits(**kw: float) -> ConnectionLimits:
    return ConnectionLimits(ConnectionSettings(**kw), None, open_fds=10, fd_limit=100_000)  # type: ignore[arg-type]


def test_per_source_cap_then_release() -> None:
    lim = limits(max_per_source=2)
    assert lim.admit("192.0.2.1", "tcp", 0.0) and lim.admit("192.0.2.1", "tcp", 0.0)
    assert not lim.admit("192.0.2.1", "tcp", 0.0)
    assert lim.admit("192.0.2.2", "tls", 0.0)           # another source has its own share
    lim.release("192.0.2.1")
    assert lim.admit("192.0.2.1", "tcp", 0.0)
    assert lim.counters.per_source == 1 and lim.total == 3


def test_total_cap_and_descriptor_reserve() -> None:
    lim = limits(max_connections=3, max_per_source=10)
    assert all(lim.admit(f"192.0.2.{i}", "tcp", 0.0) for i in range(3))
    assert not lim.admit("192.0.2.9", "tcp", 0.0) and lim.counters.total == 1
    # the descriptor limit leaves less room than max_connections: the reserve wins
    tight = ConnectionLimits(ConnectionSettings(max_connections=1000, fd_reserve=64), None, open_fds=20,
                             fd_limit=1024)
    assert tight.cap == 1024 - 20 - 64
    assert _fd_budget(64, 1000, 1024) == 0


def test_unknown_source_refused_and_warned_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    lim = ConnectionLimits(ConnectionSettings(), lambda ip: ip == "198.51.100.5", open_fds=10, fd_limit=4096)
    caplog.set_level(logging.WARNING, "sipguard.transport")
    assert lim.admit("198.51.100.5", "tcp", 0.0)
    assert not lim.admit("203.0.113.9", "tcp", 0.0)
    assert not lim.admit("203.0.113.9", "tcp", 30.0)
    assert not lim.admit("203.0.113.9", "tcp", 61.0)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "unknown_source: reject" in warnings[0]
    assert lim.counters.unknown_source == 3


@dataclass
class Conn:
    active: float
    head_since: float = 0.0
    closed: str = ""

    def expire(self, limit: str) -> None:
        self.closed = limit


def test_sweep_closes_unfinished_heads_and_idle_connections() -> None:
    lim = limits(head_timeout=10, idle_timeout=60)
    busy = Conn(active=95.0)                       # bytes 5 s ago, no unfinished message
    slow_head = Conn(active=99.0, head_since=85.0)  # a message begun 15 s ago, still trickling
    fresh_head = Conn(active=99.0, head_since=95.0)
    idle = Conn(active=30.0)
    assert lim.sweep([busy, slow_head, fresh_head, idle], now=100.0) == 2
    assert (busy.closed, slow_head.closed, fresh_head.closed, idle.closed) == ("", "head_timeout", "", "idle_timeout")
    assert lim.counters.head_timeout == 1 and lim.counters.idle_timeout == 1
    assert 0.05 <= limits(head_timeout=0.1, idle_timeout=0.2).interval() <= 0.05 + 1e-9
    assert lim.interval() == 1.0


def test_known_peers_are_trunks_trusted_proxies_and_next_hops(tmp_path: Path) -> None:
    path = tmp_path / "sg.yaml"
    path.write_text(yaml.safe_dump({
        "next_hop": "sip:192.0.2.50:5070", "trusted_proxies": ["10.9.0.0/16"], "store": "memory",
        "traceback": {"path": str(tmp_path / "tb.db")},
        "trunks": [{"id": "a", "sources": ["198.51.100.0/24"], "next_hop": "sips:[2001:db8::5]"},
                   {"id": "b", "sources": ["2001:db8:1::/48"]}]}))
    peers = Peers.of(load_config(str(path)))
    for ip in ("198.51.100.7", "::ffff:198.51.100.7", "10.9.3.4", "192.0.2.50", "2001:db8::5", "[2001:db8:1::9]"):
        assert peers.known(ip), ip
        assert ip in peers
    for ip in ("198.51.101.7", "192.0.2.51", "2001:db8::6", "not-an-ip", ""):
        assert not peers.known(ip), ip


def test_proxy_tcp_and_shed_delay_keys(tmp_path: Path) -> None:
    base = proxy_config(tmp_path)
    assert base.proxy.shed_delay == 0.02 and base.proxy.tcp == ConnectionSettings()
    data = yaml.safe_load(Path(base.path).read_text())
    data["proxy"] = {"shed_delay": 0.05, "tcp": {"head_timeout": 5, "idle_timeout": 30, "max_connections": 200,
                                                 "max_per_source": 4, "fd_reserve": 100}}
    Path(base.path).write_text(yaml.safe_dump(data))
    cfg = load_config(base.path)
    assert cfg.proxy.shed_delay == 0.05
    assert cfg.proxy.tcp == ConnectionSettings(5.0, 30.0, 200, 4, 100)
    for bad, key in (({"tcp": {"idle_timeout": 0}}, "proxy.tcp.idle_timeout"),
                     ({"tcp": {"max_per_sourse": 3}}, "proxy.tcp"),
                     ({"shed_delay": -1}, "proxy.shed_delay")):
        data["proxy"] = bad
        Path(base.path).write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError) as err:
            load_config(base.path)
        assert key in str(err.value)
