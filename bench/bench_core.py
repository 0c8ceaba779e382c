"""Proxy core CPU per call, in process: sipp's call flow fed straight into one worker.

The same five datagrams a sipp UAC and UAS send through a relaying sipguard per call
(INVITE, 200, ACK, BYE, 200) are handed to ``ProxyCore.receive`` of a real ``Worker``
(pipeline, records, metrics and decision log lines as ``serve`` builds them, config as
bench_proxy's sg-proxy: Record-Route on, decision lines at their default, to a file);
what it sends (100, INVITE, 200, ACK, BYE, 200) is captured instead of written to a
socket. The figure is CPU per call without the socket system calls, which bench_proxy.py
measures end to end: the budget of the Python side of the relay.

    .venv/bin/python bench/bench_core.py [CALLS] [--rounds R] [--profile] [--detectors]
        [--decisions off|info|debug] [--no-record-route] [--identity] [--redirect [--no-identity]]
        [--new-numbers]

(``--decisions off --no-record-route`` is the configuration of the figures before session 7.)
``--identity``: the verifying relay, as bench_proxy's sg-verify: every INVITE carries a valid
SHAKEN Identity header of its own (numbers, origid and signature per call, as bench_proxy's
CSV), signed by a test PKI (tests/shaken_pki.py) whose root the worker's ``shaken`` config
trusts; the x5u is served from memory (no network), and the verified-token cache is off, so
every INVITE pays decoding and ES256 as distinct live calls do although the rounds replay
the same bytes.
``--redirect``: the verifying 302 of bench_proxy's sg-redirect-verify instead (``run_redirect``).
``--new-numbers``: empty the telephone-number cache before each round (outside the timed part), so
every number is parsed as new, as bench_proxy's distinct numbers per call are (the rounds replay
the same calls, whose numbers are otherwise all cache hits).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_proxy_lib import free_port  # noqa: E402

from sipguard import numbers  # noqa: E402
from sipguard.config import load_config  # noqa: E402
from sipguard.observe.logs import setup_logging  # noqa: E402
from sipguard.proxy.gcpacing import tune_gc  # noqa: E402
from sipguard.proxy.worker import Worker  # noqa: E402

UAC = ("127.0.0.1", 5061)
NEW_NUMBERS = False  # --new-numbers
UAS = ("127.0.0.1", 5070)


class Capture:
    """A Sender that keeps what would have been sent."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.count = 0

    def send_to_source(self, data: bytes, addr: tuple[str, int], transport: str, conn: object) -> None:
        self.sent.append((data, addr))
        self.count += 1

    def send_to(self, data: bytes, addr: tuple[str, int], transport: str) -> None:
        self.sent.append((data, addr))
        self.count += 1

    def via_sent_by(self, transport: str) -> str:
        return self.real.via_sent_by(transport)  # type: ignore[attr-defined]

    def is_local(self, host: str, port: int) -> bool:
        return self.real.is_local(host, port)  # type: ignore[attr-defined]


SDP = (b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
       b"t=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
       b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def invite(n: int, port: int, caller: str = "+12127363100", callee: str = "+13036231000",
           identity: str | None = None) -> bytes:
    extra = f"Identity: {identity}\r\n" if identity else "Subject: shaken anchor\r\n"
    return (f"INVITE sip:{callee}@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-1-0\r\n"
            f"From: <sip:{caller}@127.0.0.1:5061;user=phone>;tag=77SIPpTag00{n}\r\n"
            f"To: <sip:{callee}@127.0.0.1:{port};user=phone>\r\n"
            f"Call-ID: {n}-77@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{caller}@127.0.0.1:5061>\r\nMax-Forwards: 70\r\n"
            f"{extra}Content-Type: application/sdp\r\n"
            f"Content-Length: {len(SDP)}\r\n\r\n").encode() + SDP


class IdentityCalls:
    """bench_proxy's sg-verify traffic: a test PKI, its x5u served from memory, and per call
    numbers and a PASSporT as bench_proxy's CSV lines (caller;callee;jws;x5u)."""

    X5U = "https://certs.bench.example/good.pem"

    def __init__(self, tmp: str) -> None:
        from tests.shaken_pki import MapFetcher, StiPki, shaken_identity

        self.pki = StiPki(Path(tmp) / "pki")
        self.fetcher = MapFetcher({self.X5U: self.pki.chain_pem("good")})
        self._sign = shaken_identity
        self.now = int(time.time())

    def shaken(self) -> dict[str, object]:
        """The ``shaken`` config section of bench_proxy's verifying systems."""
        return {"trust_anchors": self.pki.anchors, "iat_max_age": 120, "crl": {"enabled": False}}

    def call(self, n: int) -> tuple[str, str, str]:
        caller = f"1{201 + n % 700:03d}555{n % 10000:04d}"
        callee = f"1{301 + (n * 7) % 600:03d}555{(n * 13) % 10000:04d}"
        ident = self._sign(self.pki.key("good"), self.X5U, orig=caller, dest=[callee], iat=self.now,
                           origid=f"00000000-0000-4000-8000-{n:012d}")
        return caller, callee, ident


def headers_of(data: bytes) -> list[str]:
    return data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]


