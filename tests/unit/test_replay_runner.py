"""The replay runner against a small fake pipeline and parser (the real ones are tested
by their owners and by the end-to-end replay test)."""

from __future__ import annotations

import asyncio
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sipguard.clock import ManualClock, SystemClock
from sipguard.replay import output
from sipguard.replay.capture import CapturedMessage, CaptureReport
from sipguard.replay.pcapwrite import Message, write_capture
from sipguard.replay.runner import (
    ReplayDecision,
    Replayer,
    ReplayError,
    changed,
    load_x5u_map,
    parse_clock,
    replay,
)


class FakeParseError(Exception):
    def __init__(self, reason: str, partial: Any = None) -> None:
        super().__init__(reason)
        self.partial = partial


@dataclass
class FakeVia:
    branch: str | None
    host: str = "192.0.2.1"   # the sent-by of every test message's Via
    port: int | None = None


@dataclass
class FakeRequest:
    method: str
    call_id: str
    top_via: FakeVia


def fake_parse(data: bytes) -> FakeRequest:
    text = data.decode("latin-1")
    method = text.split(" ", 1)[0]
    cid = re.search(r"(?im)^call-id: *(\S+)", text)
    branch = re.search(r"branch=([^;\s]+)", text)
    req = FakeRequest(method, cid.group(1) if cid else "", FakeVia(branch.group(1) if branch else None))
    if "BROKEN" in text:
        raise FakeParseError("bad header", req if cid else None)
    return req


@dataclass
class TN:
    e164: str | None


@dataclass
class FakeOutcome:
    call: Any
    trunk: Any
    verification: Any
    decision: Any
    signed: bool = False


@dataclass
class FakeDecision:
    action: str
    status: int | None = None
    rule: str | None = None


@dataclass
class FakeVerification:
    verstat: str = "No-TN-Validation"
    attest: str | None = None
    reasons: tuple[str, ...] = ("no-identity",)
    spc: str | None = None


@dataclass
class FakeCall:
    call_id: str
    caller: TN = field(default_factory=lambda: TN("+442071234567"))
    callee: TN = field(default_factory=lambda: TN("+12025550100"))


@dataclass
class FakeTrunk:
    id: str


class FakePipeline:
    """Rejects call ids starting with 'bad', records the clock time of each decision."""

    def __init__(self, clock: Any, reject_prefix: str = "bad") -> None:
        self.clock = clock
        self.reject_prefix = reject_prefix
        self.seen: list[tuple[str, float, tuple[str, int], str]] = []
        self.closed = False

    async def decide(self, req: FakeRequest, source: tuple[str, int], transport: str) -> FakeOutcome:
        self.seen.append((req.call_id, self.clock.time(), source, transport))
        if req.call_id.startswith(self.reject_prefix):
            dec = FakeDecision("reject", 603, "blocked")
        else:
            dec = FakeDecision("forward", None, None)
        return FakeOutcome(FakeCall(req.call_id), FakeTrunk("carrier-a"), FakeVerification(), dec)

    async def aclose(self) -> None:
        self.closed = True


def sip(method: str, call_id: str, branch: str = "z9hG4bK1", extra: str = "") -> bytes:
    return (f"{method} sip:+12025550100@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch={branch}\r\n"
            f"Call-ID: {call_id}\r\n{extra}Content-Length: 0\r\n\r\n").encode()


def cm(data: bytes, t: float = 1_700_000_000.0, src: tuple[str, int] = ("198.51.100.7", 5060)
       ) -> CapturedMessage:
    return CapturedMessage(t, src, ("192.0.2.1", 5060), "udp", data, 1)


def run_all(messages: list[CapturedMessage], clock: Any = None, mode: str = "capture"
            ) -> tuple[list[ReplayDecision], FakePipeline, Replayer]:
    clock = clock or ManualClock(0.0)
    pipe = FakePipeline(clock)
    rep = Replayer(pipe, clock, mode, parse=fake_parse, parse_error=FakeParseError)

    async def go() -> list[ReplayDecision]:
        out = []
        for m in messages:
            d = await rep.decide(m)
            if d is not None:
                out.append(d)
        return out
    return asyncio.run(go()), pipe, rep


