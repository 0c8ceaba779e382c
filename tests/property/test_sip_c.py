"""Differential: the C pieces of the SIP layer (sipguard/sip/_fast.c) give what their Python
definitions give, on arbitrary bytes and text, on generated messages of the shapes trunks send
(then mutated at random), and on RFC 4475's torture messages. C may leave an answer to the
Python only where it says so (``usual_uri`` on non-ASCII text: None); everywhere else its
result is the Python's, None included. Skipped where the extension is not built (the Python
then runs alone: nothing to compare)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sipguard.sip import SipParseError, Via, address, parse, parser, relay
from sipguard.sip import message as sipmessage
from tests.property import test_sip_fastpaths as fastpaths
from tests.sipclient import mutate

_fast = pytest.importorskip("sipguard.sip._fast")

RFC4475 = Path(__file__).resolve().parents[1] / "data" / "sip" / "rfc4475"
SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def learn(data: bytes) -> None:
    """Parse ``data`` (ignoring errors) so that the parser learns its header names, as a
    worker does: the fast splits only take names learnt before."""
    try:
        parse(data)
    except SipParseError:
        pass


def split_py(data: bytes, max_size: int) -> tuple[bytes, list[bytes], list[str], bytes] | None:
    got = relay.split_py(data, max_size)
    return None if got is None else (got.start, got.lines, got.keys, got.body)


def same_split(data: bytes, max_size: int = 65535) -> None:
    learn(data)
    assert _fast.split(data, max_size, parser._NAMES) == split_py(data, max_size)
    head = data.split(b"\r\n\r\n", 1)[0]
    for count in {head.count(b"\n"), head.count(b"\n") + 1, len(head.split(b"\r\n")) - 1}:
        assert _fast.known_keys(head, count, parser._NAMES) == parser.known_keys_re(head, count)


# -- messages ------------------------------------------------------------------------------------
NAME = st.sampled_from(["Via", "v", "VIA", "From", "f", "To", "t", "Call-ID", "i", "call-id", "CSeq", "Max-Forwards",
                        "Content-Length", "l", "content-length", "Route", "Record-Route", "Contact", "m",
                        "X-Odd", "Via ", "To\t", "Subject", "Identity", "y"])
VALUE = st.sampled_from(["SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1", "<sip:a@127.0.0.1>;tag=x", "c1@h",
                         "1 INVITE", "2 BYE", "70", "0", "4", "12", " 0 ", "00", "1234567890", "", "a:b", "x\ry"])


@st.composite
def message(draw: st.DrawFn) -> bytes:
    start = draw(st.sampled_from(["SIP/2.0 200 OK", "BYE sip:b@127.0.0.1 SIP/2.0", "ACK sip:b SIP/2.0"] * 3 + ["", " "]))
    required = [f"{n}: {v}" for n, v in (("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-2"),
                                          ("From", "<sip:a@h>;tag=1"), ("To", "<sip:b@h>"),
                                          ("Call-ID", "c"), ("CSeq", "1 BYE"))]
    lines = draw(st.lists(st.sampled_from(required), max_size=7)) if draw(st.integers(0, 4)) == 0 \
        else list(required)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 6]))):
        sep = draw(st.sampled_from([": ", ":", " : ", ":\t"]))
        lines.insert(draw(st.integers(0, len(lines))), draw(NAME) + sep + draw(VALUE))
    body = draw(st.sampled_from([b"", b"v=0\r\n", b"v=0\r\n\r\nx", b"\r\n"]))
    if draw(st.integers(0, 5)):
        length = draw(st.sampled_from([str(len(body))] * 6 + [f" {len(body)} ", str(len(body) + 1),
                                       "0" + str(len(body)), "x", "", "1" * 10, "\u0661",
                                       "0" * 9 + str(len(body)), f"\x0b{len(body)}\x0c", f"{len(body)}\x1c"]))
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["Content-Length", "l"])) + ": " + length)
    if lines and draw(st.integers(0, 9)) == 0:  # a folded line
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i] + "\r\n " + draw(VALUE)
    eol = draw(st.sampled_from(["\r\n"] * 8 + ["\n", "\r"]))
    before = draw(st.sampled_from(["", "", "", "", "\r\n"]))
    return (before + eol.join([start, *lines]) + eol + eol).encode("utf-8", "surrogateescape") + body


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(message()), b" ,;:\r\n\t\x00\xff0", 4)


@SETTINGS
@given(message() | mutated())
@example(b"SIP/2.0 200 OK\r\nVia: v\r\nFrom: f\r\nTo: t\r\nCall-ID: c\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n")
@example(b"\r\n\r\n")
@example(b"SIP/2.0 200 OK\r\n\r\n\r\n")
@example(b"X\r\nl: 0\r\n\r\n")
def test_split_and_known_keys_as_python_on_messages(data: bytes) -> None:
    same_split(data)


@SETTINGS
@given(st.binary(max_size=300), st.integers(0, 400))
def test_split_and_known_keys_as_python_on_any_bytes(data: bytes, max_size: int) -> None:
    same_split(data, max_size)
    same_split(data)


def test_split_and_known_keys_as_python_on_rfc4475() -> None:
    paths = sorted(RFC4475.glob("*.dat"))
    assert len(paths) >= 40
    for path in paths:
        same_split(path.read_bytes())
    for path in paths:  # again, every name of every message learnt
        data = path.read_bytes()
        assert _fast.split(data, 65535, parser._NAMES) == split_py(data, 65535), path.name


def test_known_keys_as_the_regex_whatever_names_were_learnt(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser learns only valid tokens; C reads a name exactly as the regex does anyway
    (up to the first colon, never across CR or LF)."""
    for odd in (b"A\rB", b"", b" v", b"C\nD", b"E F"):
        monkeypatch.setitem(parser._NAMES, odd, "odd")
    for head in (b"S\r\nA\rB: 1", b"S\r\n: 1", b"S\r\n v:1\r\nE F:2", b"S\nC\nD: 1", b"S\r\nA\rB: 1\r\n: 2",
                 b"S\r\nE F\r: 1", b"S\r\n\r\n: 1"):
        for count in range(4):
            assert _fast.known_keys(head, count, parser._NAMES) == parser.known_keys_re(head, count), (head, count)


