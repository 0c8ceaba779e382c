"""TCP and TLS connection limits: who may connect, how many at once, and for how long.

An open connection costs a file descriptor and its buffers. Without limits, connections
that never finish a message or never send one pile up until the worker runs out of
descriptors, and then TCP calls, x5u fetches (valid calls fail verification) and /healthz
stop together. So, per worker:

- at accept, before any byte is read (before the TLS handshake too), a connection is closed
  when its source is not a known peer (``unknown_source: reject``; trunks, trusted proxies,
  next hops: ``trunks.Peers``), when its source already holds ``max_per_source``, or
  when the worker holds ``max_connections`` inbound connections; the total is further kept
  ``fd_reserve`` descriptors below the process's limit (RLIMIT_NOFILE), so outbound fetches,
  the store, the records file and the HTTP listener always find one;
- a connection whose unfinished message is older than ``head_timeout`` (a head sent slowly,
  or never completed; a TLS handshake too), or that carried no byte either way for
  ``idle_timeout``, is closed by a sweep a few times a second (time is an input: ``sweep``).

Each limit hit is counted (``refused`` / ``closed``, exported as
sipguard_connection_limits_total{limit}) and logged as a warning at most once a minute per
limit, so a flood cannot flood the log. This module decides; the transport closes.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Protocol

from sipguard.config import ConnectionSettings

log = logging.getLogger("sipguard.transport")

WARN_EVERY = 60.0   # seconds between two warnings for the same limit
@dataclass(slots=True)
class LimitCounters:
    """Connections refused at accept or closed, by limit; exported as
    sipguard_connection_limits{limit=<field>}."""

    unknown_source: int = 0
    per_source: int = 0
    total: int = 0
    head_timeout: int = 0
    idle_timeout: int = 0


LIMITS = tuple(f.name for f in fields(LimitCounters))


class Timed(Protocol):
    """What the sweep reads of a connection."""

    active: float        # when the last byte went in or out
    head_since: float    # when its unfinished message started; 0: none

    def expire(self, limit: str) -> None:
        """Close the connection (``limit``: head_timeout | idle_timeout)."""


class ConnectionLimits:
    """Admission and timeouts for one worker's stream connections."""

    def __init__(self, settings: ConnectionSettings, known: Callable[[str], bool] | None = None,
                 open_fds: int | None = None, fd_limit: int | None = None) -> None:
        self.known = known                      # None: every source may connect (unknown_source: allow)
        self._fd_room = _fd_budget(0, open_fds, fd_limit)   # descriptors free when the worker started
        self.reconfigure(settings)
        self.total = 0
        self.per_source: dict[str, int] = {}
        self.counters = LimitCounters()
        self._warned: dict[str, float] = {}

    def reconfigure(self, settings: ConnectionSettings) -> None:
        """``proxy.tcp`` at start and after SIGHUP. Connections already held stay; a lower cap
        or per-source limit refuses new ones until enough have ended. The descriptor budget
        is the one measured at start (the connections held now are not counted twice)."""
        self.settings = settings
        self.cap = min(settings.max_connections, max(0, self._fd_room - settings.fd_reserve))

    def admit(self, ip: str, transport: str, now: float) -> bool:
        """At accept: may a connection from ``ip`` stay? Counted when it may (``release`` it)."""
        limit = None
        held = self.per_source.get(ip, 0)
        counters = self.counters
        if self.known is not None and not self.known(ip):
            limit, counters.unknown_source = "unknown_source", counters.unknown_source + 1
        elif held >= self.settings.max_per_source:
            limit, counters.per_source = "per_source", counters.per_source + 1
        elif self.total >= self.cap:
            limit, counters.total = "total", counters.total + 1
        if limit is not None:
            self._warn(limit, now, f"{transport.upper()} connection from {ip} closed at accept: " + {
                "unknown_source": "not a trunk, trusted proxy or next hop (unknown_source: reject)",
                "per_source": f"it holds proxy.tcp.max_per_source ({self.settings.max_per_source}) already",
                "total": f"the worker holds {self.cap} connections (proxy.tcp.max_connections, "
                         f"fd_reserve {self.settings.fd_reserve})"}[limit])
            return False
        self.per_source[ip] = held + 1
        self.total += 1
        return True

    def release(self, ip: str) -> None:
        held = self.per_source.get(ip, 0)
        if held <= 1:
            self.per_source.pop(ip, None)
        else:
            self.per_source[ip] = held - 1
        if self.total > 0:
            self.total -= 1

    def sweep(self, connections: Iterable[Timed], now: float) -> int:
        """Close what outlived a timeout; returns how many."""
        head, idle = self.settings.head_timeout, self.settings.idle_timeout
        expired: list[tuple[Timed, str]] = []
        counters = self.counters
        for conn in connections:
            if conn.head_since and now - conn.head_since > head:
                expired.append((conn, "head_timeout"))
                counters.head_timeout += 1
            elif now - conn.active > idle:
                expired.append((conn, "idle_timeout"))
                counters.idle_timeout += 1
        for conn, limit in expired:   # closing changes the tables being walked: after the walk
            self._warn(limit, now, f"connection closed: {limit.replace('_', ' ')} "
                                  f"(proxy.tcp.{limit}: {head if limit == 'head_timeout' else idle:g} s)")
            conn.expire(limit)
        return len(expired)

    def interval(self) -> float:
        """How often to sweep: a quarter of the shorter timeout, between 50 ms and 1 s."""
        return max(0.05, min(1.0, self.settings.head_timeout / 4, self.settings.idle_timeout / 4))

    def _warn(self, limit: str, now: float, message: str) -> None:
        """A limit hit (counted by the caller): logged at most once a minute per limit."""
        last = self._warned.get(limit)
        if last is None or now - last >= WARN_EVERY:
            self._warned[limit] = now
            log.warning("%s (this warning at most once a minute; sipguard_connection_limits_total counts "
                        "them)", message)


def _fd_budget(reserve: int, open_fds: int | None, fd_limit: int | None) -> int:
    """Inbound connections the descriptor limit leaves room for: the soft RLIMIT_NOFILE less
    the descriptors open now (listening sockets, store, files) less the reserve."""
    if fd_limit is None:
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if fd_limit == resource.RLIM_INFINITY:
            fd_limit = 1 << 20
    if open_fds is None:
        try:
            open_fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            open_fds = 64
    return max(0, fd_limit - open_fds - reserve)
