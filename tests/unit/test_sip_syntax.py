"""Syntax seen on real trunks: compact forms, odd spacing, folding, lists, quoting, URIs,
IPv6, several Identity headers, LF-only line endings; and the mutations the proxy makes."""

from __future__ import annotations

import pytest

from sipguard.sip import (
    NameAddr,
    Request,
    SipParseError,
    Via,
    build_response,
    canonical_name,
    parse,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_list,
    validate,
)

BASE = [
    "INVITE sip:+13035550100@10.0.0.5;user=phone SIP/2.0",
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776;rport",
    "Max-Forwards: 70",
    'From: "Alice" <sip:+12025550123@198.51.100.7;user=phone>;tag=19',
    "To: <sip:+13035550100@10.0.0.5;user=phone>",
    "Call-ID: abc@host",
    "CSeq: 1 INVITE",
]


def msg(*extra: str, base: list[str] = BASE, body: str = "", eol: str = "\r\n") -> bytes:
    lines = [*base, *extra, f"Content-Length: {len(body.encode())}"]
    return (eol.join(lines) + eol + eol + body).encode()


def req(*extra: str, base: list[str] = BASE) -> Request:
    m = parse(msg(*extra, base=base))
    assert isinstance(m, Request)
    return m


COMPACT = [
    ("v", "SIP/2.0/TCP a.example.com;branch=z9hG4bKx", "Via"),
    ("f", "<sip:a@b>;tag=1", "From"),
    ("t", "<sip:c@d>", "To"),
    ("i", "call-1@x", "Call-ID"),
    ("m", "<sip:a@1.2.3.4>", "Contact"),
    ("l", "0", "Content-Length"),
    ("k", "timer", "Supported"),
    ("s", "hello", "Subject"),
    ("c", "application/sdp", "Content-Type"),
    ("e", "gzip", "Content-Encoding"),
    ("y", "abc.def.ghi;info=<https://x/c.pem>", "Identity"),
]


@pytest.mark.parametrize(("short", "value", "long"), COMPACT)
def test_compact_forms(short: str, value: str, long: str) -> None:
    raw = f"INVITE sip:x@y SIP/2.0\r\n{short}: {value}\r\n\r\n".encode()
    with pytest.raises(SipParseError) as info:   # the message lacks required headers
        parse(raw)
    assert info.value.partial is None
    assert canonical_name(short) == long
    assert canonical_name(short.upper()) == long
    full = msg(f"{short}: {value}") if short != "l" else ("\r\n".join(BASE) + "\r\nl: 0\r\n\r\n").encode()
    m = parse(full)
    assert m.has(long) and m.has(short) and m.has(long.upper())
    if long != "Content-Length":
        assert value in m.headers(long) or m.header(long) == value


def test_compact_core_headers_are_read() -> None:
    base = ["INVITE sip:b@example.com SIP/2.0", "v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1",
            "f: <sip:a@example.com>;tag=1", "t: <sip:b@example.com>", "i: cid-1", "CSeq: 5 INVITE",
            "m: <sip:a@10.0.0.1>"]
    raw = ("\r\n".join(base) + "\r\nl: 0\r\n\r\n").encode()
    m = parse(raw)
    validate(m)
    assert m.call_id == "cid-1" and m.from_.tag == "1" and m.top_via.host == "h.example.com"
    assert m.contact[0].uri == "sip:a@10.0.0.1"
    assert m.serialize() == raw


@pytest.mark.parametrize("name", ["via", "VIA", "vIa", "Via  ", "Via\t"])
def test_case_and_space_before_colon(name: str) -> None:
    base = [BASE[0], f"{name}: SIP/2.0/UDP h.example.com;branch=z9hG4bK9", *BASE[2:]]
    m = parse(msg(base=base))
    assert m.top_via.branch == "z9hG4bK9"
    assert m.header_count("VIA") == 1


def test_no_space_after_colon_and_leading_zeros() -> None:
    m = req("X-A:1")
    assert m.header("x-a") == "1"
    base = [*BASE[:2], "Max-Forwards:069", *BASE[3:]]
    assert parse(msg(base=base)).max_forwards == 69


