"""Hypothesis: generated SIP requests survive parse -> serialize byte for byte, and the
proxy's mutations change exactly the headers they name."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.sip import Request, parse, split_list, validate
from sipguard.sip.headers import key

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1,
                max_size=12)
HOST = st.from_regex(r"\A[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,2}\Z") | st.sampled_from(
    ["192.0.2.1", "[2001:db8::1]", "10.0.0.5"])
PORT = st.none() | st.integers(1, 65535)
VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters="\x7f"),
                max_size=40).map(str.strip)
SEP = st.sampled_from([": ", ":", " : ", ":\t", "  :   "])


def spell(name: str, draw: st.DrawFn) -> str:
    """A header name the way some trunk writes it: case mix or compact form."""
    variants = {"Via": ["Via", "v", "VIA", "via"], "From": ["From", "f", "FROM"], "To": ["To", "t", "tO"],
                "Call-ID": ["Call-ID", "i", "call-id"], "CSeq": ["CSeq", "cseq", "CSEQ"],
                "Max-Forwards": ["Max-Forwards", "max-forwards"], "Content-Length": ["Content-Length", "l"]}
    return draw(st.sampled_from(variants.get(name, [name])))


@st.composite
def via(draw: st.DrawFn) -> str:
    port = draw(PORT)
    hp = draw(HOST) + (f":{port}" if port else "")
    params = f";branch=z9hG4bK{draw(TOKEN)}"
    if draw(st.booleans()):
        params += ";rport"
    return f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {hp}{params}"


@st.composite
def name_addr(draw: st.DrawFn, tag: bool) -> str:
    display = draw(st.sampled_from(["", '"Alice" ', '"Doe, J \\"x\\"" ', "Bob ", '"" ']))
    user = draw(st.sampled_from(["", "alice@", "+12025550123@", "a%20b@"]))
    uri = f"{draw(st.sampled_from(['sip', 'sips']))}:{user}{draw(HOST)}"
    if draw(st.booleans()):
        uri += ";user=phone"
    out = f"{display}<{uri}>"
    return out + (f";tag={draw(TOKEN)}" if tag else "")


@st.composite
def request(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    eol = draw(st.sampled_from(["\r\n", "\r\n", "\n"]))
    method = draw(st.sampled_from(["INVITE", "OPTIONS", "BYE", "MESSAGE", "NEWMETHOD"]))
    vias = draw(st.lists(via(), min_size=1, max_size=3))
    mf = draw(st.integers(0, 255))
    cseq = draw(st.integers(0, 2**31 - 1))
    call_id = draw(TOKEN) + "@" + draw(HOST)
    extras = draw(st.lists(st.tuples(st.sampled_from(["X-A", "x-carrier-info", "Subject", "Diversion",
                                                          "Identity", "P-Asserted-Identity", "Route", "Supported",
                                                          "User-Agent"]), VALUE), max_size=6))
    body = draw(st.binary(max_size=64))
    lines = [f"{method} sip:+13035550100@{draw(HOST)};user=phone SIP/2.0"]
    fields: list[tuple[str, str]] = []
    if draw(st.booleans()) and len(vias) > 1:
        fields.append(("Via", ", ".join(vias)))
    else:
        fields += [("Via", v) for v in vias]
    fields += [("Max-Forwards", str(mf)), ("From", draw(name_addr(True))), ("To", draw(name_addr(False))),
               ("Call-ID", call_id), ("CSeq", f"{cseq} {method}")]
    for name, value in extras:
        if name in ("P-Asserted-Identity", "Route"):
            value = draw(name_addr(False))
        fields.append((name, value))
    fields = draw(st.permutations(fields))
    for name, value in fields:
        line = f"{spell(name, draw)}{draw(SEP)}{value}"
        if draw(st.integers(0, 9)) == 0 and " " in value.strip():   # fold at a space
            head, _, tail = value.partition(" ")
            line = f"{spell(name, draw)}{draw(SEP)}{head}{eol}{draw(st.sampled_from([' ', '  ', chr(9)]))}{tail}"
        lines.append(line)
    lines.append(f"{spell('Content-Length', draw)}: {len(body)}")
    raw = (eol.join(lines) + eol + eol).encode() + body
    facts = {"vias": len(vias), "mf": mf, "cseq": (cseq, method), "call_id": call_id, "body": body,
             "identity": [v for n, v in fields if n == "Identity"], "routes": sum(n == "Route" for n, _ in extras)}
    return raw, facts


@settings(max_examples=200, deadline=None)
@given(request())
def test_untouched_round_trip_is_byte_exact(case: tuple[bytes, dict[str, object]]) -> None:
    raw, facts = case
    msg = parse(raw)
    assert isinstance(msg, Request)
    validate(msg)
    assert msg.serialize() == raw
    assert len(msg.vias) == facts["vias"] and msg.max_forwards == facts["mf"]
    assert msg.cseq == facts["cseq"] and msg.call_id == facts["call_id"] and msg.body == facts["body"]
    assert msg.identity == facts["identity"]
    assert msg.serialize() == raw   # reading never changes the output
    again = parse(msg.serialize())
    assert again.serialize() == raw


def _lines(data: bytes) -> list[bytes]:
    # the header block ends at the first blank line of either kind (a CRLFCRLF may sit in the body)
    ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
    head = data[:min(ends)]
    return head.split(b"\r\n") if b"\r\n" in head else head.split(b"\n")


def _unfolded(lines: list[bytes]) -> list[bytes]:
    """Header lines with continuation lines joined back to their header (raw bytes)."""
    out: list[bytes] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += b"\n" + line
        else:
            out.append(line)
    return out


def _key(line: bytes) -> str:
    return key(line.split(b":", 1)[0].decode())


@settings(max_examples=200, deadline=None)
@given(request(), st.binary(max_size=40), st.integers(0, 255))
def test_mutations_change_only_what_they_name(case: tuple[bytes, dict[str, object]], new_body: bytes,
                                             new_mf: int) -> None:
    raw, facts = case
    msg = parse(raw)
    assert isinstance(msg, Request)
    first_via = msg.vias[0].raw
    old_routes = msg.headers("Route")
    msg.prepend_header("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsg;rport")
    msg.set_header("Max-Forwards", str(new_mf))
    assert msg.pop_first_value("Via") == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsg;rport"
    msg.prepend_header("Via", "SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKsg2")
    popped = msg.pop_first_value("Route")
    removed = msg.remove_header("X-A")
    msg.append_header("X-Verstat", "TN-Validation-Passed")
    msg.set_body(new_body)
    out = msg.serialize()

    again = parse(out)
    validate(again)
    assert [v.raw for v in again.vias][:2] == ["SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKsg2", first_via]
    assert len(again.vias) == int(facts["vias"]) + 1  # type: ignore[call-overload]
    assert again.max_forwards == new_mf and again.body == new_body
    assert again.header("X-Verstat") == "TN-Validation-Passed" and not again.has("X-A")
    assert again.call_id == facts["call_id"] and again.cseq == facts["cseq"]
    if old_routes:
        assert popped == old_routes[0] and again.headers("Route") == old_routes[1:]
    else:
        assert popped is None
    assert removed >= 0

    # every header line nobody touched is still there, byte for byte, in the same order
    touched = {"via", "max-forwards", "route", "x-a", "x-verstat", "content-length"}
    before = [ln for ln in _unfolded(_lines(raw)) if _key(ln) not in touched]
    after = [ln for ln in _unfolded(_lines(out)) if _key(ln) not in touched]
    assert [ln.replace(b"\r\n", b"\n") for ln in after] == [ln.replace(b"\r\n", b"\n") for ln in before]


@given(st.lists(st.sampled_from(['"a,b"', "<sip:x@y;p=1,2>", "tok", '"q\\"," <sip:z@w>', "c d"]), max_size=5))
def test_split_list_inverts_join(items: list[str]) -> None:
    assert split_list(", ".join(items)) == items


@settings(max_examples=1500)
@given(st.text(st.sampled_from(' ,;="<>\\\tab\r\n\u00e9'), max_size=30))
def test_split_list_matches_the_quoting_scan(value: str) -> None:
    """The shortcut for values without quotes or <...> splits as the general scan does."""
    from sipguard.sip.address import _LIST_ITEM

    expected = [s.strip() for s in _LIST_ITEM.findall(value) if s.strip()] if "," in value else (
        [value.strip()] if value.strip() else [])
    assert split_list(value) == expected
