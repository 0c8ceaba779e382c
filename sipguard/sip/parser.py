"""Bytes to SIP messages, the checks every message gets, and error responses.

``parse`` only splits the start line and the header lines, checks the framing
(Content-Length against the body) and that a request has the headers every response
needs (Via, From, To, Call-ID, CSeq); header values are validated when first read
(``validate`` reads them all). Every malformed input raises SipParseError, whose
``partial`` is the request when it can still be answered (``build_response``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sipguard.sip import headers as hdr
from sipguard.sip.errors import SipParseError
from sipguard.sip.message import COMMA, ENC, ERRORS, MAX_SIZE, METHOD, RANGLE, Message, Request, Response

try:  # the byte-level pieces in C (sipguard/sip/_fast.c) when built; the Python here defines them
    from sipguard.sip import _fast
except ImportError:  # pragma: no cover - a tree without the extension runs the Python
    _fast = None  # type: ignore[assignment]

# Bounds on work per datagram (a 64 KB message of tiny headers or list items would
# otherwise cost tens of ms of CPU): far above what real trunks send.
MAX_LINES = 256

_REQUIRED_ORDER = ("via", "from", "to", "call-id", "cseq")
_REQUIRED = frozenset(_REQUIRED_ORDER)
_METHODS = {m.encode(): m for m in ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE",
                                     "INFO", "MESSAGE", "SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH")}


def parse(data: bytes, max_size: int = MAX_SIZE) -> Request | Response:
    """Parse one complete message (a UDP datagram, or one framed TCP message): ``parse_py``,
    a request of the usual shape (an initial INVITE as trunks send it) in C when the extension
    is built (``_fast.parsed``: the same Request, index and CSeq included; tests/property/
    test_sip_c.py), in one pass over its bytes."""
    if _C_PARSED is not None:
        got = _C_PARSED(data, max_size, _NAMES, _METHODS)
        if got is not None:
            req = Request(data, got[0], got[1], got[2], True, got[3], got[4], "SIP/2.0")
            # what parse_py's _request leaves: the index it built, the CSeq it read
            req._index = got[5]
            req._cache["cseq"] = {"v": [got[6]], "t": got[7]}
            return req
    return parse_py(data, max_size)


def parse_py(data: bytes, max_size: int = MAX_SIZE) -> Request | Response:
    """``parse``'s definition."""
    if len(data) > max_size:
        raise SipParseError(f"message of {len(data)} bytes exceeds the {max_size}-byte limit", 513)
    end = data.find(b"\r\n\r\n")
    # bare-LF senders (RFC 3261 7 says CRLF, but LF is seen in the field): the headers end at
    # the first blank line of either kind, not at a CRLFCRLF that may sit inside the body
    lf_end = data.find(b"\n\n", 0, end if end >= 0 else len(data))
    if end >= 0 and lf_end < 0:
        head, body = data[:end], data[end + 4:]
        split = head.split(b"\r\n")
    else:
        end = lf_end
        if end >= 0:
            head, body = data[:end], data[end + 2:]
        elif data.endswith(b"\n"):  # a datagram that ends after its last header: no body
            head, body = data.rstrip(b"\r\n"), b""
        else:
            raise SipParseError("no empty line after the headers")
        split = [line.rstrip(b"\r") for line in head.split(b"\n")]
    while split and not split[0]:
        split.pop(0)  # RFC 3261 7.5: CRLFs before the start line are ignored
    if not split:
        raise SipParseError("empty message")
    if len(split) > MAX_LINES:
        raise SipParseError(f"more than {MAX_LINES} header lines")
    start = split[0]
    keys = known_keys(head, len(split) - 1)
    lines = list(zip(keys, split[1:], strict=True)) if keys is not None else _header_lines(split)
    if start.startswith(b"SIP/"):
        return _response(data, start, lines, body)
    return _request(data, start, lines, body)


# A header name is what precedes the first colon of a line; the start line has no LF before it.
_HEADER_NAME = re.compile(rb"\n([^:\r\n]*):")


def known_keys(head: bytes, count: int) -> list[str] | None:
    """``known_keys_re``, in C when the extension is built (the same result: tests/property/
    test_sip_c.py)."""
    if _C_KNOWN_KEYS is not None:
        return _C_KNOWN_KEYS(head, count, _NAMES)
    return known_keys_re(head, count)


def known_keys_re(head: bytes, count: int) -> list[str] | None:
    """The lookup keys of the ``count`` header lines of ``head`` in the common case: each LF
    ends a line (none before the start line) and every name was validated and learnt before.
    One C-level scan finds every name, one per line, in order. A folded line either has no
    colon (count mismatch) or yields a name starting with white space, which is never learnt
    (only valid tokens are): both give None, and the careful loop (``_header_lines``) decides."""
    if head.count(b"\n") != count:
        return None
    found = _HEADER_NAME.findall(head)
    if len(found) != count:
        return None
    names = _NAMES
    try:
        return [names[name] for name in found]
    except KeyError:  # a name not seen before: the careful loop checks and learns it
        return None