def test_folded_lines() -> None:
    base = [BASE[0], "Via: SIP/2.0/UDP 198.51.100.7:5060\r\n ;branch=z9hG4bKf", BASE[2],
            'From: "Alice"\r\n\t<sip:a@example.com>\r\n ;tag=77', *BASE[4:]]
    m = parse(msg("Subject: lunch\r\n   at noon", base=base))
    validate(m)
    assert m.top_via.branch == "z9hG4bKf"
    assert m.from_.display == "Alice" and m.from_.tag == "77"
    assert m.header("Subject") == "lunch at noon"
    assert m.serialize() == msg("Subject: lunch\r\n   at noon", base=base)


def test_comma_separated_lists() -> None:
    m = req("Via: SIP/2.0/TCP p1.example.com;branch=z9hG4bKa, SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKb",
            "Route: <sip:r1.example.com;lr>, <sip:r2.example.com;lr>",
            "Record-Route: <sip:rr1.example.com;lr>,<sip:rr2.example.com;lr>",
            'Contact: "Doe, John" <sip:j@example.com>;q=0.5, <sip:k@example.com;a=b,c>',
            'P-Asserted-Identity: "Smith, J \\"JJ\\"" <sip:+12025550123@x;user=phone>, <tel:+12025550123>')
    assert [v.host for v in m.vias] == ["198.51.100.7", "p1.example.com", "[2001:db8::1]"]
    assert [v.port for v in m.vias] == [5060, None, 5070]
    assert [r.uri for r in m.route] == ["sip:r1.example.com;lr", "sip:r2.example.com;lr"]
    assert [r.uri for r in m.record_route] == ["sip:rr1.example.com;lr", "sip:rr2.example.com;lr"]
    assert [(c.display, c.uri) for c in m.contact] == [("Doe, John", "sip:j@example.com"),
                                                       (None, "sip:k@example.com;a=b,c")]
    assert m.contact[0].params == {"q": "0.5"}
    assert [p.display for p in m.pai] == ['Smith, J "JJ"', None]
    assert m.pai[1].uri == "tel:+12025550123"


@pytest.mark.parametrize(("value", "items"), [
    ("a, b,c", ["a", "b", "c"]),
    ('"x, y" <sip:a@b>, <sip:c@d>', ['"x, y" <sip:a@b>', "<sip:c@d>"]),
    ('"esc \\" ,q" <sip:a@b>, c', ['"esc \\" ,q" <sip:a@b>', "c"]),
    ("<sip:a@b;x=1,2>, d", ["<sip:a@b;x=1,2>", "d"]),
    (" , ,a,, ", ["a"]),
    ("", []),
])
def test_split_list(value: str, items: list[str]) -> None:
    assert split_list(value) == items


@pytest.mark.parametrize(("text", "scheme", "user", "host", "port", "params"), [
    ("sip:+12025550123@gw.example.com;user=phone", "sip", "+12025550123", "gw.example.com", None,
     {"user": "phone"}),
    ("sips:alice:pw@Example.COM:5061;transport=tls", "sips", "alice", "example.com", 5061, {"transport": "tls"}),
    ("SIP:bob@192.0.2.4", "sip", "bob", "192.0.2.4", None, {}),
    ("sip:[2001:db8::10]:5070;lr", "sip", None, "[2001:db8::10]", 5070, {"lr": None}),
    ("sip:u@[2001:DB8::1]", "sip", "u", "[2001:db8::1]", None, {}),
    ("tel:+1-202-555-0123;phone-context=example.com", "tel", "+1-202-555-0123", "", None,
     {"phone-context": "example.com"}),
    ("sip:+1202;npdi;rn=+1202555@h.example.com;user=phone", "sip", "+1202;npdi;rn=+1202555", "h.example.com",
     None, {"user": "phone"}),
])
def test_uris(text: str, scheme: str, user: str | None, host: str, port: int | None,
              params: dict[str, str | None]) -> None:
    uri = parse_uri(text)
    assert (uri.scheme, uri.user, uri.host, uri.port, uri.params) == (scheme, user, host, port, params)
    assert uri.raw == text


