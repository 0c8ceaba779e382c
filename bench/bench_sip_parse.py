"""Parse + serialize a realistic ~1.5 KB trunk INVITE with an Identity header.

    .venv/bin/python bench/bench_sip_parse.py [--seconds 3] [--name-addrs [CALLS]]

Three figures per core: parse only; parse + serialize untouched (byte-exact fast path);
parse + what the proxy does to a forwarded INVITE (read Via/From/To/Call-ID/CSeq/PAI/
Identity, prepend our Via, set Max-Forwards, add a header) + serialize.

``--name-addrs``: the name-addrs of CALLS distinct calls (default 2000) as bench_core's flow
writes them (From and To with the tags sipp gives, our signed Record-Route as Route), each
call's values new to the process as a live call's are (the name-addr cache emptied before
every pass, outside the timing, where there is one): per value, ``parse_name_addr`` over
From, To without tag, To with tag and Route in call order; per in-dialog request (ACK then
BYE of each call), ``StatelessRelay._fast_dialog_end`` and the whole ``fast_request`` (the
relayed bytes made, nothing sent).
"""

from __future__ import annotations

import argparse
import statistics
import time

from sipguard.sip import parse

TOKEN = ("eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0"
         "cy5leGFtcGxlLm5ldC9zaGFrZW4ucGVtIn0.eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0biI6WyIxMzAzNTU1MDEwMCJ"
         "dfSwiaWF0IjoxNzAwMDAwMDAwLCJvcmlnIjp7InRuIjoiMTIwMjU1NTAxMjMifSwib3JpZ2lkIjoiMTIzZTQ1Njct"
         "ZTg5Yi0xMmQzLWE0NTYtNDI2NjE0MTc0MDAwIn0.MEUCIQDx3h0CP0xG7kl1l9FAGUuz4q6pHqV5dCvSgcdv1Yl"
         "yRwIgS3aT1y1Yk8mT5rSx0T3p7Kf6x8V0c9s2Yd6p1Z4r8mQ")
INVITE = (
    "INVITE sip:+13035550100@10.0.0.5:5060;user=phone SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "Via: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bKnashds8;received=203.0.113.9\r\n"
    "Max-Forwards: 69\r\n"
    'From: "Alice Caller" <sip:+12025550123@198.51.100.7;user=phone>;tag=1928301774\r\n'
    "To: <sip:+13035550100@10.0.0.5;user=phone>\r\n"
    "Call-ID: a84b4c76e66710@pc33.carrier.example\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:+12025550123@198.51.100.7:5060;transport=udp>\r\n"
    "P-Asserted-Identity: <sip:+12025550123@198.51.100.7;user=phone>\r\n"
    f"Identity: {TOKEN};info=<https://certs.example.net/shaken.pem>;alg=ES256;ppt=shaken\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE\r\n"
    "Supported: timer, 100rel\r\n"
    "Session-Expires: 1800;refresher=uac\r\n"
    "User-Agent: CarrierSBC/4.2\r\n"
    "Content-Type: application/sdp\r\n"
)
SDP = ("v=0\r\no=- 3724394510 3724394510 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\n"
       "t=0 0\r\nm=audio 20000 RTP/AVP 0 8 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
       "a=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\n"
       "a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n")
DATA = (INVITE + f"Content-Length: {len(SDP)}\r\n\r\n" + SDP).encode()


def proxy_path(data: bytes) -> bytes:
    req = parse(data)
    req.top_via  # noqa: B018
    req.call_id  # noqa: B018
    req.cseq  # noqa: B018
    req.from_  # noqa: B018
    req.to  # noqa: B018
    req.pai  # noqa: B018
    req.identity  # noqa: B018
    mf = req.max_forwards or 70
    req.set_header("Max-Forwards", str(mf - 1))
    req.prepend_header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsg0123456789abcdef;rport")
    req.append_header("X-Verstat", "TN-Validation-Passed")
    return req.serialize()