def _header_lines(split: list[bytes]) -> list[tuple[str, bytes]]:
    """(key, raw line) for each header line after the start line, folded lines joined."""
    lines: list[tuple[str, bytes]] = []
    names = _NAMES
    for line in split[1:]:
        if line[:1] in _WSP:
            if not lines:
                raise SipParseError("continuation line before any header")
            k, prev = lines[-1]
            lines[-1] = (k, prev + b"\r\n" + line)
            continue
        colon = line.find(b":")
        if colon <= 0:
            raise SipParseError(f"header line without a name: {line[:40]!r}")
        name = line[:colon]
        lines.append((names.get(name) or _header_key(name), line))
    return lines


_NAMES: dict[bytes, str] = {}
_C_KNOWN_KEYS = _fast.known_keys if _fast is not None else None
_C_PARSED = _fast.parsed if _fast is not None else None
_WSP = (b" ", b"\t")


def _header_key(name: bytes) -> str:
    """Validate a header name (a token, RFC 3261 25.1) and memoise its lookup key."""
    stripped = name.rstrip(b" \t")
    if not METHOD.match(stripped):
        raise SipParseError(f"bad header name {stripped[:40]!r}")
    k = hdr.key(stripped.decode("ascii"))
    if len(_NAMES) < 4096:
        _NAMES[name] = k
    return k


def _content_length(lines: list[tuple[str, bytes]], index: dict[str, list[int]],
                    body: bytes) -> tuple[bytes, bool]:
    """Check Content-Length against the body: a longer body is cut (RFC 3261 18.3),
    a shorter one is an error. Returns the body and whether the input bytes are exact."""
    positions = index.get("content-length")
    if not positions:
        return body, False
    values = [lines[pos][1][lines[pos][1].index(b":") + 1:].strip() for pos in positions]
    if not values:
        return body, False
    if len(values) > 1 or COMMA in values[0]:
        raise SipParseError("more than one Content-Length")
    text = values[0]
    if not text.isdigit() or len(text) > 9:
        raise SipParseError(f"bad Content-Length {text[:20].decode('latin-1')!r}")
    length = int(text)
    if length > len(body):
        raise SipParseError(f"Content-Length {length} is larger than the body ({len(body)} bytes)")
    if length < len(body):
        return body[:length], False
    return body, True


def _request(data: bytes, start: bytes, lines: list[tuple[str, bytes]], body: bytes) -> Request:
    """Cheap checks only: request line, required headers present, CSeq method, framing.
    Header values are validated when first read (the pipeline reads what it needs)."""
    parts = start.split(b" ")
    bad_line = len(parts) != 3 or not all(parts)
    if bad_line:
        # RFC 4475 lwsstart/trws/lwsruri: extra or trailing white space in the request
        # line. Refused (400), but read liberally enough that the 400 can be sent.
        parts = start.split()
        if len(parts) < 3:
            raise SipParseError("bad request line (expected METHOD SP Request-URI SP SIP/2.0)")
        parts = [parts[0], b" ".join(parts[1:-1]), parts[-1]]
    method_b, uri_b, version_b = parts
    method = _METHODS.get(method_b)
    if method is None:
        if not METHOD.match(method_b):
            raise SipParseError(f"bad method {method_b[:20]!r}")
        method = method_b.decode("ascii")
    uri = uri_b.decode(ENC, ERRORS)
    version = "SIP/2.0" if version_b == b"SIP/2.0" else version_b.decode(ENC, ERRORS)
    req = Request(data, start, lines, body, False, method, uri, version)
    index = req._idx()
    # Answerable: a response copies the raw Via/From/To/Call-ID/CSeq lines and goes back
    # to the packet's source, so presence is enough. An ACK is never answered.
    if not index.keys() >= _REQUIRED:
        missing = [hdr.canonical_name(k) for k in _REQUIRED_ORDER if k not in index]
        raise SipParseError(f"missing {', '.join(missing)}")
    partial = req if method != "ACK" else None
    if bad_line:
        raise SipParseError("bad request line (expected METHOD SP Request-URI SP SIP/2.0, single spaces)",
                            400, partial)
    try:
        if version != "SIP/2.0" and version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version!r}", 505)
        cseq_method = req.cseq[1]
        if cseq_method != method:
            raise SipParseError(f"CSeq method {cseq_method!r} does not match {method!r}")
        if uri[:1] == "<" or ":" not in uri:
            raise SipParseError(f"bad Request-URI {uri[:60]!r}")
        cut_body, exact = _content_length(lines, index, body)
    except SipParseError as exc:
        raise SipParseError(exc.reason, exc.status_hint, partial) from None
    req.body = cut_body
    req._cl_ok = exact
    return req


