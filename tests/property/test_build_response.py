"""Differential: ``build_response`` (session 14: status lines encoded once, the copied headers in
a bit set, one join) against the definition it replaces, kept here verbatim as the reference.
The same bytes for generated requests (repeated and duplicate header lines, To with and without
a tag), statuses, reasons, headers, tags and bodies: unicode, control characters, lone
surrogates (undecodable bytes as the parser keeps them), empty and oversized values."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipguard.sip import Request, SipParseError, build_response, parse
from sipguard.sip import parser as sip_parser
from sipguard.sip.message import ENC, ERRORS

# -- the reference: main at 2013e2e --------------------------------------------------------------
_COPIED = frozenset({"from", "to", "call-id", "cseq"})


def old_build_response(req: Request, status: int, reason: str, headers: Sequence[tuple[str, str]] = (),
                       to_tag: str | None = None, body: bytes = b"", content_type: str | None = None) -> bytes:
    out = [f"SIP/2.0 {status} {reason}".encode(ENC, ERRORS)]
    seen: set[str] = set()
    for k, line in req._lines:
        if k == "via":
            out.append(line)
        elif k in _COPIED and k not in seen:
            seen.add(k)
            if k == "to" and to_tag and status > 100 and not sip_parser._has_tag(req):
                line += b";tag=" + to_tag.encode(ENC, ERRORS)
            out.append(line)
    for name, value in headers:
        out.append(f"{name}: {value}".encode(ENC, ERRORS))
    if content_type is not None:
        out.append(f"Content-Type: {content_type}".encode())
    out.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(out) + b"\r\n\r\n" + body
# ---------------------------------------------------------------------------------------------


def request(to: str, extra: Sequence[str]) -> Request:
    lines = ["INVITE sip:+13036231000@192.0.2.9 SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1",
             "From: <sip:+12127363100@192.0.2.1>;tag=a", f"To: {to}", "Call-ID: c1@192.0.2.1",
             "CSeq: 1 INVITE", *extra, "Content-Length: 0"]
    try:
        msg = parse(("\r\n".join(lines) + "\r\n\r\n").encode(ENC, ERRORS))
    except SipParseError as exc:   # a duplicate header: the request its 400 is built from
        msg = exc.partial
    assert isinstance(msg, Request)
    return msg


HOSTILE = st.sampled_from(["", "a" * 70000, "caf\u00e9 \u2603", "\x00\x01\x7f\t", "\udcff\udc80", "\r\n",
                           '"q" \\ ;tag=x'])
TEXT = st.text(max_size=40) | HOSTILE
EXTRA = st.lists(st.sampled_from(["Via: SIP/2.0/TCP second.example;branch=z9hG4bK2", "To: <sip:dup@x>",
                                  "From: <sip:dup@x>;tag=b", "CSeq: 2 INVITE", "Call-ID: dup", "Identity: a.b.c",
                                  "Max-Forwards: 70", "v: SIP/2.0/UDP compact.example;branch=z9hG4bK3"]),
                 max_size=6)


@settings(max_examples=300)
@given(to=st.sampled_from(["<sip:b@c>", "<sip:b@c>;tag=old", "sip:b@c", "<sip:b@c>;TAG = x"]), extra=EXTRA,
       status=st.sampled_from([100, 180, 200, 302, 403, 487, 503, 699]), reason=TEXT,
       headers=st.lists(st.tuples(st.sampled_from(["Contact", "P-Asserted-Identity", "X-Sipguard-Rule"]), TEXT),
                        max_size=4),
       to_tag=st.none() | st.sampled_from(["", "sg1f2e"]) | TEXT,
       body=st.sampled_from([b"", b"x", b"v=0\r\n" * 50]),
       content_type=st.none() | st.just("application/sdp"))
@example(to="<sip:b@c>", extra=[], status=302, reason="Moved Temporarily", headers=[("Contact", "a" * 70000)],
         to_tag="sg1", body=b"", content_type=None)
def test_build_response_is_the_definition_it_replaces(to: str, extra: list[str], status: int, reason: str,
                                                       headers: list[tuple[str, str]], to_tag: str | None,
                                                       body: bytes, content_type: str | None) -> None:
    req = request(to, extra)
    for _ in range(2):   # the second time from the status line kept
        assert build_response(req, status, reason, headers, to_tag, body, content_type) == \
            old_build_response(req, status, reason, headers, to_tag, body, content_type)


def test_status_lines_kept_are_bounded() -> None:
    req = request("<sip:b@c>", [])
    for i in range(600):
        assert build_response(req, 403, f"policy phrase {i}") == old_build_response(req, 403, f"policy phrase {i}")
    assert len(sip_parser._STATUS_LINES) <= 256
