"""x5u URL rules, the SSRF address guard, HTTP cache headers (pure parts of the fetcher), the
fetch budget, the breaker's view of failures and the config's refusal of lab-only exemptions."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from sipguard.errors import ConfigError
from sipguard.shaken.cache import FetchBudget, VerifierCounters
from sipguard.shaken.config import ShakenConfig, X5uConfig
from sipguard.shaken.reasons import Reason
from sipguard.shaken.verify import Verifier
from sipguard.shaken.x5u import (
    FetchError,
    Target,
    address_allowed,
    address_refusal,
    max_age_of,
    parse_target,
    port_allowed,
)
from sipguard.yamlconf import parse, section_of
from tests.shaken_pki import MapFetcher, StiPki, shaken_identity

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
    "https://cert.example/a b", "", "cert.example/a.pem", "https://cert.example/" + "a" * 2048,
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


# -- the fetch budget ------------------------------------------------------------------------------

def test_fetch_budget_is_per_key_and_refills_with_time() -> None:
    budget = FetchBudget(rate=2.0, burst=3)
    assert [budget.take("bad", 100.0) for _ in range(4)] == [True, True, True, False]
    assert budget.take("good", 100.0)                  # another trunk has its own bucket
    assert not budget.take("bad", 100.4)               # 0.8 token
    assert budget.take("bad", 100.5)                   # one whole token after 0.5 s
    assert not budget.take("bad", 50.0)                # a clock going back refills nothing
    assert budget.take("bad", 200.0) and budget.take("bad", 200.0) and budget.take("bad", 200.0)
    assert not budget.take("bad", 200.0)               # never more than the burst
    assert all(FetchBudget(rate=0, burst=1).take("x", 0.0) for _ in range(100))  # 0: off


def test_fetch_budget_remembers_a_bounded_number_of_keys() -> None:
    budget = FetchBudget(rate=1.0, burst=1, maxkeys=3)
    for n in range(10):
        budget.take(f"198.51.100.{n}", 0.0)
    assert len(budget) == 3


# -- the verifier: the breaker counts host failures only; the budget per trunk ---------------------

NOW = 1_790_000_000.0
BASE = "https://certs.example.net"
ORIG, DEST = "12025550100", "13035550100"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
    return StiPki(tmp_path_factory.mktemp("pki"), now=NOW)


def _ident(pki: StiPki, url: str) -> str:
    return shaken_identity(pki.key("good"), url, orig=ORIG, dest=[DEST], iat=int(NOW))


def test_missing_urls_do_not_open_the_breaker_host_failures_do(pki: StiPki) -> None:
    fetcher = MapFetcher({f"{BASE}/good.pem": pki.chain_pem("good"),
                          f"{BASE}/gone.pem": FetchError(Reason.X5U_FETCH_FAILED, "HTTP status 410", status=410)})
    v = Verifier(pki.config(), fetcher)

    async def go() -> None:
        for n in range(20):                               # made-up URLs on a good host: 404
            res = await v.verify([_ident(pki, f"{BASE}/missing-{n}.pem")], [ORIG], [DEST], NOW)
            assert res.reasons == (Reason.X5U_FETCH_FAILED,)
        assert (await v.verify([_ident(pki, f"{BASE}/gone.pem")], [ORIG], [DEST], NOW)).reasons
        assert (await v.verify([_ident(pki, f"{BASE}/gone.pem")], [ORIG], [DEST], NOW + 1)).reasons
        assert fetcher.calls[f"{BASE}/gone.pem"] == 1      # remembered per URL for negative_ttl
        assert v.creds.breaker.state("certs.example.net", NOW) == "closed"
        assert (await v.verify([_ident(pki, f"{BASE}/good.pem")], [ORIG], [DEST], NOW)).passed
        for n in range(5):                                # the host itself fails: the breaker opens
            url = f"https://down.example.net/{n}.pem"
            fetcher.bodies[url] = FetchError(Reason.X5U_FETCH_FAILED, "HTTP status 503", host_down=True, status=503)
            await v.verify([_ident(pki, url)], [ORIG], [DEST], NOW)
        assert v.creds.breaker.state("down.example.net", NOW) == "open"

    asyncio.run(go())
    stats = v.counters
    assert stats.x5u_not_found == 21 and stats.x5u_fetch_failures == 5 and stats.x5u_failed_hits == 1


def test_failures_cannot_evict_good_certificates(pki: StiPki) -> None:
    from dataclasses import replace

    cfg = pki.config()
    v = Verifier(replace(cfg, x5u=replace(cfg.x5u, cache_size=4)),
                 fetcher := MapFetcher({f"{BASE}/good.pem": pki.chain_pem("good")}))

    async def go() -> None:
        assert (await v.verify([_ident(pki, f"{BASE}/good.pem")], [ORIG], [DEST], NOW)).passed
        for n in range(50):
            await v.verify([_ident(pki, f"{BASE}/junk-{n}.pem")], [ORIG], [DEST], NOW)
        assert (await v.verify([_ident(pki, f"{BASE}/good.pem")], [ORIG], [DEST], NOW)).passed

        long = f"{BASE}/{'x' * 3000}.pem"                  # a huge URL's failure is not remembered
        assert (await v.verify([_ident(pki, long)], [ORIG], [DEST], NOW)).reasons == (Reason.X5U_FETCH_FAILED,)
        assert long not in v.creds._failed._data

    asyncio.run(go())
    assert fetcher.calls[f"{BASE}/good.pem"] == 1
    assert v.creds.failed_urls == 4


def test_new_url_budget_is_per_trunk(pki: StiPki) -> None:
    from dataclasses import replace

    cfg = pki.config()
    cfg = replace(cfg, x5u=replace(cfg.x5u, trunk_fetch_rate=1.0, trunk_fetch_burst=5))
    good = f"{BASE}/good.pem"
    fetcher = MapFetcher({good: pki.chain_pem("good")})
    v = Verifier(cfg, fetcher)

    async def go() -> None:
        for n in range(30):                               # one trunk sprays new URLs
            await v.verify([_ident(pki, f"{BASE}/spray-{n}.pem")], [ORIG], [DEST], NOW, trunk="bad")
        assert sum(fetcher.calls.values()) == 5            # its burst, then nothing
        over = await v.verify([_ident(pki, good)], [ORIG], [DEST], NOW, trunk="bad")
        assert over.reasons == (Reason.X5U_FETCH_FAILED,)
        # another trunk's call for the same URL is not refused by the first trunk's spending
        assert (await v.verify([_ident(pki, good)], [ORIG], [DEST], NOW, trunk="good")).passed
        # once cached, the spraying trunk's good calls verify too (no download: no budget)
        assert (await v.verify([_ident(pki, good)], [ORIG], [DEST], NOW, trunk="bad")).passed
        assert (await v.verify([_ident(pki, f"{BASE}/spray-99.pem")], [ORIG], [DEST], NOW + 2,
                               trunk="bad")).reasons == (Reason.X5U_FETCH_FAILED,)
        assert fetcher.calls[f"{BASE}/spray-99.pem"] == 1  # refilled with time

    asyncio.run(go())
    assert v.counters.x5u_budget_skips == 26


def test_budget_is_not_spent_on_an_open_breaker_nor_takes_its_half_open_attempt(pki: StiPki) -> None:
    from dataclasses import replace

    cfg = pki.config()
    down = "https://down.example.net"
    fetcher = MapFetcher({f"{BASE}/good.pem": pki.chain_pem("good")})
    for n in range(9):
        fetcher.bodies[f"{down}/{n}.pem"] = FetchError(Reason.X5U_FETCH_FAILED, "timeout", host_down=True)
    v = Verifier(replace(cfg, x5u=replace(cfg.x5u, trunk_fetch_rate=0.001, trunk_fetch_burst=1)), fetcher)

    async def call(url: str, at: float, trunk: str | None) -> Any:
        return await v.verify([_ident(pki, url)], [ORIG], [DEST], at, trunk=trunk)

    async def go() -> None:
        for n in range(5):
            await call(f"{down}/{n}.pem", NOW, None)
        assert v.creds.breaker.state("down.example.net", NOW) == "open"
        await call(f"{down}/5.pem", NOW, "t")                  # skipped by the breaker: no token spent
        assert v.counters.x5u_budget_skips == 0
        assert (await call(f"{BASE}/good.pem", NOW, "t")).passed  # t's only token
        await call(f"{down}/6.pem", NOW + 31, "t")             # over budget at half-open ...
        assert v.creds.breaker.state("down.example.net", NOW + 31) == "half-open"
        await call(f"{down}/7.pem", NOW + 31, "u")             # ... so u's call is the attempt
        assert f"{down}/6.pem" not in fetcher.calls and fetcher.calls[f"{down}/7.pem"] == 1

    asyncio.run(go())
    assert v.counters.x5u_budget_skips == 1


def test_budget_follows_each_call_when_started_eagerly(pki: StiPki) -> None:
    """The proxy starts decisions eagerly (sipguard.aio): a call that waits for its download
    finishes in a task; each call's download is still paid by its own trunk."""
    from dataclasses import replace

    from sipguard.aio import start_eagerly

    cfg = pki.config()
    v = Verifier(replace(cfg, x5u=replace(cfg.x5u, trunk_fetch_rate=0.001, trunk_fetch_burst=1)),
                 fetcher := MapFetcher({f"{BASE}/{n}.pem": pki.chain_pem("good") for n in "abc"}))
    results: dict[str, Any] = {}

    async def call(name: str, trunk: str) -> None:
        results[name] = await v.verify([_ident(pki, f"{BASE}/{name}.pem")], [ORIG], [DEST], NOW, trunk=trunk)

    async def go() -> None:
        fetcher.gate = asyncio.Event()
        tasks = [start_eagerly(call("a", "one")), start_eagerly(call("b", "two")),
                 start_eagerly(call("c", "one"))]   # trunk one spent its only token on a
        fetcher.gate.set()
        await asyncio.gather(*(t for t in tasks if t is not None))

    asyncio.run(go())
    assert results["a"].passed and results["b"].passed
    assert results["c"].reasons == (Reason.X5U_FETCH_FAILED,)
    assert fetcher.calls == {f"{BASE}/a.pem": 1, f"{BASE}/b.pem": 1}


