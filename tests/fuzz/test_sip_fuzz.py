"""Bounded mutation fuzzing of the SIP layer (fixed seed, a few seconds).

The h11 invariant: whatever the bytes, ``parse``, every accessor (``validate``),
``serialize`` after a proxy mutation and ``build_response`` on ``partial`` either work
or raise SipParseError, never anything else; and the TCP framer gives the same messages
whether a stream arrives whole, byte by byte or in random pieces.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from sipguard.sip import Request, SipParseError, StreamFramer, build_response, parse, validate
from sipguard.sip.message import Message

DATA = Path(__file__).resolve().parents[1] / "data" / "sip" / "rfc4475"
SEED_FILES = ("wsinv", "intmeth", "esc01", "longreq", "mpart01", "transports", "unreason", "inv2543",
              "lwsdisp", "regescrt")
TRUNK_INVITE = (
    b"INVITE sip:+13035550100@10.0.0.5:5060;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::7]:5060;branch=z9hG4bKnashds8;received=2001:db8::9\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "Alice \\"A\\" Caller" <sip:+12025550123@198.51.100.7;user=phone>;tag=1928301774\r\n'
    b"t: <sip:+13035550100@10.0.0.5;user=phone>\r\n"
    b"i: a84b4c76e66710@pc33.carrier.example\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Route: <sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>\r\n"
    b"Contact: <sip:+12025550123@198.51.100.7:5060;transport=udp>\r\n"
    b"P-Asserted-Identity: <sip:+12025550123@198.51.100.7;user=phone>, <tel:+12025550123>\r\n"
    b"Identity: eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2ln;info=<https://certs.example.net/a.pem>\r\n"
    b"Subject: folded\r\n  subject\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 13\r\n\r\nv=0\r\ns=-\r\nx=1"
)
RESPONSE = (b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\n"
            b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
MUTANTS = 20_000
INTERESTING = [b"\r\n", b"\n", b"\r", b":", b";", b",", b"<", b">", b'"', b"\\", b" ", b"\t", b"\x00", b"\xff",
               b"@", b"[", b"]", b"=", b"%", b"SIP/2.0", b"Content-Length: 99999\r\n", b"l: 0\r\n",
               b"\r\n ", b"Via: garbage\r\n", b";tag=", b"\r\n\r\n"]


def seeds() -> list[bytes]:
    return [(DATA / f"{name}.dat").read_bytes() for name in SEED_FILES] + [TRUNK_INVITE, RESPONSE]


def mutate(rng: random.Random, data: bytes) -> bytes:
    ops: list[Callable[[bytes], bytes]] = [
        lambda d: _at(rng, d, lambda b, i: b[:i] + bytes([rng.randrange(256)]) + b[i + 1:]),    # flip
        lambda d: _at(rng, d, lambda b, i: b[:i] + rng.choice(INTERESTING) + b[i:]),            # insert
        lambda d: _at(rng, d, lambda b, i: b[:i] + b[i + rng.randrange(1, 16):]),               # delete
        lambda d: d[:rng.randrange(len(d) + 1)],                                                  # truncate
        lambda d: _lines(rng, d, dup=True),                                                       # dup line
        lambda d: _lines(rng, d, dup=False),                                                      # drop line
        lambda d: _at(rng, d, lambda b, i: b[:i] + rng.choice([b"a", b",", b";x", b" "]) * rng.choice(
            [100, 1000, 20000]) + b[i:]),                                                          # huge value
    ]
    for _ in range(rng.choice((1, 1, 2, 3, 6))):
        data = rng.choice(ops)(data)
    return data


def _at(rng: random.Random, data: bytes, fn: Callable[[bytes, int], bytes]) -> bytes:
    return fn(data, rng.randrange(len(data) + 1))


def _lines(rng: random.Random, data: bytes, dup: bool) -> bytes:
    lines = data.split(b"\r\n")
    i = rng.randrange(len(lines))
    if dup:
        lines.insert(i, lines[i])
    else:
        del lines[i]
    return b"\r\n".join(lines)


def exercise(data: bytes) -> str:
    """Everything the proxy may do with a datagram; returns a short outcome label."""
    try:
        msg = parse(data)
    except SipParseError as exc:
        assert isinstance(exc.status_hint, int) and exc.reason
        if exc.partial is not None:
            _answer(exc.partial, exc.status_hint)
        return "parse-error"
    try:
        validate(msg)
    except SipParseError as exc:
        if isinstance(msg, Request):
            _answer(msg, exc.status_hint)
        return "lazy-error"
    _touch(msg)
    out = _mutate_and_serialize(msg)
    again = parse(out)        # what we send must parse again
    validate(again)
    return "ok"


def _touch(msg: Message) -> None:
    msg.identity  # noqa: B018
    msg.headers("Diversion")
    msg.headers("History-Info")
    msg.header("Subject")
    for via in msg.vias:
        via.sent_by_addr()


def _mutate_and_serialize(msg: Message) -> bytes:
    if isinstance(msg, Request):
        msg.prepend_header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKfuzz;rport")
        msg.set_header("Max-Forwards", str(max((msg.max_forwards or 70) - 1, 0)))
        msg.pop_first_value("Route")
        msg.append_header("X-Verstat", "TN-Validation-Passed")
    else:
        msg.pop_first_value("Via")
        if not msg.has("Via"):
            msg.append_header("Via", "SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKback")
    return msg.serialize()


def _answer(req: Request, status: int) -> None:
    try:
        build_response(req, status, "Bad Request", [("Warning", '399 sipguard "x"')], to_tag="t1")
    except SipParseError:
        pass


def test_mutants_raise_only_sip_parse_error() -> None:
    rng = random.Random(4475)
    base = seeds()
    outcomes: dict[str, int] = {}
    for _ in range(MUTANTS):
        data = mutate(rng, rng.choice(base))
        try:
            label = exercise(data)
        except SipParseError:
            label = "error-after-mutation"   # allowed: typed
        outcomes[label] = outcomes.get(label, 0) + 1
    # the fuzzer reaches every stage (otherwise it tests nothing)
    assert outcomes.get("ok", 0) > 1000 and outcomes.get("parse-error", 0) > 1000
    assert outcomes.get("lazy-error", 0) > 100


def test_seeds_round_trip() -> None:
    for data in seeds():
        assert exercise(data) == "ok"


def frame(stream: bytes, pieces: list[int]) -> tuple[list[bytes], str | None]:
    framer, out, pos = StreamFramer(max_size=8000), [], 0
    try:
        for size in pieces:
            out += framer.feed(stream[pos:pos + size])
            pos += size
        out += framer.feed(stream[pos:])
    except SipParseError as exc:
        return out, f"{exc.status_hint}"
    # good messages before a bad one are returned first; the error waits in .error
    return out, None if framer.error is None else f"{framer.error.status_hint}"


def test_framer_same_messages_whole_and_in_pieces() -> None:
    rng = random.Random(3261)
    base = seeds()
    for round_ in range(300):
        parts = [rng.choice(base) if rng.random() < 0.7 else mutate(rng, rng.choice(base))
                 for _ in range(rng.randrange(1, 5))]
        stream = b"\r\n".join(parts) if round_ % 3 == 0 else b"".join(parts)
        whole = frame(stream, [])
        if round_ % 10 == 0:
            pieces = [1] * len(stream)
        else:
            pieces = [rng.randrange(1, 200) for _ in range(len(stream) // 50 + 1)]
        assert frame(stream, pieces) == whole
        for msg in whole[0]:
            try:
                parse(msg)
            except SipParseError:
                pass