def test_the_common_messages_take_the_c_split() -> None:
    data = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-1\r\nFrom: <sip:a@h>;tag=1\r\n"
            b"To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nv=0\n")
    learn(data)
    parts = _fast.split(data, 65535, parser._NAMES)
    assert parts is not None and parts[2] == ["via", "from", "to", "call-id", "cseq", "content-length"]
    assert parts[0] == b"SIP/2.0 200 OK" and parts[3] == b"v=0\n"
    assert relay.split(data, 65535) is not None
    assert _fast.split(data, len(data) - 1, parser._NAMES) is None


def test_the_c_functions_refuse_wrong_types() -> None:
    with pytest.raises(TypeError):
        _fast.split("text", 10, {})
    with pytest.raises(TypeError):
        _fast.known_keys(b"", 0, [])
    with pytest.raises(TypeError):
        _fast.usual_uri(b"sip:a")


# -- URIs ----------------------------------------------------------------------------------------
URI = st.builds(
    lambda *parts: "".join(parts),
    st.sampled_from(["sip:", "SIPS:", "Sip:", "sips:", "sipx:", "sip", "tel:", "", "siP:"]),
    st.sampled_from(["", "alice@", "a:pw@", "@", "a b@", "+1303;npdi@", "a@b@", "x<@", "\u017f@", "a\x1c@"]),
    st.sampled_from(["127.0.0.1", "a", "a.", "a..", ".a", "a-", "-a", "a-b.example.com.", "a_b", "[::1]", "[]",
                     "[2001:db8::1", "[::1]x", "h\u212a", "", "1.2.3.4"]),
    st.sampled_from(["", ":5060", ":", ":0", ":00000", ":65535", ":65536", ":123456", ":99999", ":\u0661", ": 1"]),
    st.sampled_from(["", ";lr", ";=x", ";a;=b", ";", ";user=phone;sgrr=x.y", ";a b", ";a@b", ";a?b", ";a\x1cb"]),
    st.sampled_from(["", "?x=y", "?", "?a b", "?<", "?a@b", "?a\x1f"]),
    st.sampled_from(["", "", "\n", "\n\n", " ", "\t", "\x0b", "\x1c", "\xa0", ">"]))


@settings(max_examples=3000, deadline=None)
@given(URI | st.text(st.characters(max_codepoint=0x3000), max_size=30)
       | st.text("sipSIP:@ab1.;=?<>[] \t\n\x0b\x1c-:05", max_size=24))
@example("sip:a@b\n")
@example("sip:host;x=@y")
@example("sip:a@b@c")
@example("sip:h:0")
@example("sip:h:00000;lr")
@example("sip:a@example.com.:5060")
@example("sips:[::1]:65536")
def test_usual_uri_as_the_regex(text: str) -> None:
    got = _fast.usual_uri(text)
    if text.isascii():
        assert got == address.usual_uri_re(text)
    else:
        assert got is None  # the regex decides: its \s, \d and case folding are Unicode
    assert address._usual_uri(text) == address.usual_uri_re(text)


def test_usual_uri_as_the_regex_on_rfc4475() -> None:
    values = []
    for path in sorted(RFC4475.glob("*.dat")):
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape")
        start, *lines = head.split("\r\n")
        values += start.split(" ")
        for line in lines:
            values += [value.strip(" <>;") for value in line.split(":", 1)[-1].split(",")]
            values += [part.split(">")[0] for part in line.split("<")[1:]]
    assert len(values) > 500
    for value in values:
        assert address._usual_uri(value) == address.usual_uri_re(value), value


@pytest.mark.parametrize("extra", [249, 250, 251])
def test_split_bounds_the_lines_as_python(extra: int) -> None:
    """parser.MAX_LINES (256) lines, start line included, and one more: C counts as Python does."""
    head = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n"
            b"Call-ID: c\r\nCSeq: 1 BYE\r\n" + b"Subject: x\r\n" * extra + b"Content-Length: 0\r\n\r\n")
    same_split(head)
    assert (_fast.split(head, 65535, parser._NAMES) is None) == (extra > 249)


# -- CSeq and Via values -------------------------------------------------------------------------
def outcome(parse: Callable[[str], object], value: str) -> tuple[str, object]:
    try:
        result = parse(value)
    except SipParseError as exc:
        return "error", exc.reason
    return "ok", astuple(result) if isinstance(result, Via) else result  # type: ignore[arg-type]


CSEQ = st.builds(
    lambda *parts: "".join(parts),
    st.sampled_from(["", " ", "\t", "\x1c", "\xa0"]),
    st.sampled_from(["1", "0", "2147483647", "2147483648", "0000000001", "00000000001", "99999999999", "", "\u0661",
                     "-1", "1x"]),
    st.sampled_from([" ", "  ", "\t", "", "\x0b", "\xa0", "\n"]),
    st.sampled_from(["INVITE", "BYE", "ACK", "x.y!%*_+`'~-", "IN VITE", "", "INV@", "\u00c9", "a\n"]),
    st.sampled_from(["", " ", "\n", "\r\n", " x", "\x1f"]))


@settings(max_examples=2000, deadline=None)
@given(CSEQ | st.text(st.characters(max_codepoint=0x3000), max_size=20) | st.text("0123 \tINVITE\x1c\n-", max_size=16))
@example("1 INVITE")
@example("2147483648 BYE")
def test_cseq_as_python(text: str) -> None:
    got = _fast.cseq(text)
    assert got is None or outcome(sipmessage.cseq_value_py, text) == ("ok", got)
    assert outcome(sipmessage.cseq_value, text) == outcome(sipmessage.cseq_value_py, text)


@settings(max_examples=3000, deadline=None)
@given(fastpaths.VIA | fastpaths.TEXT
       | st.builds(lambda t, h, p, q: f"SIP/2.0/{t} {h}{p}{q}", st.sampled_from(["UDP", "TCP", "WSS", "udp"]),
                   fastpaths.HOST, st.sampled_from(["", ":5060", ":0", ":65536", ":1:2", ":", ":123456"]),
                   st.text(";=abrcdeiptv0-9 \t\x1c\xa0RPORT", max_size=24)))
