"""What a sipguard tree makes of a fixed set of inputs, one line per result, for
tests/unit/test_native.py: run once on the compiled tree and once on a Python-only copy,
the two outputs must be identical.

Inputs: every RFC 4475 torture message and every SIP message of the permissive captures,
each through the full parser (parse, typed reads, serialize) and the relay fast path; then
sipp's call flow (INVITE, 200 with its Vias in one line, ACK, BYE, 200) and each captured
request through a proxy core with a real pipeline (memory store), whose sent bytes are
printed. The first line says where ``sipguard.sip.parser`` was loaded from."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import sipguard.sip.parser as parser_module
from sipguard.clock import SystemClock
from sipguard.config import CoreSettings
from sipguard.pipeline import Pipeline
from sipguard.proxy.core import ProxyCore
from sipguard.replay.capture import read_sip
from sipguard.sip import Response, SipParseError, parse, relay
from tests.proxy_fixtures import Capture, proxy_config

DATA = Path(__file__).resolve().parents[1] / "data"
UAC, UAS = ("127.0.0.1", 5061), ("127.0.0.1", 5070)


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def full(data: bytes) -> str:
    try:
        msg = parse(data, 65535)
        kind = f"{msg.status}" if isinstance(msg, Response) else msg.method
        reads = [repr(msg.top_via), repr(msg.from_), repr(msg.to), msg.call_id, repr(msg.cseq),
                 repr(msg.headers("Route")), repr(msg.headers("Contact"))]
        return f"ok {kind} {digest(repr(reads).encode())} {digest(msg.serialize())}"
    except SipParseError as exc:
        return f"error {exc.reason}"


def fast(data: bytes) -> str:
    try:
        got: Any = relay.response(data, 65535) if data[:4] == b"SIP/" else relay.request(data, 65535)
    except SipParseError as exc:
        return f"error {exc.reason}"
    if got is None:
        return "full path"
    if isinstance(got, relay.FastResponse):
        return f"response {got.status} {got.method} {got.top!r} {got.second!r} {digest(got.relayed)}"
    return f"request {got.method} {got.uri!r} {got.cseq} {got.max_forwards}"


def inputs() -> list[tuple[str, bytes]]:
    out = [(p.name, p.read_bytes()) for p in sorted((DATA / "sip" / "rfc4475").glob("*.dat"))]
    for pcap in sorted((DATA / "captures").glob("*.pcap")):
        out += [(f"{pcap.name}#{i}", m.data) for i, m in enumerate(read_sip(str(pcap))[0])]
    return out


def call_flow() -> list[bytes]:
    via_uac = "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-6218-1-{}"
    dialog = ("From: <sip:12015550000@127.0.0.1:5061;user=phone>;tag=6218bench1\r\n"
              "To: <sip:13015550000@127.0.0.1:5060;user=phone>{}\r\nCall-ID: 1-6218@127.0.0.1\r\n")
    sdp = "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6004 RTP/AVP 0\r\n"
    invite = (f"INVITE sip:13015550000@127.0.0.1:5060 SIP/2.0\r\n{via_uac.format(0)}\r\n{dialog.format('')}"
              f"CSeq: 1 INVITE\r\nContact: <sip:12015550000@127.0.0.1:5061>\r\nMax-Forwards: 70\r\n"
              f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()
    return [invite] + [(f"{m} sip:uas@127.0.0.1:5070;transport=UDP SIP/2.0\r\n{via_uac.format(n)}\r\n"
                        f"{dialog.format(';tag=uas1')}CSeq: {c} {m}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                        ).encode() for m, n, c in (("ACK", 4, 1), ("BYE", 5, 2))]


def answer(request: bytes, status: str) -> bytes:
    """What sipp's UAS sends back: the request's Vias in one line, its dialog headers."""
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    vias = [h.split(b":", 1)[1].strip() for h in head if h.lower().startswith(b"via:")]
    keep = [h for h in head if h.split(b":", 1)[0].lower() in (b"from", b"to", b"call-id", b"cseq")]
    keep = [h + b";tag=uas1" if h.lower().startswith(b"to:") and b"tag=" not in h else h for h in keep]
    return b"\r\n".join([b"SIP/2.0 " + status.encode(), b"Via: " + b", ".join(vias), *keep,
                         b"Content-Length: 0", b"", b""])


async def proxy_lines(folder: Path, captured: list[tuple[str, bytes]]) -> list[str]:
    # one key on both trees: our branches and Record-Route tokens are keyed (proxy.secret_file)
    (folder / "secret").write_text("probe-secret-the-same-on-both-trees")
    config = proxy_config(folder, ("127.0.0.1", 5060), UAS, proxy={"secret_file": str(folder / "secret")})
    pipeline = await Pipeline.create(config, SystemClock())
    cap = Capture()
    core = ProxyCore(CoreSettings.of(config), pipeline, cap)
    out: list[str] = []

    def feed(name: str, data: bytes, source: tuple[str, int]) -> None:
        cap.sent.clear()
        core.receive(data, source, "udp", None)
        for sent, addr, transport in cap.sent:
            # our tags and branches hash the source and branch: the same on both trees
            out.append(f"{name} -> {addr} {transport} {digest(sent)}")

    try:
        invite, ack, bye = call_flow()
        feed("INVITE", invite, UAC)
        await asyncio.gather(*core._tasks)
        forwarded = next(d for d, a, _ in cap.sent if a == UAS) if cap.sent else invite
        feed("200", answer(forwarded, "200 OK"), UAS)
        feed("ACK", ack, UAC)
        feed("BYE", bye, UAC)
        sent_bye = next((d for d, a, _ in cap.sent if a == UAS), bye)
        feed("BYE 200", answer(sent_bye, "200 OK"), UAS)
        for name, data in captured:
            feed(name, data, UAC)
            await asyncio.gather(*core._tasks)
    finally:
        core.close()
        await pipeline.aclose()
    return out


def main() -> None:
    print(f"parser from {Path(parser_module.__file__ or '?').name}")
    captured = inputs()
    for name, data in captured:
        print(f"{name}: {full(data)} | {fast(data)}")
    with tempfile.TemporaryDirectory() as tmp:
        for line in asyncio.run(proxy_lines(Path(tmp), captured)):
            print(line)


if __name__ == "__main__":
    sys.exit(main())