# -- config: lab-only exemptions need allow_private ----------------------------------------------

def _x5u(text: str, base: Path) -> ShakenConfig:
    root = section_of(parse("shaken:\n  x5u:\n" + text, "prod.yaml"), "prod.yaml")
    return ShakenConfig.from_section(root.section("shaken"), str(base))


@pytest.mark.parametrize(("networks", "line", "words"), [
    ('["127.0.0.0/8"]', 3, "loopback"),
    ('["2001:4860::/32", "10.1.0.0/16"]', 3, "item 2: 10.1.0.0/16"),
    ("\n      - 0.0.0.0/0", 4, "this network"),
    ('["::/0"]', 3, "2000::/3"),
    ('["64:ff9b::/96"]', 3, "2000::/3"),
    ('["2002::/16"]', 3, "6to4"),
    ('["169.254.169.254/32"]', 3, "link-local"),
])
def test_special_use_allow_networks_refused_without_allow_private(tmp_path: Path, networks: str, line: int,
                                                                  words: str) -> None:
    text = f"    allow_networks: {networks}\n"
    with pytest.raises(ConfigError) as info:
        _x5u(text, tmp_path)
    err = info.value
    assert (err.path, err.line, err.key) == ("prod.yaml", line, "shaken.x5u.allow_networks")
    assert words in err.message and "allow_private: true" in err.message
    lab = _x5u(text + "    allow_private: true\n", tmp_path)
    assert lab.x5u.allow_networks


