"""``store:`` URLs: every form the CONTRACT names, and clear errors for the rest."""

from __future__ import annotations

import pytest

from sipguard.errors import ConfigError
from sipguard.store import open_store
from sipguard.store.connect import parse_url
from sipguard.store.memory import MemoryStore
from sipguard.store.redis import RedisStore


@pytest.mark.parametrize(("url", "kind", "hosts", "extra"), [
    ("redis://127.0.0.1:6379/0", "standalone", (), {}),
    ("rediss://user:p%40ss@redis.example.net:6380/2", "standalone", (), {"tls": True, "username": "user",
                                                                          "password": "p@ss"}),
    ("unix:///run/redis.sock", "standalone", (), {}),
    ("redis+sentinel://s1:26379,s2:26379/mymaster", "sentinel", (("s1", 26379), ("s2", 26379)),
     {"service": "mymaster", "db": 0}),
    ("redis+sentinel://:pw@s1:26379/mymaster/3", "sentinel", (("s1", 26379),),
     {"service": "mymaster", "db": 3, "password": "pw"}),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2:7000", "cluster", (("10.0.0.1", 7000), ("10.0.0.2", 7000)), {}),
])
def test_valid(url: str, kind: str, hosts: tuple[tuple[str, int], ...], extra: dict[str, object]) -> None:
    target = parse_url(url)
    assert target.kind == kind
    if hosts:
        assert target.hosts == hosts
    for name, value in extra.items():
        assert getattr(target, name) == value


@pytest.mark.parametrize(("url", "words"), [
    ("http://x:1", "expected memory"),
    ("redis://host:port/0", "port is not a number"),
    ("redis:///0", "no host"),
    ("redis://h:1/zero", "database 'zero'"),
    ("redis+sentinel://h:26379", "service name"),
    ("redis+sentinel://h:26379/m/x", "/service_name[/db]"),
    ("redis+cluster://h:7000/0", "no database"),
    ("redis+cluster://h", "expected host:port"),
])
def test_invalid(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_url(url)
    assert info.value.key == "store" and words in info.value.message


def test_password_never_shown() -> None:
    target = parse_url("redis://admin:hunter2@h:1/0")
    assert "hunter2" not in target.redacted() and "admin:***@h:1" in target.redacted()
    with pytest.raises(ConfigError) as info:
        parse_url("redis://admin:hunter2@h:port/0")
    assert "hunter2" not in str(info.value)


def test_open_store_by_scheme() -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    assert isinstance(open_store("redis://127.0.0.1:1/0"), RedisStore)   # no connection until start()
    with pytest.raises(ConfigError):
        open_store("mongodb://x")
