"""Parse + serialize a realistic ~1.5 KB trunk INVITE with an Identity header.

    .venv/bin/python bench/bench_sip_parse.py [--seconds 3]

Three figures per core: parse only; parse + serialize untouched (byte-exact fast path);
parse + what the proxy does to a forwarded INVITE (read Via/From/To/Call-ID/CSeq/PAI/
Identity, prepend our Via, set Max-Forwards, add a header) + serialize.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    print(f"message size: {len(DATA)} bytes")
    for name, fn in (("parse", parse), ("parse+serialize (untouched)", lambda d: parse(d).serialize()),
                     ("parse+proxy mutation+serialize", proxy_path)):
        median, best = rate(fn, args.seconds)
        print(f"{name:34s} {median:10,.0f} msg/s  ({1e6 / median:5.1f} us)   best batch {1e6 / best:5.1f} us")


if __name__ == "__main__":
    main()