@pytest.mark.parametrize("text", ["sip:", "sip:user@", "sip:a@b:99999", "sip:a@[::1", "sip:a@b c", "nocolon",
                                  "tel:", "sip:a@-bad-", "sip:@host", "sip:a@[zz::1]"])
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


@pytest.mark.parametrize(("value", "display", "uri", "tag"), [
    ('"A \\"B\\" C" <sip:a@b>;tag=1', 'A "B" C', "sip:a@b", "1"),
    ('"" <sip:a@b>', "", "sip:a@b", None),
    ("Bob Smith <sip:b@c>;tag=x;foo", "Bob Smith", "sip:b@c", "x"),
    ("sip:a@b;tag=99", None, "sip:a@b", "99"),
    ("<tel:+12025550123>;tag=t", None, "tel:+12025550123", "t"),
    ('"Ünïcødé" <sip:u@h>', "Ünïcødé", "sip:u@h", None),
])
def test_name_addr(value: str, display: str | None, uri: str, tag: str | None) -> None:
    na = parse_name_addr(value)
    assert isinstance(na, NameAddr)
    assert (na.display, na.uri, na.tag) == (display, uri, tag)


@pytest.mark.parametrize("value", ['"open <sip:a@b>', "<sip:a@b", "<sip:a@b> junk", "", "a,b <sip:x@y>",
                                   "sip:a b@c", "<>"])