def test_invites_only_and_retransmissions_once() -> None:
    msgs = [cm(sip("INVITE", "c1"), 1.0), cm(sip("INVITE", "c1"), 1.5), cm(b"SIP/2.0 100 Trying\r\n\r\n"),
            cm(sip("ACK", "c1")), cm(sip("INVITE", "c1", "z9hG4bK2"), 3.0), cm(sip("OPTIONS", "o")),
            cm(sip("INVITE", "bad-2"), 4.0)]
    decisions, pipe, rep = run_all(msgs)
    assert [(d.call_id, d.action, d.status, d.rule) for d in decisions] == [
        ("c1", "forward", None, None), ("c1", "forward", None, None), ("bad-2", "reject", 603, "blocked")]
    assert rep.retransmissions == 1 and rep.invites == 3


def invite(call_id: str, sent_by: str, branch: str = "z9hG4bK1") -> bytes:
    return (f"INVITE sip:+12025550100@example.net SIP/2.0\r\nVia: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
            "From: <sip:+442071234567@a.example>;tag=1\r\nTo: <sip:+12025550100@example.net>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def test_a_retransmission_is_the_transaction_serve_sees() -> None:
    """Replay and serve share one definition of the same transaction (RFC 3261 17.2.3,
    ``sip.transaction.server_key``): the INVITE again from another source port (a NAT
    rebinding) is a retransmission; the same branch and Call-ID from another Via sent-by is
    another transaction. With the real parser."""
    clock = ManualClock(0.0)
    rep = Replayer(FakePipeline(clock), clock, "capture")
    msgs = [cm(invite("c1", "192.0.2.1:5060"), 1.0, ("192.0.2.1", 5060)),
            cm(invite("c1", "192.0.2.1:5060"), 1.5, ("192.0.2.1", 40000)),
            cm(invite("c1", "192.0.2.2:5060"), 2.0, ("192.0.2.2", 5060))]

    async def go() -> list[ReplayDecision | None]:
        return [await rep.decide(m) for m in msgs]

    decisions = asyncio.run(go())
    assert [d is not None for d in decisions] == [True, False, True]
    assert rep.retransmissions == 1 and rep.invites == 2


def test_capture_clock_is_set_before_each_decision() -> None:
    _, pipe, _ = run_all([cm(sip("INVITE", "a"), 1_600_000_000.25), cm(sip("INVITE", "b"), 1_600_000_009.5)])
    assert [t for _, t, _, _ in pipe.seen] == [1_600_000_000.25, 1_600_000_009.5]


def test_fixed_clock_is_not_moved() -> None:
    mode, clock = parse_clock("1234567890")
    _, pipe, _ = run_all([cm(sip("INVITE", "a"), 1_600_000_000.0)], clock, mode)
    assert mode == "fixed" and pipe.seen[0][1] == 1234567890.0


@pytest.mark.parametrize("spec, mode, cls", [
    (None, "capture", ManualClock), ("capture", "capture", ManualClock), ("now", "now", SystemClock),
    ("1700000000.5", "fixed", ManualClock), (1700000000, "fixed", ManualClock)])
def test_parse_clock(spec: Any, mode: str, cls: type) -> None:
    got_mode, clock = parse_clock(spec)
    assert got_mode == mode and isinstance(clock, cls)


@pytest.mark.parametrize("spec", ["yesterday", "-5", "1e20", ""])
def test_parse_clock_rejects_nonsense(spec: str) -> None:
    with pytest.raises(ReplayError, match="--clock"):
        parse_clock(spec)


def test_malformed_invite_is_a_400_line_once() -> None:
    broken = sip("INVITE", "m1", extra="X-BROKEN: yes\r\n")
    no_partial = b"INVITE sip:x SIP/2.0\r\nBROKEN\r\n\r\n"
    decisions, pipe, rep = run_all([cm(broken), cm(broken), cm(no_partial), cm(sip("BYE", "z", extra="BROKEN: 1\r\n"))])
    assert [(d.call_id, d.action, d.status, d.reasons, d.verstat) for d in decisions] == [
        ("m1", "reject", 400, ("malformed-sip",), "No-TN-Validation"),
        (None, "reject", 400, ("malformed-sip",), "No-TN-Validation")]
    assert pipe.seen == [] and rep.malformed == 2


def test_jsonl_line_is_exactly_the_contract() -> None:
    decisions, _, _ = run_all([cm(sip("INVITE", "bad-1"), 1_700_000_000.123, ("2001:db8::7", 5070))])
    line = json.loads(output.jsonl_line(decisions[0]))
    assert list(line) == ["time", "call_id", "source", "trunk", "caller", "callee", "verstat", "attest",
                          "reasons", "spc", "rule", "action", "status", "signed"]
    assert line == {"time": 1_700_000_000.123, "call_id": "bad-1", "source": "[2001:db8::7]:5070",
                    "trunk": "carrier-a", "caller": "+442071234567", "callee": "+12025550100",
                    "verstat": "No-TN-Validation", "attest": None, "reasons": ["no-identity"], "spc": None,
                    "rule": "blocked", "action": "reject", "status": 603, "signed": False}


def test_table_and_summary() -> None:
    decisions, _, _ = run_all([cm(sip("INVITE", "a")), cm(sip("INVITE", "bad-b")), cm(sip("INVITE", "c"))])
    rows = [output.table_row(d) for d in decisions]
    assert "reject 603" in rows[1] and "blocked" in rows[1] and "(default)" in rows[0]
    summary = output.Summary()
    for d in decisions:
        summary.add(d)
    text = "\n".join(summary.lines())
    assert "3 INVITE transaction(s)" in text
    assert re.search(r"2\s+forward", text) and re.search(r"1\s+reject 603", text)
    assert re.search(r"3\s+no-identity", text) and re.search(r"2\s+\(default\)", text)


def test_compare_reports_only_changes() -> None:
    a, _, _ = run_all([cm(sip("INVITE", "bad-1")), cm(sip("INVITE", "ok"))])
    b = [ReplayDecision(**{**{k: getattr(d, k) for k in d.__slots__}, "action": "forward", "status": None,
                           "rule": None}) for d in a]
    assert [changed(x, y) for x, y in zip(a, b, strict=True)] == [True, False]
    summary = output.CompareSummary()
    for x, y in zip(a, b, strict=True):
        summary.add(x, y, changed(x, y))
    assert summary.lines()[0] == "1 of 2 INVITE transaction(s) decided differently"
    assert "reject 603 [blocked] -> forward [(default)]" in summary.lines()[1]
    assert "->" in output.compare_line(a[0], b[0], "table")
    assert json.loads(output.compare_line(a[0], b[0], "jsonl"))["old"]["status"] == 603


def test_replay_reads_a_capture_and_closes_nothing_it_does_not_own(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "c.pcap", [
        Message(sip("INVITE", "t1"), time=1_700_000_001.0, raw=True),
        Message(sip("INVITE", "t1"), time=1_700_000_001.5, raw=True),
        Message(sip("INVITE", "bad-t2"), time=1_700_000_002.0, transport="tcp", segments=3, raw=True)])
    clock = ManualClock(0.0)
    pipe = FakePipeline(clock)

    async def go() -> list[ReplayDecision]:
        return [d async for d in replay(path, None, pipeline=pipe, report=CaptureReport(),  # type: ignore[arg-type]
                                        parse=fake_parse, parse_error=FakeParseError)]

    decisions = asyncio.run(go())
    assert [(d.call_id, d.transport, d.time) for d in decisions] == [
        ("t1", "udp", 1_700_000_001.0), ("bad-t2", "tcp", 1_700_000_002.0)]
    assert not pipe.closed


def test_x5u_map(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "a.pem").write_text("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n")
    (tmp_path / "map.yaml").write_text('"https://cr.example.net/a.pem": certs/a.pem\n')
    assert list(load_x5u_map(str(tmp_path / "map.yaml"))) == ["https://cr.example.net/a.pem"]
    (tmp_path / "bad.yaml").write_text('"https://cr.example.net/a.pem": certs/a.pem\n'
                                       '"https://cr.example.net/b.pem": certs/missing.pem\n')
    with pytest.raises(Exception, match=r"bad\.yaml:2.*cannot read"):
        load_x5u_map(str(tmp_path / "bad.yaml"))
    (tmp_path / "notpem.yaml").write_text("ftp://x: certs/a.pem\n")
    with pytest.raises(Exception, match=r"notpem\.yaml:1.*http\(s\) URL"):
        load_x5u_map(str(tmp_path / "notpem.yaml"))


def test_progress_is_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    p = output.Progress(stream, 1000, enabled=False)
    p.update(500, 3, force=True)
    p.close()
    assert stream.getvalue() == ""
    p = output.Progress(stream, 1000, enabled=True)
    p.update(500, 3, force=True)
    assert "50.0%" in stream.getvalue() and "3 INVITEs" in stream.getvalue()
