"""Pipeline.start: the decision without a coroutine when nothing has to wait, against the
coroutine path (``decide`` as it ran before: verify, then the store's lookup, each awaited).

Differential: on the same INVITE, two pipelines built alike, one deciding at once and one
forced onto the coroutine path (``verify_now`` answering "wait"), give the same Outcome and
the same counts (verifier, certificate cache, verified-token cache, store). Where something
must wait (a certificate not downloaded yet, several Identity values, a store whose lookup
is replaced), ``start`` hands back the coroutine having counted and stored nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sipguard.clock import ManualClock
from sipguard.pipeline import Outcome, Pipeline
from sipguard.shaken.cache import CacheCounters, VerifierCounters
from sipguard.sip import parse
from sipguard.store.base import DEGRADED, Lookups, StoreCounters, lookup_now_of
from tests.proxy_fixtures import example_config
from tests.shaken_pki import StiPki, div_identity, identity_header, shaken_identity, shaken_token

NOW = 1_800_000_000.0
X5U = "https://certs.example.net/good.pem"
A, B, C = "12125551234", "13036231000", "14155550100"
SOURCE = ("192.0.2.10", 5060)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
    return StiPki(tmp_path_factory.mktemp("pki"), now=NOW)


def config(tmp_path: Path, pki: StiPki) -> Any:
    return example_config(tmp_path, anchors=pki.anchors)


def invite(identities: list[str], call_id: str = "c1", caller: str = A, pai: str | None = None) -> bytes:
    lines = [f"INVITE sip:+{B}@10.0.0.1;user=phone SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1",
             f"From: <sip:+{caller}@192.0.2.10;user=phone>;tag=1", f"To: <sip:+{B}@10.0.0.1;user=phone>",
             f"Call-ID: {call_id}", "CSeq: 1 INVITE", "Max-Forwards: 70"]
    if pai is not None:
        lines.append(f"P-Asserted-Identity: {pai}")
    lines += [f"Identity: {value}" for value in identities]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def tampered(ident: str) -> str:
    token, rest = ident.split(";", 1)
    head, payload, sig = token.split(".")
    sig = ("B" if sig[5] == "A" else "A").join((sig[:5], sig[6:]))
    return f"{head}.{payload}.{sig};{rest}"


def cases(pki: StiPki) -> dict[str, list[str]]:
    key = pki.key("good")
    good = shaken_identity(key, X5U, orig=A, dest=[B], iat=int(NOW))
    return {
        "unsigned": [],
        "passed": [good],
        "bad-signature": [tampered(good)],
        "stale-iat": [shaken_identity(key, X5U, orig=A, dest=[B], iat=int(NOW) - 3600)],
        "future-iat": [shaken_identity(key, X5U, orig=A, dest=[B], iat=int(NOW) + 3600)],
        "orig-mismatch": [shaken_identity(key, X5U, orig=C, dest=[B], iat=int(NOW))],
        "dest-mismatch": [shaken_identity(key, X5U, orig=A, dest=[C], iat=int(NOW))],
        "attest-c": [shaken_identity(key, X5U, orig=A, dest=[B], iat=int(NOW), attest="C")],
        "bad-alg-param": [identity_header(shaken_token(key, X5U, orig=A, dest=[B], iat=int(NOW)), X5U, alg="ES384")],
        "info-not-x5u": [identity_header(shaken_token(key, X5U, orig=A, dest=[B], iat=int(NOW)),
                                         "https://certs.example.net/other.pem")],
        "not-a-passport": ["abc.def;info=<https://certs.example.net/good.pem>;alg=ES256;ppt=shaken"],
        "no-ppt": [shaken_token(key, X5U, orig=A, dest=[B], iat=int(NOW)) + f";info=<{X5U}>;alg=ES256"],
        "div-ppt-alone": [div_identity(key, X5U, orig=A, dest=[B], div=C, iat=int(NOW))],
    }


async def pipeline(tmp_path: Path, pki: StiPki, name: str) -> Pipeline:
    return await Pipeline.create(config(tmp_path / name, pki), ManualClock(NOW), x5u_map={X5U: pki.chain_pem("good")})


def counts(p: Pipeline) -> tuple[Any, ...]:
    tokens = p.verifier.tokens
    return (dataclasses.replace(p.verifier.counters), dataclasses.replace(p.verifier.creds.certs.counters),
            dataclasses.replace(tokens.counters) if tokens is not None else None,
            dataclasses.replace(p.store.counters), len(p.verifier.creds.flights))


def same(a: Outcome, b: Outcome) -> None:
    """Equal Outcomes; an Identity sipguard added is compared by presence (ES256 signatures
    are randomised: two signings of the same claims differ)."""
    assert (a.identity_added is None) == (b.identity_added is None)
    assert dataclasses.replace(a, identity_added=None) == dataclasses.replace(b, identity_added=None)


def forced(p: Pipeline) -> None:
    """The coroutine path for ``p``'s next call, by what makes ``start`` wait in service (so
    that it works on the compiled tree too, whose classes take no patched methods): the
    cached certificates' revocation state is due (``check_now`` answers "wait", ``check``
    reads it again: CRLs are off, so no download and nothing counted), and the store's
    ``lookup`` is set on the instance (``lookup_now_of``: asked through the coroutine)."""
    for entry in p.verifier.creds.certs._data.values():
        entry.crl_until = 0.0
    p.store.lookup = p.store.lookup  # type: ignore[method-assign]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


WAITS = ("no-ppt", "div-ppt-alone")   # a value that is not plainly shaken: the general loop, in verify


def test_at_once_and_coroutine_give_the_same_outcome_and_counts(tmp_path: Path, pki: StiPki) -> None:
    async def go() -> None:
        now, later = await pipeline(tmp_path, pki, "now"), await pipeline(tmp_path, pki, "later")
        forced(later)
        try:
            warm = invite(list(cases(pki)["passed"]), "warm-up")
            for p in (now, later):      # the certificate downloaded and cached by an earlier call
                await p.decide(parse(warm), SOURCE, "udp")
            for label, identities in cases(pki).items():
                for call_id in (f"{label}-1", f"{label}-1", f"{label}-2"):   # first, again, replayed
                    data = invite(identities, call_id)
                    a = now.start(parse(data), SOURCE, "udp")
                    # nothing to wait for: decided at once
                    assert isinstance(a, Outcome) is (label not in WAITS), label
                    forced(later)
                    b = later.start(parse(data), SOURCE, "udp")
                    assert not isinstance(b, Outcome)
                    same(a if isinstance(a, Outcome) else await a, await b)
                    assert counts(now) == counts(later), (label, call_id)
        finally:
            await now.aclose()
            await later.aclose()
    run(go())


def test_with_the_token_cache_off_too(tmp_path: Path, pki: StiPki) -> None:
    async def go() -> None:
        now, later = await pipeline(tmp_path, pki, "now"), await pipeline(tmp_path, pki, "later")
        forced(later)
        for p in (now, later):
            p.verifier.tokens = None   # every call decodes and checks ES256 (bench_core's setting)
        try:
            for label, identities in cases(pki).items():
                data = invite(identities, label)
                if label != "unsigned":
                    await later.decide(parse(invite(cases(pki)["passed"], "w")), SOURCE, "udp")
                    await now.decide(parse(invite(cases(pki)["passed"], "w")), SOURCE, "udp")
                a = now.start(parse(data), SOURCE, "udp")
                forced(later)
                b = later.start(parse(data), SOURCE, "udp")
                assert isinstance(a, Outcome) is (label not in WAITS) and not isinstance(b, Outcome)
                same(a if isinstance(a, Outcome) else await a, await b)
                assert counts(now) == counts(later), label
        finally:
            await now.aclose()
            await later.aclose()
    run(go())


@pytest.mark.parametrize("label", ["passed", "bad-signature", "stale-iat", "not-a-passport", "unsigned"])
def test_a_certificate_not_yet_downloaded_waits_having_counted_nothing(tmp_path: Path, pki: StiPki,
                                                                       label: str) -> None:
    """The first call naming an x5u: the download must wait, so ``start`` returns the
    coroutine, and until it runs no count moved and the store saw nothing (no seen-set entry,
    no lookup); then the same Outcome as the coroutine path from the start. A PASSporT that
    fails before any download (stale, malformed) and an unsigned call are decided at once."""
    async def go() -> None:
        now, later = await pipeline(tmp_path, pki, "now"), await pipeline(tmp_path, pki, "later")
        forced(later)
        try:
            data = invite(cases(pki)[label], "first")
            before = counts(now)
            a = now.start(parse(data), SOURCE, "udp")
            b = later.start(parse(data), SOURCE, "udp")
            assert not isinstance(b, Outcome)
            if label in ("passed", "bad-signature"):
                assert not isinstance(a, Outcome)
                assert counts(now) == before == (VerifierCounters(), CacheCounters(), CacheCounters(),
                                                 StoreCounters(), 0)
                a = await a
            else:
                assert isinstance(a, Outcome)
            same(a, await b)
            assert counts(now) == counts(later)
            assert now.verifier.counters.x5u_fetches == (1 if label in ("passed", "bad-signature") else 0)
        finally:
            await now.aclose()
            await later.aclose()
    run(go())


def test_several_identity_values_take_the_coroutine(tmp_path: Path, pki: StiPki) -> None:
    """div PASSporTs (several values, History-Info read): the general path, through ``verify``."""
    async def go() -> None:
        now, later = await pipeline(tmp_path, pki, "now"), await pipeline(tmp_path, pki, "later")
        forced(later)
        key = pki.key("good")
        try:
            for p in (now, later):
                await p.decide(parse(invite(cases(pki)["passed"], "warm")), SOURCE, "udp")
            good = cases(pki)["passed"][0]
            for identities in ([good, div_identity(key, X5U, orig=A, dest=[B], div=C, iat=int(NOW))],
                               [f"{good}, {good}"], [good, good]):
                data = invite(identities, "many")
                a = now.start(parse(data), SOURCE, "udp")
                b = later.start(parse(data), SOURCE, "udp")
                assert not isinstance(a, Outcome) and not isinstance(b, Outcome)
                same(await a, await b)
                assert counts(now) == counts(later)
        finally:
            await now.aclose()
            await later.aclose()
    run(go())


def test_a_replaced_store_lookup_is_what_gets_asked(tmp_path: Path, pki: StiPki) -> None:
    """A memory store whose ``lookup`` is replaced on the instance (tests stand a store that is
    down this way) is asked through the coroutine: the Outcome is the degraded one."""
    async def go() -> None:
        p = await pipeline(tmp_path, pki, "down")
        assert lookup_now_of(p.store) is not None

        async def down(keys: Any, now: float) -> Lookups:
            return DEGRADED
        p.store.lookup = down  # type: ignore[method-assign]
        try:
            assert lookup_now_of(p.store) is None
            for identities in ([], cases(pki)["passed"]):
                got = p.start(parse(invite(identities)), SOURCE, "udp")
                assert not isinstance(got, Outcome)
                out = await got
                assert out.facts.store_degraded and out.lookups is DEGRADED
        finally:
            await p.aclose()
    run(go())


def test_unknown_source_and_a_bad_header_are_answered_at_once(tmp_path: Path, pki: StiPki) -> None:
    from sipguard.sip.errors import SipParseError

    async def go() -> None:
        p = await pipeline(tmp_path, pki, "p")
        try:
            out = p.start(parse(invite([])), ("203.0.113.9", 5060), "udp")
            assert isinstance(out, Outcome) and out.decision.rule == "unknown-source"
            with pytest.raises(SipParseError):   # as from decide: the core answers 400
                p.start(parse(invite([], pai="<sip:+1212@[bad")), SOURCE, "udp")
            with pytest.raises(SipParseError):
                await p.decide(parse(invite([], pai="<sip:+1212@[bad")), SOURCE, "udp")
        finally:
            await p.aclose()
    run(go())