@example("SIP/2.0/UDP h;rport=x")
@example("SIP/2.0/UDP h;;=1")
@example("SIP/2.0/TCP h;A=1;a=2;B ; C = 3 ")
def test_via_as_python(text: str) -> None:
    got = _fast.via(text)
    if got is not None:
        assert outcome(address.parse_via_py, text) == ("ok", (*got, text.strip()))
    assert outcome(address.parse_via, text) == outcome(address.parse_via_py, text)


def test_cseq_and_via_as_python_on_rfc4475() -> None:
    for value in fastpaths.torture_values(("via", "v")):
        assert outcome(address.parse_via, value) == outcome(address.parse_via_py, value), value
    for value in fastpaths.torture_values(("cseq",)):
        assert outcome(sipmessage.cseq_value, value) == outcome(sipmessage.cseq_value_py, value), value


def test_the_usual_values_take_the_c_paths() -> None:
    assert _fast.cseq("1 INVITE") == (1, "INVITE")
    assert _fast.via("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport") == (
        "UDP", "127.0.0.1", 5061, {"branch": "z9hG4bK-1", "rport": None})


# -- parameter lists -----------------------------------------------------------------------------
PARAMS = st.lists(
    st.builds(lambda *parts: "".join(parts),
              st.sampled_from(["", " ", "\t", "\x1c", "\xa0", "\n"]),
              st.sampled_from(["tag", "TAG", "Lr", "branch", "user", "x" * 70, "X" * 64, "a b", "", "=", "\u00c9",
                               "\x00", "rport"]),
              st.sampled_from(["", "=", "=1", " = v ", "=a=b", "==", '="q;x"', "=\u0661", "=\x00", "=\x0b\x1f",
                               "=" + "v" * 300]),
              st.sampled_from(["", " ", "\x0c", "\x85"])),
    max_size=40).map(";".join)


