"""Real redis-server processes for tests: one standalone server and a 3-node Cluster.

Use from any test module or conftest::

    from tests.redis_fixtures import redis_server, redis_cluster  # noqa: F401 (fixtures)

    def test_x(redis_server):            # RedisProcess: .url, .port, .stop(), .start()
        ...

Each server listens on a free loopback port, keeps nothing on disk and is killed at the end
of the session. Tests that need Redis skip when redis-server is not installed.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 50000)
        if _bindable(port) and _bindable(port + 10000):
            return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisProcess:
    port: int
    workdir: str
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--protected-mode", "no", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def start_redis(extra: tuple[str, ...] = (), port: int | None = None) -> RedisProcess:
    proc = RedisProcess(port or free_port(), tempfile.mkdtemp(prefix="sg-redis-"), extra)
    proc.start()
    return proc


@dataclass
class RedisClusterProcess:
    nodes: list[RedisProcess]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(size: int = 3) -> RedisClusterProcess:
    assert REDIS_CLI is not None
    nodes = []
    try:
        for _ in range(size):
            port = free_cluster_port()
            nodes.append(start_redis(("--cluster-enabled", "yes", "--cluster-config-file",
                                      f"nodes-{port}.conf", "--cluster-node-timeout", "2000"), port))
        subprocess.run([REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.monotonic() + 20
        while True:
            states = [subprocess.run([REDIS_CLI, "-p", str(n.port), "cluster", "info"], capture_output=True,
                                     text=True, timeout=5).stdout for n in nodes]
            if all("cluster_state:ok" in s for s in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return RedisClusterProcess(nodes)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    proc = start_redis()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcess]:
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server / redis-cli are not installed")
    cluster = start_cluster()
    yield cluster
    cluster.stop()


def start_sentinel(master: RedisProcess, service: str = "mymaster") -> RedisProcess:
    """A redis-sentinel watching ``master`` under ``service`` (for redis+sentinel:// URLs)."""
    assert REDIS_SERVER is not None
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="sg-sentinel-")
    conf = f"{workdir}/sentinel.conf"
    with open(conf, "w") as fh:
        fh.write(f"port {port}\nbind 127.0.0.1\nsentinel monitor {service} 127.0.0.1 {master.port} 1\n")
    sentinel = RedisProcess(port, workdir)
    sentinel.proc = subprocess.Popen([REDIS_SERVER, conf, "--sentinel"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _ping(port):
        if sentinel.proc.poll() is not None or time.monotonic() > deadline:
            sentinel.stop()
            raise RuntimeError("redis-sentinel did not start")
        time.sleep(0.02)
    return sentinel