def test_public_allow_networks_need_no_allow_private(tmp_path: Path) -> None:
    cfg = _x5u('    allow_networks: ["2001:4860::/32", "8.8.8.0/24"]\n', tmp_path)
    assert len(cfg.x5u.allow_networks) == 2


def test_production_example_refuses_the_demo_exemption(tmp_path: Path) -> None:
    """Copying the demo's loopback exemption into the production example: refused at start,
    naming the line; the demo config itself sets allow_private and loads."""
    import shutil

    from sipguard.config import load_config

    config = Path(__file__).resolve().parents[2] / "config"
    shutil.copytree(config / "demo", tmp_path / "demo")
    shutil.copy(config / "policy.example.yaml", tmp_path)
    text = (config / "sipguard.example.yaml").read_text()
    assert "    allow_networks: []" in text and "allow_private: false" in text
    prod = tmp_path / "sipguard.yaml"
    prod.write_text(text.replace("    allow_networks: []", '    allow_networks: ["127.0.0.0/8"]'))
    line = 1 + text[:text.index("    allow_networks: []")].count("\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(prod))
    assert (info.value.line, info.value.key) == (line, "shaken.x5u.allow_networks")
    assert "allow_private: true" in info.value.message
    demo = load_config(str(config / "sipguard.demo.yaml"))
    assert demo.shaken.x5u.allow_networks == (ipaddress.ip_network("127.0.0.0/8"),)
    assert not load_config(str(config / "sipguard.example.yaml")).shaken.x5u.allow_networks


def test_pipeline_spends_the_budget_of_the_calls_trunk(tmp_path: Path, pki: StiPki) -> None:
    """sipguard's pipeline passes the trunk the INVITE came from: one trunk's burst is its own."""
    import shutil

    import yaml

    from sipguard.clock import ManualClock
    from sipguard.config import load_config
    from sipguard.pipeline import Pipeline
    from sipguard.sip import parse as parse_sip

    config = Path(__file__).resolve().parents[2] / "config"
    shutil.copytree(config / "demo", tmp_path / "demo")
    shutil.copy(config / "policy.example.yaml", tmp_path)
    data = yaml.safe_load((config / "sipguard.example.yaml").read_text())
    data["traceback"] = {"path": str(tmp_path / "tb.db"), "spool": str(tmp_path / "spool")}
    data["shaken"]["x5u"].update(trunk_fetch_rate=0.001, trunk_fetch_burst=1)
    (tmp_path / "sipguard.yaml").write_text(yaml.safe_dump(data))

    def invite(n: int, source: str) -> bytes:
        # loopback: refused by the guard once the download is started, so no network is used
        ident = shaken_identity(pki.key("good"), f"https://127.0.0.1/{n}.pem", orig=ORIG, dest=[DEST],
                                iat=int(NOW))
        return (f"INVITE sip:+{DEST}@10.0.0.1;user=phone SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {source}:5060;branch=z9hG4bK{n}\r\n"
                f"From: <sip:+{ORIG}@{source};user=phone>;tag=1\r\nTo: <sip:+{DEST}@10.0.0.1;user=phone>\r\n"
                f"Call-ID: c{n}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nIdentity: {ident}\r\n"
                "Content-Length: 0\r\n\r\n").encode()

    async def go() -> VerifierCounters:
        pipeline = await Pipeline.create(load_config(str(tmp_path / "sipguard.yaml")), ManualClock(NOW))
        try:
            for n, source in enumerate(("203.0.113.5", "203.0.113.6", "198.51.100.7")):  # a, a, b
                await pipeline.decide(parse_sip(invite(n, source)), (source, 5060), "udp")
            assert pipeline.verifier is not None
            return pipeline.verifier.counters
        finally:
            await pipeline.aclose()

    stats = asyncio.run(go())
    assert stats.x5u_refused == 2 and stats.x5u_budget_skips == 1   # a's second, not b's first


@pytest.mark.parametrize(("head", "message"), [
    (b"HTTP/1.1 \xb200 OK\r\n\r\n", "bad status line"),                   # latin-1 superscript two
    (b"HTTP/1.1 200 OK\r\nContent-Length: \xb9\r\n\r\n", "bad Content-Length"),
])
def test_a_servers_superscript_digits_are_refused_by_name(head: bytes, message: str) -> None:
    """str.isdigit takes them and int() refuses them: the refusal names the bad field."""
    from sipguard.shaken import x5u

    async def read() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(head)
        reader.feed_eof()
        status, headers = await x5u._read_head(reader)
        await x5u._read_body(reader, headers, 1000)

    with pytest.raises(ValueError, match=message):
        asyncio.run(read())
