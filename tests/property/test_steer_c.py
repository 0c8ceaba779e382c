"""Differential: the owner check in C (``_fast.owner``, sipguard/sip/_fast.c) gives what its
Python definition ``steer.owner_of_py`` gives (-1 standing for its None), and ``steer.owner_of``
gives the Python's answer whichever path it takes. Inputs: requests with generated Via lines
(any case, blanks, the compact ``v``, several Via lines, the branch on the first, a later or no
line, several values on one line), bodies holding ``\\nvia:...;branch=``, the branch value
before, across and after the 4096 bytes searched, values longer than the 32 bytes hashed,
non-ASCII and NUL bytes, huge inputs, arbitrary bytes over the regex's own alphabet; workers 1
to 8, and counts so large that the hash itself is compared. C declines (None) only for data
that is not bytes and workers that is not an int from 1. Skipped where the extension is not
built (the Python then runs alone: nothing to compare)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.proxy import steer
from sipguard.proxy.steer import branch_hash, owner_of, owner_of_py
from tests.sipclient import mutate

_fast = pytest.importorskip("sipguard.sip._fast")

RFC4475 = Path(__file__).resolve().parents[1] / "data" / "sip" / "rfc4475"
SETTINGS = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# small counts as with real workers; large ones leave the hash itself to compare (2**63 - 1:
# the largest C takes, LONG_MAX on this 64-bit Linux)
WORKERS = st.integers(1, 8) | st.sampled_from([1000, 2**31 - 1, 2**32, 2**32 + 7, 2**63 - 1])


def same(data: bytes, workers: int) -> None:
    expected = owner_of_py(data, workers)
    assert _fast.owner(data, workers) == (-1 if expected is None else expected), (data[:200], workers)
    assert owner_of(data, workers) == expected


# -- generated requests ---------------------------------------------------------------------------
NAME = st.sampled_from(["Via", "via", "VIA", "vIa", "v", "V", "Vi", "Vias", "X-Via", " Via", "Via-X"])
BLANKS = st.sampled_from(["", "", "", " ", "\t", " \t ", "  ", "\x0b", "\r"])
BRANCH = st.sampled_from(["branch", "BRANCH", "Branch", "bRaNcH", "branc", "branchx", "xbranch", "bran ch"])
VALUE = (st.sampled_from(["z9hG4bK-1", "z9hG4bK776asdhds", "x", "", "z9hG4bK" + "a" * 40, "a" * 31, "b" * 32,
                          "c" * 33, "z9hG4bK-\u00e9t\u00e9", "z\x00\x00k", "v\x7f\xff", "a,b", "a;b", "a b",
                          "a\tb", "a\x0bb", "a\x0cb", "a\rb", "a\x1cb", "a\xa0b", "a=b", ":"])
         | st.text(st.characters(max_codepoint=0x2000, codec="utf-8"), max_size=50))
SENT_BY = st.sampled_from(["SIP/2.0/UDP 10.0.0.1:5060", "SIP/2.0/TCP host", "", "SIP/2.0/UDP [2001:db8::1]:5061",
                           "SIP/2.0/UDP h;x=\"a;branch=q\"", "SIP/2.0/UDP h (comment ; branch=c)"])


@st.composite
def branch_param(draw: st.DrawFn) -> str:
    return (";" + draw(BLANKS) + draw(BRANCH) + draw(BLANKS) + draw(st.sampled_from(["=", "=", "", "==", ":"]))
            + draw(BLANKS) + draw(VALUE))


@st.composite
def via_line(draw: st.DrawFn) -> str:
    params = draw(st.lists(st.sampled_from([";rport", ";received=10.0.0.2", ";", ";;", ",", " , SIP/2.0/UDP h2",
                                            ";ttl=1", ";maddr=x"]) | branch_param(), max_size=4))
    return draw(NAME) + draw(BLANKS) + draw(st.sampled_from([":", ":", "", ";"])) + draw(BLANKS) \
        + draw(SENT_BY) + "".join(params)


OTHER = st.sampled_from(["From: <sip:a@h>;tag=1;branch=f", "To: <sip:b@h>", "Call-ID: c1", "CSeq: 1 INVITE",
                         "Max-Forwards: 70", "Content-Length: 0", "Contact: <sip:a@h;branch=z>", "X-V: ;branch=1",
                         "Route: <sip:p;lr>", "f: <sip:a@h>;tag=2"])
BODY = st.sampled_from(["", "v=0\r\no=- 1 1 IN IP4 h\r\n", "\nvia:;branch=bodyvalue", "\nv:\t;branch=b2\r\n",
                        "x\r\nVIA : SIP/2.0/UDP h;BRANCH=inbody;x\r\n", "\n", "\nvia"])


@st.composite
def request(draw: st.DrawFn) -> bytes:
    start = draw(st.sampled_from(["INVITE sip:+13036231000@127.0.0.1 SIP/2.0", "ACK sip:b@h SIP/2.0",
                                  "BYE sip:b@h SIP/2.0", "", "via: ;branch=startline", "SIP/2.0 200 OK"]))
    lines = draw(st.lists(via_line() | OTHER, max_size=8))
    if draw(st.booleans()):  # the usual order: Via lines first
        lines = draw(st.lists(via_line(), min_size=1, max_size=3)) + lines
    eol = draw(st.sampled_from(["\r\n"] * 6 + ["\n", "\r", "\n\r"]))
    text = eol.join([start, *lines]) + eol + eol + draw(BODY)
    return text.encode("utf-8", "surrogateescape")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(request()), b" \t,;:=\r\n\x00\xff\x0bvVbB", 4)


@st.composite
def at_the_limit(draw: st.DrawFn) -> bytes:
    """A request whose branch value ends (or the Via name or the ';' sits) a few bytes before,
    at or after byte 4096: a header line before the Via pads it there."""
    value = draw(st.sampled_from([b"z9hG4bK-1", b"z9hG4bK" + b"q" * 40, b"x", b"ab,cd"]))
    via = draw(st.sampled_from([b"Via: SIP/2.0/UDP h;branch=", b"v:;branch=", b"VIA\t: SIP/2.0/UDP h ; BRANCH = "]))
    later = draw(st.sampled_from([b"", b"\r\nVia: SIP/2.0/UDP h2;branch=lower", b"\r\n\r\n\nvia:;branch=body"]))
    head = b"INVITE sip:b@h SIP/2.0\r\nX-Pad: "
    # where the value ends without padding: len(head) + len(b"\r\n") + len(via) + len(value)
    unpadded = len(head) + 2 + len(via) + len(value)
    pad = max(0, 4096 - unpadded + draw(st.integers(-len(value) - len(via) - 4, 6)))
    return head + b"p" * pad + b"\r\n" + via + value + later


# the edges the owner check must read as Python does, each with a worker count
EDGES = [
    (b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\n\r\n", 2),
    (b"\nvia:;branch=x", 1),
    (b"\nv:;branch=x", 3),
    (b"\nvia;branch=x", 3),
    (b"\nvi:;branch=x", 3),
    (b"\nVia: a;branch=\r\nVia: b;branch=second\r\n", 8),
    (b"\nVia: a\r\nv: b;branch=second\r\n", 8),
    (b"\nFrom: <a;branch=x>\r\n\r\n\nvia:;branch=body", 8),
    (b"\nVia: a;branch= ;branch=second\r\n", 8),
    (b"\nVia: a;branch=;branch=second\r\n", 8),
    (b"\nVia: a;branch\t=\tv\x00lue", 1000),
    (b"\nVia: a;branch=\xc3\xa9t\xc3\xa9;x", 1000),
]


@pytest.mark.parametrize(("data", "workers"), EDGES)
def test_owner_as_python_on_the_edges(data: bytes, workers: int) -> None:
    same(data, workers)


@SETTINGS
@given(request() | mutated(), WORKERS)
def test_owner_as_python_on_requests(data: bytes, workers: int) -> None:
    same(data, workers)


@SETTINGS
@given(at_the_limit(), WORKERS)
def test_owner_as_python_at_the_4096_byte_limit(data: bytes, workers: int) -> None:
    same(data, workers)


@SETTINGS
@given(st.binary(max_size=300) | st.binary(max_size=5000).map(lambda b: b"\nvia:" + b),
       WORKERS)
def test_owner_as_python_on_any_bytes(data: bytes, workers: int) -> None:
    same(data, workers)


ALPHABET = st.sampled_from([b"\n", b"v", b"V", b"i", b"I", b"a", b"A", b":", b";", b" ", b"\t", b"branch", b"BRANCH",
                            b"=", b"x", b",", b"\r", b"\x0b", b"\x0c", b"\x00", b"\xff", b"via", b"\nv:", b"\nvia:",
                            b";branch=", b"bran", b"ch"])


@SETTINGS
@given(st.lists(ALPHABET, max_size=60).map(b"".join), WORKERS)
def test_owner_as_python_on_the_regex_alphabet(data: bytes, workers: int) -> None:
    same(data, workers)


@settings(max_examples=200, deadline=None)
@given(st.lists(ALPHABET, min_size=1, max_size=40).map(b"".join), st.integers(3800, 4200), WORKERS)
def test_owner_as_python_on_huge_inputs(piece: bytes, length: int, workers: int) -> None:
    """The regex's alphabet repeated past the 4096 bytes searched, and cut anywhere near them."""
    data = (piece * (100_000 // len(piece) + 1))[:length]
    same(data, workers)
    same(data + b"\nvia:;branch=far" * 3, workers)


@pytest.mark.parametrize("data", [
    b"",
    b"\n" * 100_000,
    b"\nvia:" + b";" * 100_000 + b"branch=x",
    b"\nvia:" + b";branch=" * 20_000,
    b"\nvia:" + b";branch " * 600 + b";branch=x",
    (b"\nVia: SIP/2.0/UDP h;rport" * 500) + b"\nVia:;branch=late",
    b"\nvia:;branch=" + b"x" * 100_000,
    b"\nvia:;branch=" + b"\xff" * 4082 + b"\x00" * 10,
])
def test_owner_as_python_on_huge_examples(data: bytes) -> None:
    for workers in (1, 2, 3, 7, 2**63 - 1):
        same(data, workers)


def test_owner_as_python_on_rfc4475() -> None:
    paths = sorted(RFC4475.glob("*.dat"))
    assert len(paths) >= 40
    for path in paths:
        data = path.read_bytes()
        for workers in (1, 2, 3, 8, 2**63 - 1):
            same(data, workers)


def test_owner_of_takes_the_c_path() -> None:
    assert steer._C_OWNER is _fast.owner
    data = b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-7\r\n\r\n"
    assert _fast.owner(data, 2**63 - 1) == branch_hash(b"z9hG4bK-7")
    assert _fast.owner(b"INVITE sip:b@h SIP/2.0\r\n\r\n", 2) == -1


@pytest.mark.parametrize("workers", [0, -1, -3, 2**63, 2**70, -(2**70)])
def test_c_declines_workers_it_does_not_count_and_python_answers(workers: int) -> None:
    """Past 1 .. LONG_MAX C gives None and ``owner_of`` asks the Python (which raises on 0)."""
    for data in (b"\nvia:;branch=z9hG4bK-1", b"no branch", b"\nv:;branch=" + b"y" * 50):
        assert _fast.owner(data, workers) is None
        try:
            expected: object = owner_of_py(data, workers)
        except ZeroDivisionError as exc:
            expected = type(exc)
        try:
            got: object = owner_of(data, workers)
        except ZeroDivisionError as exc:
            got = type(exc)
        assert got == expected


def test_c_declines_what_is_not_bytes_and_python_answers() -> None:
    data = b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-7\r\n\r\n"
    for other in (bytearray(data), memoryview(data), data.decode()):
        assert _fast.owner(other, 2) is None  # type: ignore[arg-type]
    assert _fast.owner(data, 2.0) is None  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _fast.owner(data)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _fast.owner(data, 2, 3)  # type: ignore[call-arg]
