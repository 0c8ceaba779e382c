"""Seeds and mutators shared by the fuzz tests and the live fuzz script (``live_fuzz.py``).

Seeds are real messages: the RFC 4475 torture tests, messages shaped as trunks send them,
and every SIP message of the public captures in ``tests/data/captures`` (and in
``../shared/corpus`` beside the repository when that folder is present). Mutators are seeded ``random.Random``
loops, so a failure names its seed and index and reproduces exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
RFC4475 = TESTS / "data" / "sip" / "rfc4475"
CAPTURES = TESTS / "data" / "captures"
SHARED_CORPUS = TESTS.parent.parent / "shared" / "corpus"  # ../shared beside the repository, when present
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
# The relay fast path's shapes: a response with our Via on top, an in-dialog BYE.
RELAYED_RESPONSE = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsg0011;rport=5060\r\n"
                    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-uac-1\r\nFrom: <sip:a@b>;tag=1\r\n"
                    b"To: <sip:c@d>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
IN_DIALOG_BYE = (b"BYE sip:uas@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-bye-1\r\n"
                 b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\n"
                 b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
INTERESTING = [b"\r\n", b"\n", b"\r", b":", b";", b",", b"<", b">", b'"', b"\\", b" ", b"\t", b"\x00", b"\xff",
               b"@", b"[", b"]", b"=", b"%", b"SIP/2.0", b"Content-Length: 99999\r\n", b"l: 0\r\n",
               b"\r\n ", b"Via: garbage\r\n", b";tag=", b"\r\n\r\n"]


def seeds() -> list[bytes]:
    """The SIP seeds every mutation loop starts from (stable: outcome counts depend on it)."""
    return [(RFC4475 / f"{name}.dat").read_bytes() for name in SEED_FILES] + [TRUNK_INVITE, RESPONSE]


def rfc4475_messages() -> list[bytes]:
    return [path.read_bytes() for path in sorted(RFC4475.glob("*.dat"))]


def capture_files(max_bytes: int = 400_000) -> list[Path]:
    """The public captures: the suite's own, and the shared corpus's when it is present."""
    paths = sorted(CAPTURES.glob("*.pcap*"))
    if SHARED_CORPUS.is_dir():
        paths += sorted(p for p in SHARED_CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
    return [p for p in paths if p.stat().st_size <= max_bytes]


@cache
def live_messages() -> tuple[bytes, ...]:
    """Every distinct SIP message of the public captures, in capture order."""
    from sipguard.replay.capture import CaptureError, read_sip

    seen: dict[bytes, None] = {}
    for path in capture_files():
        try:
            messages, _ = read_sip(path)
        except CaptureError:
            continue
        for msg in messages:
            seen.setdefault(msg.data, None)
    return tuple(seen)


# -- text mutation ---------------------------------------------------------------------------
def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to six edits of the kinds that break SIP parsers: flipped bytes, separators
    inserted, bytes deleted, truncation, lines dropped or doubled, huge values."""
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


# -- binary mutation (captures) ----------------------------------------------------------------
def mutate_binary(rng: random.Random, data: bytes, protect: int = 0) -> bytes:
    """Edits for binary formats: flipped bytes and bits, 16/32-bit fields set to edge values,
    bytes deleted, duplicated or inserted, truncation. The first ``protect`` bytes (a file
    magic) are kept, so most mutants get past the format check into the record reader."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        if len(out) <= protect:
            break
        i = rng.randrange(protect, len(out))
        op = rng.randrange(7)
        if op == 0:
            out[i] = rng.randrange(256)
        elif op == 1:
            out[i] ^= 1 << rng.randrange(8)
        elif op == 2:
            size = rng.choice((2, 4))
            edge = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)))
            out[i:i + size] = (edge & ((1 << (8 * size)) - 1)).to_bytes(size, rng.choice(("big", "little")))
        elif op == 3:
            del out[i:i + rng.randrange(1, 64)]
        elif op == 4:
            j = rng.randrange(protect, len(out))
            out[i:i] = out[j:j + rng.randrange(1, 128)]
        elif op == 5:
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        else:
            del out[rng.randrange(protect, len(out) + 1):]
    return bytes(out)


def stream_of(rng: random.Random, messages: list[bytes]) -> bytes:
    """Several messages as one TCP stream, sometimes with CRLF keep-alives between them."""
    parts = [rng.choice(messages) for _ in range(rng.randrange(1, 5))]
    return (b"\r\n\r\n" if rng.random() < 0.3 else b"").join(parts)


def cuts(rng: random.Random, length: int) -> Iterator[int]:
    """Random segment sizes covering ``length`` bytes (1..200 each)."""
    left = length
    while left > 0:
        size = rng.randrange(1, 200)
        yield size
        left -= size
