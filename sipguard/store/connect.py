"""``store:`` URLs -> a redis.asyncio client factory (standalone, TLS, Sentinel, Cluster).

    redis://[user:password@]host:port[/db]          rediss:// the same over TLS
    unix:///path/to/redis.sock[?db=N]
    redis+sentinel://[user:password@]host:port[,host:port]/service_name[/db]
    redis+cluster://[user:password@]host:port[,host:port]

Parsing happens at config time (ConfigError naming the ``store`` key); the client is made
later, in ``RedisStore.start``, inside the running event loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from sipguard.errors import ConfigError

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    kind: str                          # standalone | sentinel | cluster
    url: str                           # for standalone: handed to redis-py as is
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @property
    def cluster(self) -> bool:
        return self.kind == "cluster"

    def redacted(self) -> str:
        """The URL without its password, for logs and error messages."""
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.url)


def _bad(url: str, why: str) -> ConfigError:
    shown = url.split("@")[-1] if "@" in url else url
    return ConfigError(f"store URL ...{shown!r}: {why}", key="store")


def parse_url(url: str) -> RedisTarget:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise _bad(url, "expected memory, redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")
    if scheme in ("redis", "rediss", "unix"):
        parts = urlsplit(url)
        if scheme != "unix":
            try:
                parts.port  # noqa: B018 - validates the port
            except ValueError:
                raise _bad(url, "the port is not a number") from None
            if not parts.hostname:
                raise _bad(url, "no host")
            db = parts.path.strip("/")
            if db and not db.isdigit():
                raise _bad(url, f"database {db!r} is not a number")
        return RedisTarget("standalone", url, tls=scheme == "rediss",
                           username=unquote(parts.username) if parts.username else None,
                           password=unquote(parts.password) if parts.password else None)
    rest = url.split("://", 1)[1]
    creds, _, hostpart = rest.rpartition("@")
    username = password = None
    if creds:
        user, _, pw = creds.partition(":")
        username, password = unquote(user) or None, unquote(pw) or None
    hostlist, _, path = hostpart.partition("/")
    hosts = []
    for item in hostlist.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise _bad(url, f"{item!r}: expected host:port")
        hosts.append((host.strip("[]"), int(port)))
    segments = [s for s in path.split("/") if s]
    if scheme == "redis+cluster":
        if segments:
            raise _bad(url, "Redis Cluster has no database or service name in the URL")
        return RedisTarget("cluster", url, tuple(hosts), username=username, password=password)
    if not segments:
        raise _bad(url, "Sentinel URLs need the service name: redis+sentinel://host:port/mymaster[/db]")
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise _bad(url, "expected /service_name[/db]")
    db_index = int(segments[1]) if len(segments) == 2 else 0
    return RedisTarget("sentinel", url, tuple(hosts), segments[0], db_index, username, password)


def client_factory(target: RedisTarget, max_connections: int = 64,
                   socket_timeout: float = 30.0) -> Callable[[], Any]:
    """A zero-argument function making the client (call it inside the event loop)."""
    common: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": 1.0,
                              "username": target.username, "password": target.password}

    def make() -> Any:
        if target.kind == "cluster":
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.hosts],
                                max_connections=max_connections, **common)
        if target.kind == "sentinel":
            from redis.asyncio.sentinel import Sentinel

            sentinel = Sentinel(list(target.hosts), socket_connect_timeout=1.0, socket_timeout=1.0)
            return sentinel.master_for(target.service or "", db=target.db, **common)
        from redis.asyncio import BlockingConnectionPool, Redis

        # bounded pool: under overload a task waits briefly for a connection (then times out
        # into a degraded lookup) instead of opening unboundedly many sockets
        pool = BlockingConnectionPool.from_url(target.url, max_connections=max_connections, timeout=1.0,
                                               socket_timeout=socket_timeout, socket_connect_timeout=1.0)
        return Redis(connection_pool=pool)

    return make
