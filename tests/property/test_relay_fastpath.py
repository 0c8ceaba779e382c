"""Differential: the relay fast path (sipguard.sip.relay) never decides differently from the
full parse. Two proxy cores with the same transactions, one with the fast path and one
without, get the same message; they must send the same bytes to the same places and end
with the same counters and transaction states. Messages are generated in the shapes trunks
send (compact and odd-cased names, received/rport, lists in Via lines, folding, LF line
ends, wrong Content-Length, Route, Proxy-Require ...), then some are mutated at random."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sipguard.clock import SystemClock
from sipguard.config import Config, CoreSettings
from sipguard.pipeline import Pipeline
from sipguard.proxy.core import ProxyCore
from sipguard.proxy.messages import BRANCH_PREFIX, Answers, Counters, Hop, tag
from sipguard.proxy.stateless import StatelessRelay, stateless_branch
from sipguard.proxy.transactions import InviteTx, State
from sipguard.sip import Request, SipParseError, parse, parse_via, relay
from tests.proxy_fixtures import Capture, proxy_config
from tests.sipclient import mutate

OURS = ("127.0.0.1", 5060)
UAC = ("127.0.0.1", 5061)
UAS = ("127.0.0.1", 5070)
CLIENT_BRANCH = BRANCH_PREFIX + "00112233aabbccdd"
OLD_CLIENT_BRANCH = BRANCH_PREFIX + "0123456789abcdef"
SERVER_BRANCH = "z9hG4bK-uac-1"
SERVER_KEY = f"{SERVER_BRANCH}|127.0.0.1|5061"
OUR_TAG = tag(UAC, SERVER_KEY)   # the To tag of the responses the core makes for that transaction


@dataclass
class Setup:
    config: Config
    pipeline: Pipeline  # a real one (compiled, the core checks its type), never asked: no INVITE here


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    cfg = proxy_config(tmp_path_factory.mktemp("relay"), OURS, UAS, sources="127.0.0.0/8")
    pipeline = asyncio.run(Pipeline.create(cfg, SystemClock()))
    yield Setup(cfg, pipeline)
    asyncio.run(pipeline.aclose())


def make_core(config: Setup, fast: bool, redirect: bool = False) -> ProxyCore:
    core = ProxyCore(CoreSettings.of(config.config), config.pipeline, Capture())
    core.fast_path = fast
    core.redirect = redirect
    inv = (b"INVITE sip:+13036231000@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch="
           + CLIENT_BRANCH.encode() + b";rport\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=" + SERVER_BRANCH.encode()
           + b"\r\nFrom: <sip:+12127363100@127.0.0.1>;tag=a\r\nTo: <sip:+13036231000@127.0.0.1>\r\n"
           b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 0\r\n\r\n")
    for branch, state, table in ((CLIENT_BRANCH, State.PROCEEDING, core.txs.clients),
                                 (OLD_CLIENT_BRANCH, State.DONE, core.txs.clients)):
        tx = InviteTx(SERVER_KEY, UAC, "udp", None, inv, state=state, client_branch=branch,
                      dest=Hop(UAS[0], UAS[1], "udp"), sent=inv)
        table[branch] = tx
        core.txs.invites[tx.key] = tx
    return core


def outcome(core: ProxyCore) -> tuple[Any, ...]:
    txs = tuple((tx.state, tx.last, tx.forwarded) for tx in core.txs.clients.values())
    return core.sender.sent, astuple(core.counters), txs  # type: ignore[attr-defined]


def check_same(config: Any, data: bytes, source: tuple[str, int], redirect: bool = False) -> bool:
    """Both cores agree; returns whether the fast path took the message."""
    fast, full = make_core(config, True, redirect), make_core(config, False, redirect)

    async def both() -> None:  # in a loop: a mutation may make an initial INVITE, forwarded with its timer
        fast.receive(data, source, "udp", None)
        full.receive(data, source, "udp", None)
    asyncio.run(both())
    assert outcome(fast) == outcome(full), data
    try:
        took = relay.response(data, 65535) if data[:4] == b"SIP/" else relay.request(data, 65535)
    except SipParseError:  # a bad value the full path reports
        return False
    return took is not None


def signed_route(tag: str, down: tuple[str, int, str] = (*UAS, "udp"), call_id: str = "c1@127.0.0.1") -> str:
    """Our Record-Route as the INVITE of dialog ``call_id`` got it, signed for ``tag`` (the
    From tag "a": requests from the caller go to ``down``; the To tag "b": from the callee, to
    the caller), with the key both cores use (no proxy.secret_file: the start-up key)."""
    inv = parse(b"INVITE sip:+13036231000@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKr\r\n"
                b"From: <sip:+12127363100@127.0.0.1>;tag=" + tag.encode() + b"\r\nTo: <sip:+13036231000@127.0.0.1>\r\n"
                b"Call-ID: " + call_id.encode() + b"\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", 65535)
    assert isinstance(inv, Request)
    cap = Capture()
    relay_ = StatelessRelay(cap, Answers(cap, Counters(), SystemClock()), lambda req, source: source)
    token = relay_.rr_token(inv, Hop(*UAC, "udp"), Hop(*down))
    return f"<sip:127.0.0.1:5060;lr;sgrr={token}>"


ROUTES = [signed_route("a"), signed_route("b"), signed_route("a", ("192.0.2.7", 5071, "tcp")),
          signed_route("zz"), signed_route("a").replace("sgrr=", "sgrr=A"), "<sip:127.0.0.1:5060;lr;sgrr>",
          "<sip:proxy.example.com;lr>", signed_route("a") + ", <sip:proxy.example.com;lr>",
          '"x" ' + signed_route("b"), signed_route("a").replace("<sip:", "<sips:")]


# -- generators ------------------------------------------------------------------------------
TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=8)
SPELL = {"Via": ["Via", "v", "VIA", "via"], "From": ["From", "f"], "To": ["To", "t", "TO"],
         "Call-ID": ["Call-ID", "i"], "CSeq": ["CSeq", "CSEQ"], "Max-Forwards": ["Max-Forwards", "max-forwards"],
         "Content-Length": ["Content-Length", "l"], "Route": ["Route"], "Proxy-Require": ["Proxy-Require"],
         "Contact": ["Contact", "m"], "Record-Route": ["Record-Route"], "Subject": ["Subject", "s"]}
SEP = st.sampled_from([": ", ": ", ": ", ":", " : ", ":\t"])


def mostly(common: Any, *rare: Any) -> st.SearchStrategy[Any]:
    """``common`` three times in four, else one of ``rare``: most messages have the common
    shape (so the fast path is exercised), every odd one still comes up."""
    return st.sampled_from([common] * (3 * len(rare) or 1) + list(rare))


@st.composite
def our_via(draw: st.DrawFn) -> str:
    branch = draw(mostly(CLIENT_BRANCH, OLD_CLIENT_BRANCH, BRANCH_PREFIX + "ffffffffffffffff", "z9hG4bKother",
                         BRANCH_PREFIX))
    params = draw(mostly(";rport=5060", "", ";rport", ";received=127.0.0.1", ";rport=1;received=10.0.0.9",
                         ";rport=abc"))
    return f"SIP/2.0/{draw(mostly('UDP', 'udp', 'TCP'))} 127.0.0.1:5060;branch={branch}{params}"


@st.composite
def peer_via(draw: st.DrawFn) -> str:
    host = draw(mostly("127.0.0.1", "192.0.2.7", "uac.example.com", "[2001:db8::1]", "255.255.255.255",
                       "0.0.0.0", "bad host"))
    port = draw(mostly(":5061", "", ":70000", ":0"))
    params = draw(mostly("", ";rport", ";rport=7000", ";received=198.51.100.4", ";received=224.0.0.1",
                         ";rport;received=127.0.0.1", ";x=1"))
    return f"SIP/2.0/{draw(mostly('UDP', 'TCP', 'TLS'))} {host}{port};branch={SERVER_BRANCH}{params}"


def header(draw: st.DrawFn, name: str, value: str) -> str:
    return draw(st.sampled_from(SPELL.get(name, [name]))) + draw(SEP) + value


@st.composite
def message_lines(draw: st.DrawFn, vias: list[str], method: str, cseq_method: str, to_tag: str | None,
                  body: bytes) -> list[str]:
    lines: list[str] = []
    if draw(st.integers(0, 4)) or len(vias) < 2:
        lines += [header(draw, "Via", v) for v in vias]
    else:  # two values in the first Via line
        lines += [header(draw, "Via", ", ".join(vias[:2]))] + [header(draw, "Via", v) for v in vias[2:]]
    to = "<sip:+13036231000@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines += [header(draw, "From", "<sip:+12127363100@127.0.0.1>;tag=a"), header(draw, "To", to),
              header(draw, "Call-ID", "c1@127.0.0.1"),
              header(draw, "CSeq", f"{draw(mostly('1', '2', '99999999999', 'x'))} {cseq_method}")]
    if draw(st.integers(0, 4)) > 0:
        lines.append(header(draw, "Max-Forwards", draw(mostly("70", "1", "0", "256", "07", "x"))))
    for extra in draw(st.lists(st.sampled_from(["Route", "Proxy-Require", "Contact", "Record-Route", "Subject",
                                                "X-Custom", "Via", "Contact", "Subject", "X-Custom"]),
                               max_size=draw(st.sampled_from([0, 0, 1, 3])))):
        value = {"Route": draw(st.sampled_from(ROUTES)), "Proxy-Require": "foo",
                 "Contact": "<sip:uas@127.0.0.1:5070>", "Record-Route": "<sip:127.0.0.1:5060;lr;sgrr>",
                 "Via": "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKlate"}.get(extra, draw(TOKEN))
        lines.insert(draw(st.integers(0, len(lines))), header(draw, extra, value))
    length = draw(mostly(len(body), None, len(body) + 1, max(len(body) - 1, 0)))
    if length is not None:
        lines.append(header(draw, "Content-Length", str(length)))
    if draw(st.integers(0, 19)) == 0 and lines:  # a folded line
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i].replace(" ", "\r\n  ", 1)
    return lines


def assemble(draw: st.DrawFn, start: str, lines: list[str], body: bytes) -> bytes:
    eol = draw(st.sampled_from(["\r\n"] * 9 + ["\n"]))
    head = eol.join([start, *lines]).replace("\r\n", eol)
    return (head + eol + eol).encode() + body


@st.composite
def response(draw: st.DrawFn) -> tuple[bytes, tuple[str, int]]:
    status = draw(st.sampled_from([100, 180, 183, 200, 202, 486, 487, 603, 99, 700]))
    method = draw(st.sampled_from(["INVITE", "INVITE", "BYE", "CANCEL", "OPTIONS"]))
    vias = [draw(our_via())] + draw(st.lists(peer_via(), max_size=2))
    body = draw(st.sampled_from([b"", b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"]))
    lines = draw(message_lines(vias, method, method, draw(st.sampled_from([None, "b", "sgx"])), body))
    start = draw(mostly(f"SIP/2.0 {status} OK", f"SIP/2.0 {status} Ringing here", f"SIP/2.0 {status}",
                        f"sip/2.0 {status} OK", f"SIP/2.0  {status} OK"))
    return assemble(draw, start, lines, body), UAS


@st.composite
def request(draw: st.DrawFn) -> tuple[bytes, tuple[str, int]]:
    method = draw(st.sampled_from(["ACK", "ACK", "BYE", "BYE", "INFO", "UPDATE", "OPTIONS", "MESSAGE", "INVITE",
                                   "CANCEL"]))
    uri = draw(mostly("sip:uas@127.0.0.1:5070;transport=UDP", "sip:uas@127.0.0.1:5070",
                      "sip:127.0.0.1:5060", "sip:uas@core.example.com", "tel:+13036231000",
                      "sips:uas@[2001:db8::7]:5071;transport=tcp", "mailto:x@y", "sip:uas@",
                      "<sip:uas@127.0.0.1>", "urn:service:sos"))
    vias = [draw(peer_via())] + draw(st.lists(peer_via(), max_size=1))
    cseq_method = method if draw(st.integers(0, 9)) else "INVITE"
    tag = draw(st.sampled_from(["b", "b", None, OUR_TAG]))
    if method == "INVITE":
        tag = "b"  # a re-INVITE: an initial one would start a decision (these cores have no pipeline)
    lines = draw(message_lines(vias, method, cseq_method, tag, b""))
    start = draw(mostly(f"{method} {uri} SIP/2.0", f"{method}  {uri} SIP/2.0", f"{method} {uri} SIP/3.0"))
    source = draw(st.sampled_from([UAC, ("192.0.2.7", 5061), ("127.0.0.1", 7000)]))
    return assemble(draw, start, lines, b""), source


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[tuple[bytes, tuple[str, int]]]) -> tuple[bytes, tuple[str, int]]:
    data, source = draw(base)
    return mutate(draw, data, b" ,;:\r\n\t<>\"=x0\x00\xff", 3), source


SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# sipp's UAS echoes the Vias it got as one line ([last_Via:]): "Via: ours, theirs"
SIPP_200 = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=" + CLIENT_BRANCH.encode()
            + b";rport=5060, SIP/2.0/UDP 127.0.0.1:5061;branch=" + SERVER_BRANCH.encode()
            + b"\r\nFrom: <sip:+12127363100@127.0.0.1>;tag=a\r\nTo: <sip:+13036231000@127.0.0.1>;tag=b\r\n"
              b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:uas@127.0.0.1:5070;transport=UDP>\r\n"
              b"Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n")
SIPP_BYE = (b"BYE sip:uas@127.0.0.1:5070;transport=UDP SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2\r\n"
            b"From: <sip:+12127363100@127.0.0.1>;tag=a\r\nTo: <sip:+13036231000@127.0.0.1>;tag=b\r\n"
            b"Call-ID: c1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


@given(response())
@example((SIPP_200, UAS))
@example((SIPP_200.replace(b";rport=5060, SIP", b";rport=5060\r\nVia: SIP"), UAS))
@example((SIPP_200.replace(b";rport=5060, SIP", b";rport=5060 ,SIP/2.0/UDP a:1, SIP"), UAS))
@SETTINGS
def test_responses_same_on_both_paths(config: Any, case: tuple[bytes, tuple[str, int]]) -> None:
    check_same(config, *case)


@given(request())
@example((SIPP_BYE, UAC))
@example((SIPP_BYE.replace(b"BYE", b"ACK").replace(b"2 ACK", b"1 ACK"), UAC))
@SETTINGS
def test_requests_same_on_both_paths(config: Any, case: tuple[bytes, tuple[str, int]]) -> None:
    check_same(config, *case)


@given(request())
@example((SIPP_BYE, UAC))
@SETTINGS
def test_requests_same_on_both_paths_in_redirect_mode(config: Any, case: tuple[bytes, tuple[str, int]]) -> None:
    """A redirecting sipguard answers what it would relay (405), but relays or absorbs ACKs."""
    check_same(config, *case, redirect=True)


@given(mutated(response() | request()))
@SETTINGS
def test_mutated_messages_same_on_both_paths(config: Any, case: tuple[bytes, tuple[str, int]]) -> None:
    check_same(config, *case)


def test_the_fast_path_takes_the_common_call_flow(config: Any) -> None:
    """Not vacuous: sipp's 200 and BYE, a relayed ACK, the BYE's 200 go the fast way, with
    the Vias in one line (as sipp sends them) or in several."""
    assert check_same(config, SIPP_200, UAS)
    assert check_same(config, SIPP_200.replace(b";rport=5060, SIP", b";rport=5060\r\nv: SIP"), UAS)
    assert check_same(config, SIPP_BYE, UAC)
    ack = SIPP_BYE.replace(b"BYE sip", b"ACK sip").replace(b"2 BYE", b"1 ACK")
    assert check_same(config, ack, UAC)
    ours = stateless_branch(make_core(config, True).stateless.secret, parse_via("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2"),
                             "BYE", 2)
    bye_200 = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=" + ours.encode()
               + b";rport=5060\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2\r\n"
                 b"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>;tag=b\r\nCall-ID: c1\r\n"
                 b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")
    for message in (bye_200, bye_200.replace(b"5060\r\nVia: SIP", b"5060,SIP")):
        assert check_same(config, message, UAS)
        fast = make_core(config, True)
        fast.receive(message, UAS, "udp", None)
        [(data, addr, _)] = fast.sender.sent  # type: ignore[attr-defined]
        assert addr == UAC and data.startswith(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;")


def test_the_fast_path_follows_our_record_route(config: Any) -> None:
    """With proxy.record_route on, the caller's ACK and BYE and the callee's BYE carry our
    signed Route: the fast path relays them (to the other end, our Route line gone) and
    sends what the full path sends; a token that does not verify, or a Route line with
    another entry after ours, goes the full way."""
    route = b"Route: " + signed_route("a", call_id="c1").encode() + b"\r\n"
    bye = SIPP_BYE.replace(b"CSeq: 2 BYE\r\n", b"CSeq: 2 BYE\r\n" + route)
    ack = bye.replace(b"BYE sip", b"ACK sip").replace(b"2 BYE", b"1 ACK")
    back = (SIPP_BYE.replace(b"BYE sip:uas@127.0.0.1:5070;transport=UDP", b"BYE sip:+12127363100@127.0.0.1:5061")
            .replace(b"127.0.0.1:5061;branch=z9hG4bK-2", b"127.0.0.1:5070;branch=z9hG4bK-back")
            .replace(b"CSeq: 2 BYE\r\n", b"CSeq: 7 BYE\r\nRoute: " + signed_route("b", call_id="c1").encode() + b"\r\n"))

    def fast(data: bytes, source: tuple[str, int]) -> tuple[bool, list[Any]]:
        core = make_core(config, True)
        req = relay.request(data, 65535)
        assert req is not None
        return core.stateless.fast_request(req, source, False, core._absorbed), core.sender.sent  # type: ignore[attr-defined]

    for data, source, to in ((bye, UAC, UAS), (ack, UAC, UAS), (back, UAS, UAC)):
        assert check_same(config, data, source)
        took, sent = fast(data, source)
        assert took and len(sent) == 1 and sent[0][1] == to and b"sgrr" not in sent[0][0], sent
    forged = bye.replace(b"sgrr=", b"sgrr=A")
    listed = bye.replace(b"sgrr=", b"x=1, <sip:proxy.example.com;lr>;sgrr=")
    for data in (forged, listed):
        assert check_same(config, data, UAC)
        assert fast(data, UAC) == (False, [])


def test_what_the_fast_path_leaves_to_the_full_parse(config: Any) -> None:
    """Folded lines, LF line ends, a list in the top Via, a missing Content-Length."""
    assert relay.response(SIPP_200.replace(b"Call-ID: c1", b"Call-ID:\r\n c1"), 65535) is None
    assert relay.response(SIPP_200.replace(b"\r\n", b"\n"), 65535) is None
    assert relay.request(SIPP_BYE.replace(b"\r\nFrom", b", SIP/2.0/UDP 192.0.2.1\r\nFrom"), 65535) is None
    assert relay.request(SIPP_BYE.replace(b"Content-Length: 0\r\n", b""), 65535) is None
    assert relay.request(SIPP_BYE, 100) is None  # over the size limit: the full path answers 513


def test_relayed_lines_are_the_full_paths(tmp_path: Path, config: Any) -> None:
    """Received/rport filled in on the previous hop's Via, which moves to the top as pop +
    prepend do; Max-Forwards less one; our Via first."""
    bye = SIPP_BYE.replace(b"branch=z9hG4bK-2", b"branch=z9hG4bK-2;rport")
    fast = make_core(config, True)
    fast.receive(bye, ("127.0.0.7", 7000), "udp", None)
    [(data, addr, transport)] = fast.sender.sent  # type: ignore[attr-defined]
    assert addr == UAS and transport == "udp"
    lines = data.split(b"\r\n")
    assert lines[1].startswith(b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=" + BRANCH_PREFIX.encode())
    assert lines[2] == b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2;rport=7000;received=127.0.0.7"
    assert b"Max-Forwards: 69" in lines
