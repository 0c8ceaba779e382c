"""x5u URL rules, the SSRF address guard and HTTP cache headers (pure parts of the fetcher)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from sipguard.shaken.config import X5uConfig
from sipguard.shaken.reasons import Reason
from sipguard.shaken.x5u import (
    FetchError,
    Target,
    address_allowed,
    address_refusal,
    max_age_of,
    parse_target,
    port_allowed,
)

CFG = X5uConfig()


@pytest.mark.parametrize(("url", "target"), [
    ("https://cert.example/a.pem", Target("https", "cert.example", 443, "/a.pem")),
    ("https://cert.example:8443/a.pem?x=1", Target("https", "cert.example", 8443, "/a.pem?x=1")),
    ("HTTPS://Cert.Example", Target("https", "cert.example", 443, "/")),
])
def test_accepted_urls(url: str, target: Target) -> None:
    assert parse_target(url, CFG) == target


@pytest.mark.parametrize("url", [
    "http://cert.example/a.pem", "ftp://cert.example/a", "https://user:pw@cert.example/a.pem",
    "https://cert.example/a.pem#frag", "https:///a.pem", "https://cert.example:99999/a", "file:///etc/passwd",
    "https://cert.example/a b", "", "cert.example/a.pem",
])
def test_refused_urls(url: str) -> None:
    with pytest.raises(FetchError) as info:
        parse_target(url, CFG)
    assert info.value.reason is Reason.X5U_REFUSED


def test_http_only_when_allowed_or_crl() -> None:
    assert parse_target("http://c.example/a", X5uConfig(allow_http=True)).port == 80
    assert parse_target("http://crl.example/x.crl", CFG, crl=True).scheme == "http"


@pytest.mark.parametrize(("addr", "ok"), [
    ("93.184.216.34", True), ("2606:2800:220:1::1", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("0.0.0.0", False), ("224.0.0.1", False), ("240.0.0.1", False), ("::1", False), ("fe80::1", False),
    ("fc00::1", False), ("::ffff:127.0.0.1", False), ("::ffff:93.184.216.34", True), ("198.51.100.7", False),
])
def test_ssrf_guard(addr: str, ok: bool) -> None:
    assert address_allowed(ipaddress.ip_address(addr), CFG) is ok


# Every reserved and translation range, each with an address Python's is_global calls global
# (all but Teredo were let through before): refused whatever IPv4 address they carry.
@pytest.mark.parametrize(("addr", "words"), [
    ("::127.0.0.1", "IPv4-compatible"), ("::8.8.8.8", "IPv4-compatible"),
    ("64:ff9b::7f00:1", "NAT64"), ("64:ff9b::808:808", "NAT64"),
    ("64:ff9b:1::7f00:1", "local NAT64"), ("64:ff9b:1:808:8:800::", "local NAT64"),
    ("2002:7f00:1::1", "6to4"), ("2002:808:808::1", "6to4"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),    # server 65.54.227.120, client 127.0.0.1
    ("::ffff:0:7f00:1", "SIIT"), ("::ffff:0:808:808", "SIIT"),
    ("::ffff:10.0.0.1", "private"),                         # IPv4-mapped: the IPv4 rules
    ("fec0::1", "2000::/3"), ("5f00::1", "2000::/3"), ("4000::1", "2000::/3"), ("100::1", "2000::/3"),
    ("3fff::1", "documentation"), ("192.88.99.1", "6to4 relay"), ("::", "unspecified"), ("::1", "loopback"),
])
def test_reserved_and_translation_ranges_refused(addr: str, words: str) -> None:
    why = address_refusal(ipaddress.ip_address(addr), CFG)
    assert why is not None and words in why, why


NAT64 = ipaddress.ip_network("64:ff9b::/96")
TEREDO = ipaddress.ip_network("2001::/32")
SIXTOFOUR = ipaddress.ip_network("2002::/16")


@pytest.mark.parametrize(("addr", "allowed", "ok"), [
    # an IPv6-only host behind DNS64 allows its NAT64 prefix: public IPv4 inside, yes ...
    ("64:ff9b::808:808", (NAT64,), True),
    # ... and the IPv4 address inside is still judged by the IPv4 rules
    ("64:ff9b::7f00:1", (NAT64,), False), ("64:ff9b::a9fe:a9fe", (NAT64,), False),
    ("2002:a00:1::1", (SIXTOFOUR,), False), ("2002:808:808::1", (SIXTOFOUR,), True),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", (TEREDO,), False),   # client 127.0.0.1
    ("2001:0:7f00:1:8000:63bf:f7f7:f7f7", (TEREDO,), False),      # server 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", (TEREDO,), True),    # 65.54.227.120, 8.8.8.8
    # allowing the IPv4 network does not open its translations
    ("64:ff9b::7f00:1", (ipaddress.ip_network("127.0.0.0/8"),), False),
    ("::ffff:127.0.0.1", (ipaddress.ip_network("127.0.0.0/8"),), True),
])
def test_embedded_ipv4_judged_by_ipv4_rules(addr: str, allowed: tuple[Any, ...], ok: bool) -> None:
    assert address_allowed(ipaddress.ip_address(addr), X5uConfig(allow_networks=allowed)) is ok


def test_allow_networks_exempts_address_and_port() -> None:
    cfg = X5uConfig(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    addr = ipaddress.ip_address("127.0.0.1")
    assert address_allowed(addr, cfg)
    assert port_allowed(Target("https", "localhost", 9999, "/"), addr, cfg, crl=False)
    public = ipaddress.ip_address("93.184.216.34")
    assert not port_allowed(Target("https", "c.example", 9999, "/"), public, cfg, crl=False)
    assert port_allowed(Target("https", "c.example", 8443, "/"), public, cfg, crl=False)
    assert port_allowed(Target("http", "c.example", 80, "/"), public, cfg, crl=True)


@pytest.mark.parametrize(("headers", "age"), [
    ({}, None),
    ({"cache-control": "public, max-age=172800"}, 172800.0),
    ({"cache-control": "s-maxage=600"}, 600.0),
    ({"cache-control": "no-cache"}, None),
    ({"expires": "Thu, 03 Dec 2026 00:00:00 GMT", "date": "Tue, 01 Dec 2026 00:00:00 GMT"}, 172800.0),
    ({"expires": "garbage", "date": "Tue, 01 Dec 2026 00:00:00 GMT"}, None),
    ({"expires": "Thu, 03 Dec 2026 00:00:00 GMT"}, None),
])
def test_max_age(headers: dict[str, str], age: float | None) -> None:
    assert max_age_of(headers) == age