@settings(max_examples=3000, deadline=None)
@given(PARAMS | fastpaths.TEXT | st.text(";=aAbZ \t\n\x0b\x1c\x00\xa0", max_size=40)
       | st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape")))
@example("")
@example(";")
@example(";;=1")
@example("tag=1;TAG=2;tag")
@example(";" * 5000 + "a=1")
@example("A" * 100 + "=B")
def test_params_as_python(text: str) -> None:
    """The C parameter list is the Python's (names lower-cased and stripped, values stripped, a
    later one replacing an earlier one in the earlier one's place), or None where it refuses or
    the text is not ASCII; long names, long and deep lists, NUL, control and non-ASCII text."""
    got = _fast.params(text)
    want = outcome(address.parse_params_py, text)
    if got is not None:
        assert ("ok", got) == want and list(got) == list(want[1])  # type: ignore[arg-type]
    else:
        assert want[0] == "error" or not text.isascii()
    assert outcome(address.parse_params, text) == want


def test_params_on_the_usual_values_and_rfc4475() -> None:
    assert _fast.params("user=phone;tag=77SIPpTag001") == {"user": "phone", "tag": "77SIPpTag001"}
    assert _fast.params(";lr;sgrr=x.y") == {"lr": None, "sgrr": "x.y"}
    assert _fast.params("a;=b") is None and _fast.params("t\u00e9=1") is None
    with pytest.raises(TypeError):
        _fast.params(b"a=b")
    for value in fastpaths.torture_values(("to", "t", "from", "f", "contact", "m", "route", "record-route")):
        for part in value.split(">")[1:] + value.split(";", 1)[1:]:
            assert outcome(address.parse_params, part) == outcome(address.parse_params_py, part), part


# -- name-addrs ----------------------------------------------------------------------------------
def name_addr_outcome(parse_one: Callable[[str], object], value: str) -> tuple[str, object]:
    try:
        result = parse_one(value)
    except SipParseError as exc:
        return "error", exc.reason
    return "ok", astuple(result) if isinstance(result, address.NameAddr) else result  # type: ignore[arg-type]


def py_tag(value: str) -> str:
    return address.parse_name_addr_py(value).tag or ""


def py_uri(value: str) -> str:
    return address.parse_name_addr_py(value).uri


NA_URI = st.sampled_from(["sip:+12127363100@127.0.0.1:5061;user=phone", "sip:alice@example.com", "SIPS:a@b:5061",
                          "sip:127.0.0.1:5060;lr;sgrr=QWxp.0123abcd", "sip:a@[2001:db8::1]", "sip:a:pw@h?x=y",
                          "Sip:h.example.com.;transport=TCP"])
NA_URI = st.one_of(NA_URI, NA_URI, NA_URI, NA_URI, fastpaths.URI, URI)
NA_PARAMS = st.sampled_from(["", ";tag=77SIPpTag001", ";TAG=x;tag=y", ";tag", ";tag=", " ;tag = a ", ";Tag=1;tag",
                             ";tag=a b", ';tag="q;x"', ";lr;sgrr=x.y", ";user=phone;tag=Ab-9", ";tag=1;", ";;tag=2",
                             ";tag=\tT\x1c", ";x=\x00;tag=z"] * 4
                            + [";=1", ";;=", ";tag=\u00e9", ";tag=1\x00", ";" * 50, " ", "\n", "\t", "x", ",", "\x0b",
                               ">"])
NA_PARAMS = st.one_of(NA_PARAMS, NA_PARAMS, NA_PARAMS, PARAMS.map(lambda p: ";" + p))
NAME_ADDR = st.builds(
    lambda *parts: "".join(parts),
    st.sampled_from([""] * 12 + [" ", "\t", "\r\n", "\x1c", "\xa0", "\x00"]),
    st.sampled_from(["", "", "", "", '"Alice" ', '"A \\"B\\" C"', '"" ', '"a\\\\" ', "Bob ", "Bob Smith ",
                     "Bob\tSmith", "A  \t B ", "x.y!%*_+`'~- "] * 2
                    + ['"a\\', '"open ', '"\u00e9" ', "A \r B ", "A\x0bB ", "B\xe9 ", "a,b ", "<", '"x\x00y"',
                       "Bob\r\n", '"a\\\x00"']),
    st.sampled_from(["<"] * 12 + ["", "<<", "< "]),
    NA_URI,
    st.sampled_from([">"] * 15 + ["", ">>", "> ", " >", "\n>"]),
    NA_PARAMS,
    st.sampled_from([""] * 12 + [" ", "\r\n", "\n", "\x1f", "\xa0", "\x85"]))
GOOD_NAME_ADDR = st.builds(  # the values trunks send, with the liberties RFC 3261 allows: C takes most
    lambda *parts: "".join(parts),
    st.sampled_from(["", "", " ", "\t"]),
    st.sampled_from(["", "", '"Alice" ', '"A \\"B\\" C" ', '""', '"a\\\\"\t', "Bob ", "Bob  Smith\t", "x.y!%*_+`'~-"]),
    st.just("<"),
    st.sampled_from(["sip:+12127363100@127.0.0.1:5061;user=phone", "sip:alice@example.com", "SIPS:a@b:5061",
                     "sip:127.0.0.1:5060;lr;sgrr=QWxp.0123abcd", "sip:a@[2001:db8::1]", "sip:a:pw@h?x=y",
                     "Sip:h.example.com.;transport=TCP", "sip:h:65535", "sip:a%20b@h;x=\"y\""]),
    st.sampled_from([">", ">", "> ", ">\t"]),
    st.lists(st.builds(lambda *p: "".join(p), st.sampled_from([";", ";", " ;", "; ", ";\t"]),
                       st.sampled_from(["tag", "TAG", "Tag", "user", "lr", "X-Odd", "tag ", "a" * 70]),
                       st.sampled_from(["", "=", "=1", "=77SIPpTag001", " = b ", '="q;x"', "=a=b", "=\x00", "=T\t"])),
             max_size=5).map("".join),
    st.sampled_from(["", "", " ", "\r\n", ";"]))
NAME_ADDR_PIECES = st.lists(st.sampled_from(
    ['"', "\\", "<", ">", ";", "=", " ", "\t", "\n", "\r", "\x0b", "\x1c", "\x00", "sip:", "SIPS:", "tel:", "a", "Bob",
     "@", "tag", "TAG", ":5060", ":0", "127.0.0.1", "[::1]", "?", ",", "\u00e9", "\xa0", "x.y", "-", "'", "~"]),
    max_size=16).map("".join)
USUAL_NAME_ADDRS = ["<sip:+12127363100@127.0.0.1:5061;user=phone>;tag=77SIPpTag001",
                    "<sip:+13036231000@127.0.0.1:5060;user=phone>",
                    '"Alice Caller" <sip:+12025550123@198.51.100.7;user=phone>;tag=1928301774',
                    "Bob <sips:bob@example.com:5061>;tag=a;tag=b", "<sip:127.0.0.1:5060;lr;sgrr=abc.0123456789ab>",
                    "  <sip:a@b> ;TAG = x ", '"a \\"b\\"" <sip:a@[2001:db8::1]:5060>;Tag=T', "<sip:a@b>;"]


def same_name_addr(value: str) -> None:
    want = name_addr_outcome(address.parse_name_addr_py, value)
    got, tag, uri = _fast.name_addr(value), _fast.name_addr_tag(value), _fast.name_addr_uri(value)
    assert (got is None) == (tag is None) == (uri is None), (value, got, tag, uri)  # one shape for all three
    if got is not None:
        assert want == ("ok", got), value
        assert list(got[2]) == list(want[1][2]) and type(got[0]) is type(want[1][0])  # type: ignore[index]
        assert tag == (got[2].get("tag") or "") and uri == got[1]
    assert name_addr_outcome(address.parse_name_addr, value) == want
    assert name_addr_outcome(address.tag_of, value) == name_addr_outcome(py_tag, value)
    assert name_addr_outcome(address.uri_of, value) == name_addr_outcome(py_uri, value)


@SETTINGS
@given(GOOD_NAME_ADDR | NAME_ADDR | NAME_ADDR_PIECES | fastpaths.TEXT
       | st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape")))
@example("<sip:a@b\n>")
@example("<sip:a@b>\n;tag=1")
@example('"a\\')
@example("A \r B <sip:x>")
@example("<sip:a@b>;;=x")
@example("<sip:a@b;=x>")
@example("<sip:a@b:0>;tag=1")
@example("<tel:+1303>;tag=1")
@example("sip:a@b;tag=1")
@example("<sip:a@b> junk")
@example("<sip:a@b")
@example("<>")
@example("<sip:a@b>>;tag=1")
@example("<sip:a@b>;tag=1\x00")
@example("<sip:a\x00@b>;tag=1")
@example("<sip:a@b>;tag=\u00e9")
@example("\u00e9 <sip:a@b>")
def test_name_addr_as_python(value: str) -> None:
    """C reads a name-addr as parse_name_addr_py does (display name unescaped, URI, the
    parameters as parse_params gives them in their order, raw), its tag and its URI, or says
    None where the Python decides; never accepts what the Python refuses. The three C readers
    take the same values; address's wrappers give the Python's result or error every time."""
    same_name_addr(value)


@st.composite
def mutated_name_addr(draw: st.DrawFn) -> str:
    value = draw(st.sampled_from(USUAL_NAME_ADDRS)).encode()
    return mutate(draw, value, b' "<>;=\\,\t\r\n\x00\xff@:', 3).decode("utf-8", "surrogateescape")


@SETTINGS
@given(mutated_name_addr())
def test_name_addr_as_python_on_mutated_values(value: str) -> None:
    same_name_addr(value)


def test_name_addr_as_python_on_huge_values() -> None:
    for value in ("<sip:" + "a" * 100000 + "@b>;tag=1", "<sip:a@b>;" + "tag=x;" * 20000, "<sip:a@b>;tag=" + "x" * 100000,
                  '"' + "\\\"" * 30000 + '" <sip:a@b>', "Bob " * 20000 + "<sip:a@b>", "<" * 50000,
                  " " * 50000 + "<sip:a@b>" + " " * 50000, "<sip:a@b>;" + "A" * 70000 + "=1",
                  '"' + "\\" * 30001 + " <sip:a@b>", "<sip:a@b>" + ";" * 100000):
        same_name_addr(value)


def test_name_addr_as_python_on_rfc4475() -> None:
    values = fastpaths.torture_values(("from", "f", "to", "t", "contact", "m", "route", "record-route",
                                       "p-asserted-identity"))
    assert len(values) > 100
    for value in values:
        same_name_addr(value)


def test_the_usual_name_addrs_take_the_c_path() -> None:
    for value in USUAL_NAME_ADDRS:
        assert _fast.name_addr(value) is not None, value
    assert _fast.name_addr(USUAL_NAME_ADDRS[0]) == (
        None, "sip:+12127363100@127.0.0.1:5061;user=phone", {"tag": "77SIPpTag001"}, USUAL_NAME_ADDRS[0])
    assert _fast.name_addr(USUAL_NAME_ADDRS[2])[0] == "Alice Caller"  # type: ignore[index]
    assert _fast.name_addr(USUAL_NAME_ADDRS[6])[0] == 'a "b"'  # type: ignore[index]
    assert _fast.name_addr_tag(USUAL_NAME_ADDRS[3]) == "b" and _fast.name_addr_tag(USUAL_NAME_ADDRS[1]) == ""
    assert _fast.name_addr_tag(USUAL_NAME_ADDRS[5]) == "x" and _fast.name_addr_uri(USUAL_NAME_ADDRS[5]) == "sip:a@b"
    for declined in ("<tel:+1303>", "sip:a@b", "<sip:a@b>;=1", "\u00e9 <sip:a@b>", "<sip:\u00e9@b>", "<sip:a@b"):
        assert _fast.name_addr(declined) is _fast.name_addr_tag(declined) is _fast.name_addr_uri(declined) is None
    for f in (_fast.name_addr, _fast.name_addr_tag, _fast.name_addr_uri):
        with pytest.raises(TypeError):
            f(b"<sip:a@b>")


# -- header line values --------------------------------------------------------------------------
LINE = st.builds(
    lambda *parts: b"".join(parts),
    st.sampled_from([b"To", b"Via", b"", b"a b", b"\xff"]),
    st.sampled_from([b":", b" : ", b"::", b""]),
    st.lists(st.sampled_from([b" ", b"\t", b"\x0b", b"\x1c", b"\x1f", b"\x00", b"\xc2\xa0", b"\xc2\x85",
                              b"\xe2\x80\xa8", b"\xe3\x80\x80", b"\xa0", b"\xc2", b"\xff", b"\xed\xa0\x80", b"x",
                              b"<sip:a@h>;tag=1", b"\xc3\xa9", b",", b":"]), max_size=12).map(b"".join))


@settings(max_examples=3000, deadline=None)
@given(LINE | st.binary(max_size=80) | st.binary(max_size=20).map(lambda b: b"X:" + b * 200))
@example(b"To:")
@example(b"To: \xc2\xa0x\xc2\xa0 ")
@example(b"To:\xa0x")
@example(b"no colon")
def test_line_value_as_python(line: bytes) -> None:
    """A header line's value, decoded with surrogateescape and stripped, is the Python's for
    any bytes: Unicode white space at the ends, invalid UTF-8, NUL, long lines; None only
    where the Python raises (no colon)."""
    got = _fast.value(line)
    try:
        want = relay.line_value(line)
    except ValueError:
        assert got is None and b":" not in line
        return
    assert got == want and type(got) is str


# -- a response read for the relay ---------------------------------------------------------------
def fast_outcome(read: Callable[[bytes, int], object], data: bytes, max_size: int = 65535) -> tuple[str, object]:
    try:
        got = read(data, max_size)
    except SipParseError as exc:
        return "error", exc.reason
    return "ok", None if got is None else astuple(got)  # type: ignore[call-overload]


VIA_LINE = st.builds(
    lambda *parts: "".join(parts),
    st.sampled_from(["Via: ", "v: ", "Via :", "VIA:\t"]),
    st.lists(st.sampled_from(["SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsg1;rport=5060", "SIP/2.0/UDP h;branch=1",
                              "", " ", "\x1c", "\xa0", "x<y", '"a,b"', "\u00e9"]), min_size=1, max_size=5)
    .map(lambda items: ",".join(items)),
    st.sampled_from(["", " ", "\t"]))


@st.composite
def relayed_response(draw: st.DrawFn) -> bytes:
    """Responses as sipp and trunks write them: Via lines holding one value or lists ("ours,
    theirs", sipp's [last_Via:]), empty items, quoted or non-ASCII ones, many of them."""
    vias = draw(st.lists(VIA_LINE, min_size=1, max_size=4))
    if draw(st.integers(0, 9)) == 0:
        vias += ["Via: SIP/2.0/UDP h;branch=z9hG4bK-1"] * draw(st.sampled_from([126, 127, 128, 129]))
    lines = [*vias, "From: <sip:a@h>;tag=1", "To: <sip:b@h>;tag=2", "Call-ID: c1",
             "CSeq: " + draw(st.sampled_from(["1 INVITE", "2 BYE", "x BYE", "1 INVITE\u00e9"]))]
    for extra in draw(st.lists(st.sampled_from(["CSeq: 1 INVITE", "Contact: <sip:b@h>", "Via: a,b"]), max_size=2)):
        lines.insert(draw(st.integers(0, len(lines))), extra)
    start = draw(st.sampled_from(["SIP/2.0 200 OK", "SIP/2.0 180", "SIP/2.0 2000", "SIP/2.0 099 x", "SIP/2.0 7x0 OK",
                                  "SIP/2.0 486 Busy Here"]))
    body = draw(st.sampled_from([b"", b"v=0\r\n"]))
    return ("\r\n".join([start, *lines, f"Content-Length: {len(body)}", "", ""])).encode() + body


@st.composite
def mutated_response(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(relayed_response()), b" ,;:\r\n\t<\"\x00\xff0", 4)


SIPP_200 = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsg1;rport=5060, "
            b"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\nFrom: <sip:a@h>;tag=1\r\n"
            b"To: <sip:b@h>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


@SETTINGS
@given(relayed_response() | mutated_response() | message() | mutated())
@example(SIPP_200)
@example(SIPP_200.replace(b"Via: ", b"Via: ,, "))
@example(SIPP_200.replace(b"rport=5060, ", b"rport=5060 ,\x1c, ,"))
def test_response_as_python(data: bytes) -> None:
    """The C response is the Python definition's, relayed bytes included, for one-value and
    listed Via lines, or None where the Python decides; ``relay.response`` (C first) always
    gives what ``response_py`` gives, None and SipParseError included."""
    learn(data)
    want = fast_outcome(relay.response_py, data)
    got = _fast.response(data, 65535, parser._NAMES, sipmessage.MAX_VALUES)
    if got is not None:
        assert want == ("ok", got)
    assert fast_outcome(relay.response, data) == want
    assert fast_outcome(relay.response, data, len(data) - 1) == fast_outcome(relay.response_py, data, len(data) - 1)


def test_the_usual_responses_take_the_c_path() -> None:
    """sipp's 200 (its Vias in one line) and a 200 with one Via a line: C answers both."""
    learn(SIPP_200)
    got = _fast.response(SIPP_200, 65535, parser._NAMES, sipmessage.MAX_VALUES)
    assert got == (200, "INVITE", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsg1;rport=5060",
                   "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1",
                   SIPP_200.replace(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsg1;rport=5060, ", b""), 1)
    two = SIPP_200.replace(b", SIP/2.0/UDP 127.0.0.1:5061", b"\r\nVia: SIP/2.0/UDP 127.0.0.1:5061")
    got = _fast.response(two, 65535, parser._NAMES, sipmessage.MAX_VALUES)
    assert got is not None and got[4] == two.replace(b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsg1;rport=5060\r\n", b"")
    with pytest.raises(TypeError):
        _fast.response("text", 1, {}, 1)


# -- an in-dialog request read for the relay -----------------------------------------------------
def request_fields(read: Callable[[bytes, int], relay.FastRequest | None], data: bytes,
                   max_size: int = 65535) -> tuple[str, object]:
    try:
        got = read(data, max_size)
    except SipParseError as exc:
        return "error", exc.reason
    if got is None:
        return "ok", None
    msg = got.msg
    return "ok", (msg.start, msg.lines, msg.keys, msg.body, got.method, got.uri, got.cseq, got.via, got.max_forwards,
                  got.mf_line)


@st.composite
def dialog_request(draw: st.DrawFn) -> bytes:
    """ACK and BYE as UAs write them, with the pieces the relay reads made risky: the request
    line's spaces and version, the URI, the CSeq's method, Via lists, Max-Forwards values."""
    method = draw(st.sampled_from(["ACK", "BYE", "INFO", "FOO", "", "bye"]))
    uri = draw(st.sampled_from(["sip:uas@127.0.0.1:5070;transport=UDP", "<sip:a@b>", "uas", "", "tel:+1",
                                "sip:\u00e9@h", "sip:a b"]))
    version = draw(st.sampled_from(["SIP/2.0", "SIP/2.0", "SIP/3.0", "sip/2.0", "SIP/2.0 "]))
    vias = draw(st.lists(st.sampled_from(["Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2", "Via: a, b",
                                          "Via: ", "v: SIP/2.0/UDP h;branch=1", "Via: \u00e9"]), min_size=1, max_size=3))
    cseq = draw(st.sampled_from([f"2 {method}", f"2 {method}", "2 INVITE", "x BYE", f"2  {method} ", "2"]))
    mfs = draw(st.lists(st.sampled_from(["70", "0", "255", "256", "0000000070", "00000000070", "", "7x", " 70 ",
                                         "\u0667\u0660", "-1"]), max_size=2))
    lines = [*vias, "From: <sip:a@h>;tag=1", "To: <sip:b@h>;tag=2", "Call-ID: c1", f"CSeq: {cseq}",
             *[f"Max-Forwards: {mf}" for mf in mfs]]
    for extra in draw(st.lists(st.sampled_from(["CSeq: 2 BYE", "Route: <sip:x;lr>", "Via: SIP/2.0/UDP h"]),
                               max_size=2)):
        lines.insert(draw(st.integers(0, len(lines))), extra)
    head = "\r\n".join([f"{method} {uri} {version}", *lines, "Content-Length: 0", "", ""])
    return head.encode("utf-8", "surrogateescape")


@st.composite
def mutated_request(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(dialog_request()), b" ,;:\r\n\t<\x00\xff0", 4)


@SETTINGS
@given(dialog_request() | mutated_request() | message() | mutated())
@example(b"BYE sip:uas@127.0.0.1:5070;transport=UDP SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2\r\n"
         b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n"
         b"Content-Length: 0\r\n\r\n")
def test_request_as_python(data: bytes) -> None:
    """The C request is the Python definition's (the lines, the method, URI, CSeq, top Via and
    Max-Forwards it read), or None where the Python decides; ``relay.request`` always gives what
    ``request_py`` gives, None and SipParseError included."""
    learn(data)
    want = request_fields(relay.request_py, data)
    got = _fast.request(data, 65535, parser._NAMES, parser._METHODS)
    if got is not None:
        assert want == ("ok", got)
    assert request_fields(relay.request, data) == want
    assert request_fields(relay.request, data, len(data) - 1) == request_fields(relay.request_py, data, len(data) - 1)


def test_the_usual_requests_take_the_c_path() -> None:
    bye = (b"BYE sip:uas@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-2\r\n"
           b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n"
           b"Content-Length: 0\r\n\r\n")
    learn(bye)
    got = _fast.request(bye, 65535, parser._NAMES, parser._METHODS)
    assert got is not None and got[4:] == ("BYE", "sip:uas@127.0.0.1:5070", 2, 0, 70, 5)
    with pytest.raises(TypeError):
        _fast.request(bye, 65535, parser._NAMES, [])


# -- a request parsed whole (parser.parse: the usual INVITE in C) --------------------------------
def parse_state(read: Callable[[bytes, int], object], data: bytes, max_size: int = 65535) -> tuple[str, object]:
    """What ``read`` (parse or parse_py) leaves: every field of the message, its header index,
    its cache, or the error with its status and whether it carries the partial request (and that
    request's state)."""
    try:
        msg = read(data, max_size)
    except SipParseError as exc:
        partial = exc.partial
        return "error", (exc.reason, exc.status_hint, None if partial is None else fields(partial))
    return "ok", fields(msg)


def fields(msg: object) -> tuple[object, ...]:
    assert isinstance(msg, sipmessage.Message)
    own = (msg.method, msg.uri, msg.version) if isinstance(msg, sipmessage.Request) \
        else (msg.status, msg.reason, msg.version)  # type: ignore[attr-defined]
    index = msg._index
    return (type(msg), msg._raw, msg._start, msg._lines, None if index is None else dict(index), msg.body,
            msg._cache, msg._dirty, msg._cl_ok, msg.serialize(), *own)


def same_parse(data: bytes) -> None:
    """``parse`` (C first) leaves what ``parse_py`` leaves, error or message, at any size limit;
    where C answers at all, its fields are the Python's."""
    learn(data)
    for max_size in (65535, len(data), len(data) - 1):
        want = parse_state(parser.parse_py, data, max_size)
        got = _fast.parsed(data, max_size, parser._NAMES, parser._METHODS)
        if got is not None:
            assert want[0] == "ok"
            state = want[1]
            assert isinstance(state, tuple)
            assert (got[0], got[1], got[2], got[3], got[4], got[5]) == (state[2], state[3], state[5], state[10],
                                                                      state[11], state[4])
            assert {"cseq": {"v": [got[6]], "t": got[7]}} == state[6]
        assert parse_state(parser.parse, data, max_size) == want


INVITE_SIPP = (b"INVITE sip:+13035550100@127.0.0.1:5070;user=phone SIP/2.0\r\n"
               b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0\r\n"
               b'From: "Alice" <sip:+12025550123@127.0.0.1:5061;user=phone>;tag=1\r\n'
               b"To: <sip:+13035550100@127.0.0.1:5070;user=phone>\r\nCall-ID: 1-1@127.0.0.1\r\n"
               b"CSeq: 1 INVITE\r\nContact: <sip:sipp@127.0.0.1:5061>\r\nMax-Forwards: 70\r\n"
               b"Identity: eyJ.eyJ.sig;info=<https://cert.example/a.pem>;alg=ES256;ppt=shaken\r\n"
               b"Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")


@st.composite
def invite(draw: st.DrawFn) -> bytes:
    """Initial INVITEs as trunks write them, with what the parser checks made risky: the request
    line (spaces, method, URI, version), the CSeq's number and method, duplicate or odd
    Content-Length and From/To lines, compact and upper-case names, folds, bare CR and LF, NUL,
    non-ASCII bytes and hundreds of lines. Each piece is the usual one in most examples (the first
    choice), so that about half the INVITEs are valid and C reads them."""
    usual = draw(st.integers(0, 3)) > 0

    def pick(*choices: str) -> str:
        return choices[0] if usual and draw(st.integers(0, 15)) else draw(st.sampled_from(choices))

    method = pick("INVITE", "BYE", "invite", "FOO", "", "INV\u00c9TE", "ACK")
    uri = pick("sip:+13035550100@127.0.0.1:5070;user=phone", "<sip:a@b>", "uas", "", "tel:+1", "sip:\u00e9@h",
               "sip:a b", "sip:a\x00b", "sip:" + "a" * 3000)
    version = pick("SIP/2.0", "SIP/3.0", "sip/2.0", "SIP/2.0 ", " SIP/2.0", "SIP/2.0\x00")
    sep = pick(" ", "  ", "\t")
    cseq = pick("1 INVITE", "1 BYE", "x INVITE", "1  INVITE ", "2147483648 INVITE", "1 INVITE\u00e9", "1",
                "\u0661 INVITE", "1 invite")
    lines = ["Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0", 'From: "A" <sip:a@h>;tag=1', "To: <sip:b@h>",
             "Call-ID: 1-1@h", f"CSeq: {cseq}", "Max-Forwards: 70", "Contact: <sip:c@h>",
             "Identity: eyJ.eyJ.sig;info=<https://x/a.pem>"]
    extras = ["Allow: INVITE, ACK", "CSeq: 1 INVITE", "To: <sip:c@h>", "v: SIP/2.0/UDP h;branch=z9hG4bK2",
              "Content-Length: 0", "l: 5", "X-\u00e9: 1", "Subject: a\x00b", "Subject: a\rb", "f: <sip:a@h>",
              "Via: a, b", "Allow: A,\r\n B", "CALL-ID: 2", "Bad Name: 1", ": x", "Route: <sip:r;lr>", " folded: 1"]
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), pick(*extras))
    if not usual and draw(st.booleans()):
        del lines[draw(st.integers(0, len(lines) - 1))]
    if draw(st.integers(0, 12)) == 0:
        lines += ["Subject: x"] * draw(st.sampled_from([240, 245, 246, 247, 250]))
    body = draw(st.sampled_from([b"v=0\r\n", b"", b"v=0\r\n\r\nx"]))
    length = pick(str(len(body)), str(len(body) + 1), str(max(len(body) - 1, 0)), "x", "", f"{len(body)}, {len(body)}",
                  "\u00b2", "0" * 9 + "5", "-0", f" {len(body)}\t")
    if usual or draw(st.integers(0, 9)):
        lines.insert(draw(st.integers(0, len(lines))), f"{pick('Content-Length', 'l', 'content-length')}: {length}")
    eol = pick("\r\n", "\n", "\r")
    head = eol.join([f"{method}{sep}{uri}{sep}{version}", *lines]) + eol + eol
    return pick("", "\r\n").encode() + head.encode("utf-8", "surrogateescape") + body


@st.composite
def mutated_invite(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(invite()), b" ,;:\r\n\t<\x00\xff0", 4)


@SETTINGS
@given(invite() | mutated_invite() | dialog_request() | mutated_request() | message() | mutated())
@example(INVITE_SIPP)
@example(INVITE_SIPP.replace(b"Content-Length: 5", b"Content-Length: 5\r\nl: 5"))
@example(INVITE_SIPP.replace(b"Content-Length: 5", b"Content-Length: 6"))
@example(INVITE_SIPP.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"))
@example(INVITE_SIPP.replace(b"SIP/2.0\r\n", b"SIP/2.1\r\n", 1))
@example(INVITE_SIPP.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\n 1"))
@example(INVITE_SIPP.replace(b"Max-Forwards", b"Max\x00Forwards"))
@example(INVITE_SIPP.replace(b"Call-ID: 1-1", b"Call-ID: 1\r1"))
def test_parse_as_python(data: bytes) -> None:
    """``parse`` with C gives what ``parse_py`` gives on INVITEs of every shape, valid or hostile:
    the same Request (lines, index, cache, body, exact Content-Length), or the same SipParseError
    (reason, status, partial request)."""
    same_parse(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_parse_as_python_on_any_bytes(data: bytes) -> None:
    same_parse(data)
    same_parse(b"INVITE sip:a@b SIP/2.0\r\n" + data)


def test_parse_as_python_on_rfc4475() -> None:
    paths = sorted(RFC4475.glob("*.dat"))
    assert len(paths) >= 40
    for _ in range(2):  # the second time every name is learnt
        for path in paths:
            data = path.read_bytes()
            same_parse(data)
            same_parse(data.replace(b"\n\r\n", b"\n\r\n", 1))


def test_the_usual_invite_takes_the_c_path() -> None:
    learn(INVITE_SIPP)
    got = _fast.parsed(INVITE_SIPP, 65535, parser._NAMES, parser._METHODS)
    assert got is not None
    assert got[3:5] == ("INVITE", "sip:+13035550100@127.0.0.1:5070;user=phone")
    assert got[5]["via"] == [0] and got[6:] == ("1 INVITE", (1, "INVITE"))
    req = parser.parse(INVITE_SIPP)
    assert req._cl_ok and req.serialize() is INVITE_SIPP
    for odd in (INVITE_SIPP.replace(b"\r\n", b"\n"), INVITE_SIPP.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\n 1"),
                INVITE_SIPP.replace(b"Content-Length: 5", b"Content-Length: 5\r\nl: 5"),
                INVITE_SIPP.replace(b"INVITE sip", b"INVITE  sip"), b"SIP/2.0 200 OK\r\n" + INVITE_SIPP.split(b"\r\n", 1)[1]):
        assert _fast.parsed(odd, 65535, parser._NAMES, parser._METHODS) is None
    assert _fast.parsed(INVITE_SIPP, len(INVITE_SIPP) - 1, parser._NAMES, parser._METHODS) is None
    assert _fast.parsed(bytearray(INVITE_SIPP), 65535, parser._NAMES, parser._METHODS) is None
    with pytest.raises(TypeError):
        _fast.parsed(INVITE_SIPP, 65535, parser._NAMES, [])


# -- header values, one per line (Message._values) -----------------------------------------------
VALUE_LINE = st.builds(
    lambda name, sep, parts: name + sep + b"".join(parts),
    st.sampled_from([b"To", b"Via", b"", b"\xff"]),
    st.sampled_from([b":", b" : ", b"::", b""]),
    st.lists(st.sampled_from([b" ", b"\t", b"\r\n ", b"\r\n\t", b"\n ", b"\r\n", b"\n", b"\r", b"\x0b", b"\x1c",
                              b"\x00", b"\xc2\xa0", b"\xc2\x85", b"\xe2\x80\xa8", b"\xff", b"x", b"<sip:a@h>;tag=1",
                              b"\xc3\xa9", b","]), max_size=12))


def values_outcome(lines: list[tuple[str, bytes]], positions: list[int]) -> tuple[str, object]:
    try:
        return "ok", sipmessage.values_py(lines, positions)
    except (ValueError, IndexError) as exc:
        return "error", type(exc)


@settings(max_examples=3000, deadline=None)
@given(st.lists(VALUE_LINE | st.binary(max_size=40), min_size=1, max_size=6), st.lists(st.integers(-1, 6), max_size=6))
@example([b"To: a\r\n b"], [0])
@example([b"To: a\r\n "], [0])
@example([b"To: a\n\xc2\xa0"], [0])
@example([b"To: \r\n a \r\n\t"], [0, 0])
def test_values_as_python(raw: list[bytes], positions: list[int]) -> None:
    """The values of a header's lines read in C are the Python's (decoded, unfolded, stripped) for
    any bytes, folds, bare CR and LF, Unicode white space; None where a fold is left or the Python
    raises."""
    lines = [("to", line) for line in raw]
    want = values_outcome(lines, positions)
    got = _fast.values(lines, positions)
    if got is not None:
        assert want == ("ok", got)
    else:
        assert want[0] == "error" or any(0 <= p < len(lines) and b"\n" in lines[p][1] for p in positions) \
            or any(p < 0 for p in positions)


def test_values_refuses_what_it_cannot_read() -> None:
    assert _fast.values([("to", b"To: a")], [0]) == ["a"]
    assert _fast.values([("to", b"To: a")], [1]) is None
    assert _fast.values([("to", "To: a")], [0]) is None
    assert _fast.values([["to", b"To: a"]], [0]) is None
    assert _fast.values([("to", b"To: a")], [True]) is None
    with pytest.raises(TypeError):
        _fast.values((("to", b"To: a"),), [0])


def test_header_values_as_python_on_rfc4475() -> None:
    """Every header of every torture message read through Message (C values) and values_py."""
    for path in sorted(RFC4475.glob("*.dat")):
        try:
            msg = parser.parse_py(path.read_bytes())
        except SipParseError:
            continue
        for k, positions in msg._idx().items():
            assert msg._values(k) == sipmessage.values_py(msg._lines, positions), (path.name, k)