def rate(fn, seconds: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Messages per CPU-second of this process (process_time), so that other load on the
    machine does not count against us: this is the one-core throughput. Measured in
    batches of 1000; returns (median, best) batch rates, the median being the figure to
    quote on a shared machine."""
    rates: list[float] = []
    end = time.process_time() + seconds
    while time.process_time() < end:
        start = time.process_time()
        for _ in range(1000):
            fn(DATA)
        rates.append(1000 / (time.process_time() - start))
    return statistics.median(rates), max(rates)


def name_addrs(calls: int, seconds: float) -> None:
    """The ``--name-addrs`` figures (see the module's doc)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sipguard.clock import SystemClock
    from sipguard.proxy.messages import Answers, Counters, Hop
    from sipguard.proxy.stateless import StatelessRelay
    from sipguard.sip import Request, address, relay
    from tests.proxy_fixtures import Capture

    cap = Capture()
    stateless = StatelessRelay(cap, Answers(cap, Counters(), SystemClock()), lambda req, source: source)
    values: list[str] = []
    requests = []
    for n in range(calls):
        caller, callee = f"+1212{n:07d}", f"+1303{(n * 7919) % 10**7:07d}"
        frm = f"<sip:{caller}@127.0.0.1:5061;user=phone>;tag=77SIPpTag00{n}"
        to = f"<sip:{callee}@127.0.0.1:5060;user=phone>"
        inv = parse((f"INVITE sip:{callee}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}"
                     f"\r\nFrom: {frm}\r\nTo: {to}\r\nCall-ID: {n}-77@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
                     "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode())
        assert isinstance(inv, Request)
        route = (f"<sip:127.0.0.1:5060;lr;sgrr="
                 f"{stateless.rr_token(inv, Hop('127.0.0.1', 5061, 'udp'), Hop('127.0.0.1', 5070, 'udp'))}>")
        to_tagged = f"{to};tag=88SIPpTag01{n}"
        values += [frm, to, to_tagged, route]
        for cseq, method in ((1, "ACK"), (2, "BYE")):
            data = (f"{method} sip:uas@127.0.0.1:5070;transport=UDP SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-{cseq}-{method}\r\nFrom: {frm}\r\n"
                    f"To: {to_tagged}\r\nCall-ID: {n}-77@127.0.0.1\r\nCSeq: {cseq} {method}\r\n"
                    f"Route: {route}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
            parse(data)  # the fast path takes header names the parser learnt
            req = relay.request(data, 65535)
            assert req is not None
            requests.append((req, req.msg.only("route")))
    source = ("127.0.0.1", 5061)

    def by_value(parse_one):  # type: ignore[no-untyped-def]
        def run() -> None:
            for value in values:
                parse_one(value)
        return run

    def dialog_ends() -> None:
        for req, route in requests:
            assert stateless._fast_dialog_end(req, route) is not None

    def fast_requests() -> None:
        for req, _ in requests:
            stateless.fast_request(req, source, False, lambda tag, via: False)
        cap.sent.clear()

    print(f"calls: {calls}; values: {len(values)}; in-dialog requests: {len(requests)}; "
          f"C name-addr: {getattr(address, '_C_NAME_ADDR', None) is not None}")
    cached = hasattr(address, "clear_cache")   # the cache of 695b848 and before
    for name, run, count in (("parse_name_addr" + (" (cached)" if cached else ""),
                              by_value(address.parse_name_addr), len(values)),
                             ("_fast_dialog_end", dialog_ends, len(requests)),
                             ("fast_request (ACK, BYE)", fast_requests, len(requests))):
        times = []
        end = time.process_time() + seconds
        while time.process_time() < end:
            if cached:
                address.clear_cache()
            start = time.process_time()
            run()
            times.append((time.process_time() - start) / count)
        print(f"{name:30s} median {statistics.median(times) * 1e9:7.0f} ns  best {min(times) * 1e9:7.0f} ns"
              f"  per {'value' if count == len(values) else 'request'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--name-addrs", type=int, nargs="?", const=2000, default=0, metavar="CALLS")
    args = ap.parse_args()
    if args.name_addrs:
        name_addrs(args.name_addrs, args.seconds)
        return
    print(f"message size: {len(DATA)} bytes")
    for name, fn in (("parse", parse), ("parse+serialize (untouched)", lambda d: parse(d).serialize()),
                     ("parse+proxy mutation+serialize", proxy_path)):
        median, best = rate(fn, args.seconds)
        print(f"{name:34s} {median:10,.0f} msg/s  ({1e6 / median:5.1f} us)   best batch {1e6 / best:5.1f} us")


if __name__ == "__main__":
    main()
