"""The steering owner check per request, in process: ``steer.owner_of`` (the top Via branch's
worker) and a steered worker's receive (``Steered.__call__`` on a request it owns itself, so
nothing is sent) on the datagrams of the benchmarks: sipp's INVITE with Identity and SDP, its
ACK (the 302's), and a BYE relayed by Kamailio (two Via lines, Record-Route).

    .venv/bin/python bench/bench_steer.py [--rounds 7] [--seconds 0.5]

Prints the median and minimum over the rounds, ns per request, for each kind of datagram.
Compare trees by running it with each tree's PYTHONPATH in turn (compiled builds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from sipguard.proxy.steer import Channels, owner_of
from sipguard.proxy.transport import UdpEndpoint

TOKEN = ("eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0"
         "cy5leGFtcGxlLm5ldC9zaGFrZW4ucGVtIn0.eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0biI6WyIxMzAzNTU1MDEwMCJ"
         "dfSwiaWF0IjoxNzAwMDAwMDAwLCJvcmlnIjp7InRuIjoiMTIwMjU1NTAxMjMifSwib3JpZ2lkIjoiMTIzZTQ1Njct"
         "ZTg5Yi0xMmQzLWE0NTYtNDI2NjE0MTc0MDAwIn0.MEUCIQDx3h0CP0xG7kl1l9FAGUuz4q6pHqV5dCvSgcdv1Yl"
         "yRwIgS3aT1y1Yk8mT5rSx0T3p7Kf6x8V0c9s2Yd6p1Z4r8mQ")
SDP = ("v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
       "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def invite(n: int) -> bytes:  # bench/scenarios/uac_redirect_identity.xml
    return ("INVITE sip:+13035550100@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{n}-0\r\n"
            f"From: <sip:+12025550123@127.0.0.1:5061;user=phone>;tag=4242bench{n}\r\n"
            "To: <sip:+13035550100@127.0.0.1:5060;user=phone>\r\n"
            f"Call-ID: {n}-4242@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:+12025550123@127.0.0.1:5061>\r\nMax-Forwards: 70\r\n"
            f"Identity: {TOKEN};info=<https://certs.example.net/shaken.pem>;alg=ES256;ppt=shaken\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}").encode()


def ack(n: int) -> bytes:  # the 302's ACK: [last_Via:] ... of the same scenario
    return ("ACK sip:+13035550100@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{n}-0\r\n"
            f"From: <sip:+12025550123@127.0.0.1:5061;user=phone>;tag=4242bench{n}\r\n"
            "To: <sip:+13035550100@127.0.0.1:5060;user=phone>;tag=sg302\r\n"
            f"Call-ID: {n}-4242@127.0.0.1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def bye(n: int) -> bytes:  # relayed by Kamailio (bench/kamailio-relay.cfg) in front of sipguard
    return ("BYE sip:+13035550100@127.0.0.1:5070 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK{n:x}a1.{n % 7}\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;received=127.0.0.1;rport=5061;branch=z9hG4bK-4242-{n}-5\r\n"
            "Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 69\r\n"
            f"From: <sip:+12025550123@127.0.0.1:5061;user=phone>;tag=4242bench{n}\r\n"
            "To: <sip:+13035550100@127.0.0.1:5060;user=phone>;tag=uas1\r\n"
            f"Call-ID: {n}-4242@127.0.0.1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").encode()


KINDS: dict[str, Callable[[int], bytes]] = {"INVITE": invite, "ACK": ack, "BYE": bye}
COUNT = 1000   # distinct datagrams per kind (distinct branches)


def per_call(fn: Callable[[], None], calls: int, seconds: float) -> float:
    """ns per call of the loop ``fn`` (``calls`` calls a run), run for about ``seconds``."""
    fn()
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / (runs * calls) * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    channels = Channels(args.workers)
    steering = channels.for_worker(0)
    receive = steering.wrap(lambda data, source, transport, conn: None)
    conn = UdpEndpoint(receive, 0)
    source = ("127.0.0.1", 5061)
    workers = args.workers
    results: dict[str, list[float]] = {}
    for kind, make in KINDS.items():
        data = [make(n) for n in range(COUNT * workers * 4)]
        assert all(owner_of(d, workers) is not None for d in data)
        owned = [d for d in data if owner_of(d, workers) == 0][:COUNT]   # nothing handed over

        def owners(data: list[bytes] = data[:COUNT]) -> None:
            for d in data:
                owner_of(d, workers)

        def steered(data: list[bytes] = owned) -> None:
            for d in data:
                receive(d, source, "udp", conn)

        for name, fn in ((f"owner_of {kind} ({len(data[0])} B)", owners), (f"steered {kind}", steered)):
            results[name] = [per_call(fn, COUNT, args.seconds) for _ in range(args.rounds)]
    assert steering.counters.steered_out == 0
    channels.close()
    for name, ns in results.items():
        print(f"{name:<32} median {statistics.median(ns):7.1f} ns  min {min(ns):7.1f} ns")


if __name__ == "__main__":
    main()