def test_bad_name_addr(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(value)


@pytest.mark.parametrize(("value", "transport", "host", "port", "addr"), [
    ("SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bK1", "UDP", "198.51.100.7", 5062, ("198.51.100.7", 5062)),
    ("SIP/2.0/udp h.example.com;branch=z9hG4bK1;rport=5099;received=192.0.2.9", "UDP", "h.example.com", None,
     ("192.0.2.9", 5099)),
    ("SIP/2.0/TLS [2001:db8::9:1]:5061;branch=z9hG4bK1;received=2001:db8::9:255;rport=6000", "TLS",
     "[2001:db8::9:1]", 5061, ("2001:db8::9:255", 6000)),
    ("SIP/2.0/TLS [2001:db8::9:1];branch=z9hG4bK1", "TLS", "[2001:db8::9:1]", None, ("2001:db8::9:1", 5061)),
    ("SIP / 2.0 / TCP h.example.com ; branch = z9hG4bK2 ; rport", "TCP", "h.example.com", None,
     ("h.example.com", 5060)),
])
def test_via(value: str, transport: str, host: str, port: int | None, addr: tuple[str, int]) -> None:
    via = parse_via(value)
    assert isinstance(via, Via)
    assert (via.transport, via.host, via.port) == (transport, host, port)
    assert via.sent_by_addr() == addr


def test_via_rport_forms() -> None:
    assert parse_via("SIP/2.0/UDP h;rport").rport == ""
    assert parse_via("SIP/2.0/UDP h;rport=7").rport == "7"
    assert parse_via("SIP/2.0/UDP h").rport is None
    with pytest.raises(SipParseError):
        parse_via("SIP/2.0/UDP h;rport=abc")


@pytest.mark.parametrize("value", ["garbage", "SIP/2.0/UDP", "SIP/2.0/UDP h:0", "SIP/2.0/UDP h:70000",
                                   "SIP/2.0/UDP [::1", "SIP/2.0/UDP h;;=x", "SIP/2.0 UDP h"])
def test_bad_via(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(value)


def test_several_identity_headers_in_order() -> None:
    m = req("Identity: first.jwt.sig;info=<https://a/c.pem>", "X-Other: 1", "y: second.jwt.sig;info=<https://b>",
            "IDENTITY: third.a.b")
    assert m.identity == ["first.jwt.sig;info=<https://a/c.pem>", "second.jwt.sig;info=<https://b>", "third.a.b"]
    assert m.header_count("identity") == 3
    # a comma inside one Identity value is not a list separator
    m2 = req("Identity: a.b.c;info=<https://x/a,b.pem>")
    assert m2.identity == ["a.b.c;info=<https://x/a,b.pem>"]


def test_diversion_and_history_info() -> None:
    m = req("Diversion: <sip:+12025550100@x>;reason=unconditional;counter=1, <tel:+12025550101>;reason=busy",
            "History-Info: <sip:a@x>;index=1, <sip:b@x?Reason=SIP%3Bcause%3D302>;index=1.1")
    assert m.headers("Diversion") == ["<sip:+12025550100@x>;reason=unconditional;counter=1",
                                      "<tel:+12025550101>;reason=busy"]
    assert len(m.headers("history-info")) == 2
    assert parse_name_addr(m.headers("Diversion")[1]).params == {"reason": "busy"}


def test_lf_only_line_endings() -> None:
    raw = msg("Identity: a.b.c", body="v=0\n", eol="\n")
    m = parse(raw)
    validate(m)
    assert m.call_id == "abc@host" and m.identity == ["a.b.c"] and m.body == b"v=0\n"
    assert m.serialize() == raw   # untouched: the very bytes
    m.set_header("Max-Forwards", "69")
    again = parse(m.serialize())
    assert again.max_forwards == 69 and again.body == b"v=0\n" and again.call_id == "abc@host"


def test_non_utf8_bytes_survive() -> None:
    raw = msg("X-Bin: caf\xe9".replace("\xe9", "é"), body="")
    raw = raw.replace("café".encode(), b"caf\xe9")
    m = parse(raw)
    assert m.header("X-Bin") == "caf\udce9"
    m.append_header("X-New", "1")
    assert b"X-Bin: caf\xe9\r\n" in m.serialize()


def test_binary_body_byte_exact() -> None:
    body = bytes(range(256))
    head = "\r\n".join([*BASE, "Content-Type: application/isup", f"Content-Length: {len(body)}"])
    raw = head.encode() + b"\r\n\r\n" + body
    m = parse(raw)
    assert m.body == body and m.serialize() == raw
    m.prepend_header("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp")
    assert parse(m.serialize()).body == body


# -- mutations the proxy makes -------------------------------------------------------------
def test_proxy_mutations_keep_other_lines() -> None:
    raw = msg("Route: <sip:r1;lr>, <sip:r2;lr>", "x-carrier-INFO: trunk=7, region=us", body="v=0\r\n")
    m = parse(raw)
    m.prepend_header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsg1")
    m.set_header("Max-Forwards", str((m.max_forwards or 70) - 1))
    assert m.pop_first_value("Route") == "<sip:r1;lr>"
    m.append_header("X-Verstat", "TN-Validation-Passed")
    out = m.serialize()
    lines = out.split(b"\r\n")
    assert lines[1] == b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsg1"
    assert b"Max-Forwards: 69" in lines and b"Route: <sip:r2;lr>" in lines
    assert b"x-carrier-INFO: trunk=7, region=us" in lines
    again = parse(out)
    assert [v.branch for v in again.vias] == ["z9hG4bKsg1", "z9hG4bK776"]
    assert again.header("x-verstat") == "TN-Validation-Passed"
    assert [r.uri for r in again.route] == ["sip:r2;lr"]
    assert again.body == b"v=0\r\n"


def test_accessors_follow_mutations() -> None:
    m = req("Route: <sip:only;lr>")
    assert m.max_forwards == 70 and len(m.vias) == 1 and len(m.route) == 1
    m.set_header("Max-Forwards", "5")
    m.prepend_header("v", "SIP/2.0/TCP n.example.com;branch=z9hG4bKn")
    assert m.pop_first_value("Route") == "<sip:only;lr>"
    assert m.max_forwards == 5 and m.top_via.host == "n.example.com" and m.route == []
    assert not m.has("Route") and m.header_count("Via") == 2
    assert m.remove_header("Via") == 2 and m.vias == [] and m.remove_header("Via") == 0
    assert m.pop_first_value("Route") is None
    m.set_body(b"hello", "text/plain")
    m.append_header("Via", "SIP/2.0/UDP back.example.com;branch=z9hG4bKb")
    out = parse(m.serialize())
    assert out.body == b"hello" and out.header("Content-Type") == "text/plain"
    assert out.header("Content-Length") == "5"


def test_set_uri() -> None:
    m = req()
    m.set_uri("sip:+13035550100@10.9.9.9:5080;user=phone")
    assert m.ruri.host == "10.9.9.9" and m.ruri.port == 5080
    out = parse(m.serialize())
    assert isinstance(out, Request) and out.uri == "sip:+13035550100@10.9.9.9:5080;user=phone"


def test_build_response_copies_keys_and_adds_tag() -> None:
    m = req("Via: SIP/2.0/TCP second.example.com;branch=z9hG4bK2", "Identity: a.b.c")
    out = parse(build_response(m, 603, "Decline", [("Reason", "Q.850;cause=21")], to_tag="abc",
                               body=b"x", content_type="text/plain"))
    assert out.status == 603 and out.to.tag == "abc" and out.call_id == "abc@host"  # type: ignore[union-attr]
    assert [v.branch for v in out.vias] == ["z9hG4bK776", "z9hG4bK2"]
    assert out.header("Reason") == "Q.850;cause=21" and out.body == b"x" and not out.has("Identity")
    tagged = req(base=[*BASE[:4], "To: <sip:b@c>;tag=old", *BASE[5:]])
    assert parse(build_response(tagged, 486, "Busy", to_tag="new")).to.tag == "old"
    assert parse(build_response(m, 100, "Trying", to_tag="t")).to.tag is None


@pytest.mark.parametrize(("data", "status"), [
    (b"", 400), (b"\r\n\r\n", 400), (b"garbage", 400), (b"INVITE sip:a@b SIP/2.0\r\nno colon\r\n\r\n", 400),
    (b" Via: x\r\n\r\n", 400), (b"x" * 70000, 513),
    (b"SIP/2.0 99 Too Low\r\n\r\n", 400), (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", 400),
])
def test_garbage_raises_typed_error(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert info.value.status_hint == status and info.value.partial is None


def test_size_limit_is_a_parameter() -> None:
    raw = msg()
    with pytest.raises(SipParseError) as info:
        parse(raw, max_size=len(raw) - 1)
    assert info.value.status_hint == 513
    assert parse(raw, max_size=len(raw)).serialize() == raw


@pytest.mark.parametrize(("line", "accessor"), [
    ("Max-Forwards: lots", "max_forwards"), ("Max-Forwards: 256", "max_forwards"),
    ("P-Asserted-Identity: <sip:a@b", "pai"), ("Contact: <sip:a b@c>", "contact"),
    ("Route: junk junk", "route"), ("Record-Route: <>", "record_route"),
])
def test_lazy_header_errors(line: str, accessor: str) -> None:
    base = [b for b in BASE if not (line.startswith("Max-Forwards") and b.startswith("Max-Forwards"))]
    m = parse(msg(line, base=base))
    with pytest.raises(SipParseError) as info:
        getattr(m, accessor)
    assert info.value.status_hint == 400
    with pytest.raises(SipParseError):
        validate(m)


def test_work_per_message_is_bounded() -> None:
    routes = "Route: " + ",".join(f"<sip:r{i}.example.com;lr>" for i in range(200))
    m = parse(msg(routes))
    with pytest.raises(SipParseError) as info:
        m.route  # noqa: B018
    assert "Route" in info.value.reason
    assert len(parse(msg("Route: " + ",".join(f"<sip:r{i};lr>" for i in range(128)))).route) == 128
    many = [f"X-H{i}: v" for i in range(300)]
    with pytest.raises(SipParseError) as info:
        parse(msg(*many))
    assert "header lines" in info.value.reason


def test_lf_only_headers_end_at_the_first_blank_line_even_with_crlfcrlf_in_the_body() -> None:
    # found by the round-trip property test: the body's CRLFCRLF was taken for the header end
    raw = (b"INVITE sip:+13035550100@192.0.2.1;user=phone SIP/2.0\nVia: SIP/2.0/UDP a;branch=z9hG4bK0\n"
           b"From: <sip:192.0.2.1>;tag=0\nTo: <sip:192.0.2.1>\nCall-ID: 0@192.0.2.1\nCSeq: 0\n INVITE\n"
           b"Content-Length: 4\n\n\r\n\r\n")
    msg = parse(raw)
    assert msg.cseq == (0, "INVITE") and msg.body == b"\r\n\r\n" and msg.serialize() == raw


def test_name_addrs_are_read_anew_every_time() -> None:
    """No cache (a From/To value is new with every call): the same text gives an equal object,
    a long one too, and a bad value raises every time."""
    from sipguard.sip import address

    value = '"Alice" <sip:+12125551212@192.0.2.1;user=phone>;tag=77x'
    first = parse_name_addr(value)
    assert parse_name_addr(value) == first and first.tag == "77x" and first.display == "Alice"
    long = "<sip:" + "a" * 100000 + "@192.0.2.1>"
    assert parse_name_addr(long) == parse_name_addr(long) and parse_name_addr(long).uri == long[1:-1]
    for _ in range(2):
        with pytest.raises(SipParseError):
            parse_name_addr("<sip:a@b c>")
    assert not hasattr(address, "clear_cache")


@pytest.mark.parametrize(("value", "tag", "uri"), [
    ("<sip:+12127363100@127.0.0.1:5061;user=phone>;tag=77SIPpTag001", "77SIPpTag001",
     "sip:+12127363100@127.0.0.1:5061;user=phone"),
    ("<sip:b@h>", "", "sip:b@h"),
    ("<sip:b@h>;tag", "", "sip:b@h"),
    ('"A" <sip:b@h> ; TAG = x ;tag=y', "y", "sip:b@h"),
    ("<tel:+1303>;tag=t", "t", "tel:+1303"),                 # C declines: the Python answers
    ("sip:a@b;tag=99", "99", "sip:a@b"),
    ('"\u00dc" <sip:u@h>;tag=\u00e9', "\u00e9", "sip:u@h"),
])
def test_tag_of_and_uri_of(value: str, tag: str, uri: str) -> None:
    from sipguard.sip.address import tag_of, uri_of

    assert tag_of(value) == tag == (parse_name_addr(value).tag or "")
    assert uri_of(value) == uri == parse_name_addr(value).uri


@pytest.mark.parametrize("value", ["<sip:a@b>;;=x", "<sip:a@b c>", "<sip:a@b", "", "<sip:a@b> junk", '"open <sip:a@b>'])
def test_tag_of_and_uri_of_refuse_what_parse_name_addr_refuses(value: str) -> None:
    from sipguard.sip.address import tag_of, uri_of

    for read in (tag_of, uri_of, parse_name_addr):
        with pytest.raises(SipParseError):
            read(value)


@pytest.mark.parametrize("header, value", [
    ("CSeq", "\u2080 INVITE"), ("CSeq", "1\u00b2 INVITE"), ("Max-Forwards", "\u00b2"),
    ("Via", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776;rport=\u00b9"),
    ("To", "<sip:+13035550100@10.0.0.5:\u00b2>"),
])
def test_digits_int_refuses_are_a_parse_error(header: str, value: str) -> None:
    """Superscript and subscript digits pass str.isdigit but not int(): a peer writing one in
    a CSeq, Max-Forwards, rport or port gets a 400 (SipParseError), not a ValueError out of
    the receive path (whole message and the relay's fast read alike)."""
    lines = [line for line in BASE if not line.startswith(header + ":")] if header != "To" else list(BASE)
    if header == "To":
        lines = [f"To: {value}" if line.startswith("To:") else line for line in lines]
    else:
        lines.insert(1, f"{header}: {value}")
    data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
    with pytest.raises(SipParseError):
        validate(parse(data))
    with pytest.raises(SipParseError):
        parse_uri("sip:+13035550100@10.0.0.5:\u00b2")