def uas_200(fwd: bytes, n: int) -> bytes:
    """What sipp's UAS answers: [last_Via:] [last_Record-Route:] From, To;tag, Call-ID, CSeq."""
    keep = [h for h in headers_of(fwd) if h.split(":", 1)[0] in ("Via", "Record-Route", "From", "Call-ID", "CSeq")]
    to = next(h for h in headers_of(fwd) if h.startswith("To:"))
    body = b"v=0\r\no=user1 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6002 RTP/AVP 0\r\n"
    lines = ["SIP/2.0 200 OK", *keep, f"{to};tag=88SIPpTag01{n}",
             "Contact: <sip:uas@127.0.0.1:5070;transport=UDP>", "Content-Type: application/sdp",
             f"Content-Length: {len(body)}"]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def uac_in_dialog(method: str, cseq: int, resp200: bytes, n: int, port: int) -> bytes:
    hs = headers_of(resp200)
    rr = [h.split(":", 1)[1].strip() for h in hs if h.startswith("Record-Route:")]
    to = next(h for h in hs if h.startswith("To:"))
    route = f"Route: {', '.join(rr)}\r\n" if rr else ""
    return (f"{method} sip:uas@127.0.0.1:5070;transport=UDP SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-{cseq}-{method}\r\n"
            f"From: <sip:+12127363100@127.0.0.1:5061;user=phone>;tag=77SIPpTag00{n}\r\n"
            f"{to}\r\nCall-ID: {n}-77@127.0.0.1\r\nCSeq: {cseq} {method}\r\n{route}"
            f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def uas_bye_200(bye: bytes) -> bytes:
    keep = [h for h in headers_of(bye) if h.split(":", 1)[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
    return "\r\n".join(["SIP/2.0 200 OK", *keep, "Content-Length: 0"]).encode() + b"\r\n\r\n"


async def run(calls: int, rounds: int, profile: bool, sort: str = "tottime", decisions: str = "info",
              record_route: bool = True, detectors: bool = False, identity: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "sut.log", "w") as log_file:
        port = free_port()
        cfg = {"listen": [f"udp://127.0.0.1:{port}"], "mode": "proxy", "next_hop": f"sip:{UAS[0]}:{UAS[1]}",
               "unknown_source": "reject",
               "trunks": [{"id": "bench", "role": "foreign", "sources": ["127.0.0.1/32"],
                           "provider": {"name": "Bench Carrier", "frn": "0012345678", "rmd": "RMD0001234",
                                        "country": "GB"}}],
               "store": "memory", "traceback": {"path": f"{tmp}/traceback.db"},
               "proxy": {"record_route": record_route}, "log": {"decisions": decisions}}
        if detectors:       # both campaign detectors on (the spoof facts are always computed)
            cfg["analytics"] = {"campaign": {"fanout": {"window": 300, "callees": 50},
                                             "burst": {"window": 60, "calls": 1000000, "prefix": 7}}}
        signed = IdentityCalls(tmp) if identity else None
        if signed is not None:
            cfg["shaken"] = signed.shaken()
        worker = await started_worker(Path(tmp), cfg, log_file)
        core = worker.core
        assert core is not None and worker.transports is not None
        cap = Capture(worker.transports)
        core.sender = cap
        if signed is not None:
            assert worker.pipeline is not None
            verifier = worker.pipeline.verifier
            verifier.creds.fetcher = signed.fetcher  # the x5u from memory: no network in the loop
            verifier.tokens = None                   # every INVITE decodes and checks ES256

        # build each call's datagrams once, by running the flow (the proxy's own Via is
        # deterministic per INVITE, so the same bytes can be replayed in the timed rounds)
        flows = []
        passed = 0
        for n in range(calls):
            inv = invite(n, port, *signed.call(n)) if signed is not None else invite(n, port)
            core.receive(inv, UAC, "udp", None)
            await asyncio.gather(*core._tasks)
            fwd = next(d for d, a in cap.sent if a == UAS and d.startswith(b"INVITE"))
            passed += b"verstat=TN-Validation-Passed" in fwd
            ok = uas_200(fwd, n)
            ack = uac_in_dialog("ACK", 1, ok, n, port)
            bye = uac_in_dialog("BYE", 2, ok, n, port)
            core.receive(ok, UAS, "udp", None)
            cap.sent.clear()
            core.receive(bye, UAC, "udp", None)
            fbye = cap.sent[-1][0]
            flows.append((inv, ok, ack, bye, uas_bye_200(fbye)))
            cap.sent.clear()
        assert len(flows) == calls
        if signed is not None:
            assert passed == calls, f"{calls - passed} of {calls} INVITEs did not verify"

        one_round = rounds_of(core, cap, [[(inv, UAC), (ok, UAS), (ack, UAC), (bye, UAC), (bye_ok, UAS)]
                                          for inv, ok, ack, bye, bye_ok in flows])
        await measure(one_round, cap, calls, rounds, profile, sort,
                      f"record_route: {record_route}; log.decisions: {decisions}; identity: {identity}")
        await worker.stop()


async def started_worker(tmp: Path, cfg: dict[str, Any], log_file: Any) -> Worker:
    """A worker as ``serve`` builds it from ``cfg`` (written to a file and loaded), started, with
    decision lines to ``log_file`` and the collector settings ``serve`` runs with."""
    path = tmp / "sg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(str(path))
    setup_logging(config.log.level, json=True, decisions=config.log.decisions, stream=log_file)
    worker = Worker(config)
    await worker.start()
    tune_gc()
    return worker


def rounds_of(core: Any, cap: Any, flows: list[list[tuple[bytes, Any]]]) -> Callable[[int], Awaitable[float]]:
    """One round: each call's datagrams (datagram, source) into the core, the INVITE's decision
    awaited before the rest; the CPU time of the round."""
    async def one_round(_round: int) -> float:
        core.txs.clear()
        cap.sent.clear()
        if NEW_NUMBERS:
            numbers.clear_cache()
        receive = core.receive
        t0 = time.process_time()
        for (first, source), *rest in flows:
            receive(first, source, "udp", None)
            for task in list(core._tasks):
                await task
            for data, src in rest:
                receive(data, src, "udp", None)
            if len(cap.sent) > 6000:
                cap.sent.clear()
        return time.process_time() - t0
    return one_round


async def measure(one_round: Callable[[int], Awaitable[float]], cap: Any, calls: int, rounds: int, profile: bool,
                  sort: str, what: str) -> None:
    """A warm-up round, then the best of ``rounds`` (optionally under cProfile), printed."""
    cap.count = 0
    await one_round(0)
    sent_per_call = cap.count / calls
    best = float("inf")
    prof = cProfile.Profile() if profile else None
    gc.collect()
    for r in range(rounds):
        if prof is not None:
            prof.enable()
        best = min(best, await one_round(r))
        if prof is not None:
            prof.disable()
    print(f"calls per round: {calls}; rounds: {rounds}; datagrams sent per call: {sent_per_call}; {what}")
    print(f"best round: {best * 1e6 / calls:.1f} us CPU per call ({calls / best:,.0f} calls/s on one core, "
          f"no socket I/O)")
    if prof is not None:
        pstats.Stats(prof).sort_stats(sort).print_stats(40)


async def run_redirect(calls: int, rounds: int, profile: bool, sort: str = "tottime", decisions: str = "info",
                       identity: bool = True) -> None:
    """bench_proxy's sg-redirect-verify in process: a worker in ``mode: redirect`` verifying
    every INVITE; per call INVITE in (a valid SHAKEN Identity of its own, signed by a test PKI
    whose x5u is served from memory) -> what the worker sends (302) -> sipp's ACK in. The
    verified-token cache is off, so each replayed INVITE pays decoding and ES256 as distinct
    live calls do."""
    from tests.shaken_pki import MapFetcher, StiPki, shaken_identity

    x5u = "https://certs.bench.example/good.pem"
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "sut.log", "w") as log_file:
        port = free_port()
        pki = StiPki(Path(tmp) / "pki")
        cfg = {"listen": [f"udp://127.0.0.1:{port}"], "mode": "redirect", "next_hop": f"sip:{UAS[0]}:{UAS[1]}",
               "unknown_source": "reject",
               "trunks": [{"id": "bench", "role": "foreign", "sources": ["127.0.0.1/32"],
                           "provider": {"name": "Bench Carrier", "frn": "0012345678", "rmd": "RMD0001234",
                                        "country": "GB"}}],
               "store": "memory", "traceback": {"path": f"{tmp}/traceback.db"}, "log": {"decisions": decisions},
               "shaken": {"trust_anchors": pki.anchors, "iat_max_age": 120, "crl": {"enabled": False}}}
        worker = await started_worker(Path(tmp), cfg, log_file)
        core, pipeline = worker.core, worker.pipeline
        assert core is not None and pipeline is not None and worker.transports is not None
        cap = Capture(worker.transports)
        core.sender = cap
        pipeline.verifier.creds.fetcher = MapFetcher({x5u: pki.chain_pem("good")})
        pipeline.verifier.tokens = None
        now = int(time.time())
        flows = []
        for n in range(calls):   # as bench_proxy's CSV and uac_redirect_identity.xml
            caller = f"1{201 + n % 700:03d}555{n % 10000:04d}"
            callee = f"1{301 + (n * 7) % 600:03d}555{(n * 13) % 10000:04d}"
            ident = shaken_identity(pki.key("good"), x5u, orig=caller, dest=[callee], iat=now,
                                    origid=f"00000000-0000-4000-8000-{n:012d}") if identity else None
            inv = invite(n, port).replace(b"+12127363100", caller.encode()).replace(b"+13036231000", callee.encode())
            if ident is not None:
                inv = inv.replace(b"Subject: shaken anchor", f"Identity: {ident}".encode())
            core.receive(inv, UAC, "udp", None)
            await asyncio.gather(*core._tasks)
            moved = cap.sent[-1][0]
            assert moved.startswith(b"SIP/2.0 302") and (not identity or b"TN-Validation-Passed" in moved), moved
            hs = headers_of(moved)
            keep = [h for h in hs if h.split(":", 1)[0] in ("Via", "From", "To", "Call-ID")]
            ack = "\r\n".join([f"ACK sip:{callee}@127.0.0.1:{port} SIP/2.0", *keep, "CSeq: 1 ACK",
                                "Max-Forwards: 70", "Content-Length: 0"]).encode() + b"\r\n\r\n"
            flows.append((inv, ack))
            cap.sent.clear()

        one_round = rounds_of(core, cap, [[(inv, UAC), (ack, UAC)] for inv, ack in flows])
        await measure(one_round, cap, calls, rounds, profile, sort,
                      f"redirect; identity: {identity}; log.decisions: {decisions}")
        await worker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("calls", nargs="?", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumulative)")
    ap.add_argument("--decisions", choices=("off", "info", "debug"), default="info",
                    help="log.decisions (default info, as shipped; lines go to a temporary file)")
    ap.add_argument("--no-record-route", action="store_true", help="proxy.record_route: false")
    ap.add_argument("--detectors", action="store_true", help="turn on analytics.campaign fanout and burst")
    ap.add_argument("--identity", action="store_true",
                    help="verifying relay: a valid SHAKEN Identity header of its own on every INVITE")
    ap.add_argument("--redirect", action="store_true", help="the verifying 302 (bench_proxy's sg-redirect-verify)")
    ap.add_argument("--no-identity", action="store_true", help="with --redirect: INVITEs without Identity")
    ap.add_argument("--new-numbers", action="store_true",
                    help="empty the number cache before each round: every number parsed as new")
    args = ap.parse_args()
    global NEW_NUMBERS
    NEW_NUMBERS = args.new_numbers
    if args.redirect:
        asyncio.run(run_redirect(args.calls, args.rounds, args.profile, args.sort, args.decisions,
                                 not args.no_identity))
        return
    asyncio.run(run(args.calls, args.rounds, args.profile, args.sort, args.decisions, not args.no_record_route,
                    args.detectors, args.identity))


if __name__ == "__main__":
    main()