def validate(msg: Message) -> None:
    """Read every header the proxy relies on, so a malformed one raises SipParseError now.
    Used by tests and by callers that want parse-time strictness."""
    msg.vias  # noqa: B018 - every Via, not only the top one (RFC 4475 badinv01)
    msg.top_via  # noqa: B018
    for k in ("from", "to", "call-id", "max-forwards"):
        if msg.has(k):
            msg._single(k)
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    msg.call_id  # noqa: B018
    msg.cseq  # noqa: B018
    msg.max_forwards  # noqa: B018
    msg.pai  # noqa: B018
    msg.contact  # noqa: B018
    msg.route  # noqa: B018
    msg.record_route  # noqa: B018
    if isinstance(msg, Request):
        msg.ruri  # noqa: B018


def _response(data: bytes, start: bytes, lines: list[tuple[str, bytes]], body: bytes) -> Response:
    parts = start.split(b" ", 2)
    if len(parts) < 2 or parts[0].upper() != b"SIP/2.0":
        raise SipParseError("bad status line")
    code = parts[1]
    if not code.isdigit() or len(code) != 3 or not 100 <= int(code) <= 699:
        raise SipParseError(f"bad status code {code[:10]!r}")
    reason = parts[2].decode(ENC, ERRORS) if len(parts) == 3 else ""
    resp = Response(data, start, lines, body, False, int(code), reason, "SIP/2.0")
    index = resp._idx()
    resp.body, resp._cl_ok = _content_length(lines, index, body)
    if not index.keys() >= _REQUIRED:
        missing = [hdr.canonical_name(k) for k in _REQUIRED_ORDER if k not in index]
        raise SipParseError(f"response missing {', '.join(missing)}")
    resp.cseq  # noqa: B018
    return resp


def build_response(req: Request, status: int, reason: str, headers: Sequence[tuple[str, str]] = (),
                   to_tag: str | None = None, body: bytes = b"", content_type: str | None = None) -> bytes:
    """RFC 3261 8.2.6.2: a response copying Via (all, in order), From, To (+ our tag),
    Call-ID and CSeq from the request, then ``headers``, then Content-Length."""
    out = response_head(req, status, reason, to_tag)
    for name, value in headers:
        out.append(header_line(name, value))
    if content_type is not None:
        out.append(f"Content-Type: {content_type}".encode())
    return response_end(out, body)


def response_head(req: Request, status: int, reason: str, to_tag: str | None) -> list[bytes]:
    """The first lines of ``build_response``: the status line and what it copies from ``req``.
    A response with lines of its own made once (act.redirect_response) appends them, then
    ``response_end``."""
    out = [_status_line(status, reason)]
    seen = 0   # the _COPIED bits of the keys copied
    for k, line in req._lines:
        if k == "via":
            out.append(line)
            continue
        bit = _COPIED.get(k, 0)
        if bit and not seen & bit:
            # The first of each only: a request with two To lines (RFC 4475 multi01) still
            # gets a well-formed 400.
            seen |= bit
            if k == "to" and to_tag and status > 100 and not _has_tag(req):
                line += b";tag=" + to_tag.encode(ENC, ERRORS)
            out.append(line)
    return out


def header_line(name: str, value: str) -> bytes:
    """One header line of a response, as ``build_response`` writes it."""
    return f"{name}: {value}".encode(ENC, ERRORS)


def response_end(lines: list[bytes], body: bytes) -> bytes:
    """The response of ``lines`` (``response_head``'s and its headers'): Content-Length, the
    blank line and ``body`` after them, in one join (no copy of the head)."""
    lines.append(f"Content-Length: {len(body)}".encode() if body else b"Content-Length: 0")
    lines.append(b"")
    lines.append(body)
    return b"\r\n".join(lines)


# Each status line a response was built with, encoded once (bounded: a reason comes from policy)
_STATUS_LINES: dict[tuple[int, str], bytes] = {}


def _status_line(status: int, reason: str) -> bytes:
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = f"SIP/2.0 {status} {reason}".encode(ENC, ERRORS)
        if len(_STATUS_LINES) < 256:
            _STATUS_LINES[key] = line
    return line


_COPIED = {"from": 1, "to": 2, "call-id": 4, "cseq": 8}   # the headers copied, a bit each
_TAG = re.compile(rb";[ \t]*tag[ \t]*=", re.IGNORECASE)


def _has_tag(req: Request) -> bool:
    """Whether the request's To has a tag; a malformed To (answering a bad request) is
    searched as text so that building the 400 itself never fails."""
    try:
        return "tag" in req.to.params
    except SipParseError:
        line = next((line for k, line in req._lines if k == "to"), b"")
        return _TAG.search(line.partition(b">")[2] if RANGLE in line else line) is not None
