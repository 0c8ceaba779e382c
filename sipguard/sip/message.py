"""SIP messages: parse bytes lazily, mutate a few headers, serialize byte-exactly.

Rule 1: ``parse`` only splits the start line and the header lines, checks the framing
(Content-Length against the body) and that a request has the headers every response
needs (Via, From, To, Call-ID, CSeq); a header is decoded when first read, then cached.
Rule 2: headers nobody changed go out as the very bytes that came in (spelling, compact
form, folding); ``serialize`` of an untouched message returns the input.
Rule 3: on bad bytes the only exception is SipParseError, whose ``partial`` is the
request when it can still be answered.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Any

from sipguard.sip import headers as hdr
from sipguard.sip.address import NameAddr, SipUri, Via, parse_name_addr, parse_uri, parse_via, split_list
from sipguard.sip.errors import SipParseError

MAX_SIZE = 65535
_ENC = "utf-8"
_ERRORS = "surrogateescape"
_METHOD = re.compile(rb"^[A-Za-z0-9\-.!%*_+`'~]+$")
_FOLD = re.compile(r"\r?\n[ \t]+")
_REQUIRED = ("via", "from", "to", "call-id", "cseq")


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


class Message:
    """Common part of Request and Response. ``_lines`` holds (key, raw line) pairs."""

    __slots__ = ("_raw", "_start", "_lines", "_index", "body", "_cache", "_dirty", "_cl_ok")

    def __init__(self, raw: bytes, start: bytes, lines: list[tuple[str, bytes]], body: bytes,
                 cl_ok: bool) -> None:
        self._raw = raw
        self._start = start
        self._lines = lines
        self._index: dict[str, list[int]] | None = None
        self.body = body
        self._cache: dict[str, Any] = {}
        self._dirty = False
        self._cl_ok = cl_ok

    # -- raw access ------------------------------------------------------------------------
    def _idx(self) -> dict[str, list[int]]:
        index = self._index
        if index is None:
            index = {}
            for pos, (k, _) in enumerate(self._lines):
                index.setdefault(k, []).append(pos)
            self._index = index
        return index

    def _values(self, k: str) -> list[str]:
        out = []
        for pos in self._idx().get(k, ()):
            line = self._lines[pos][1]
            value = line[line.index(b":") + 1:].decode(_ENC, _ERRORS)
            if "\n" in value:
                value = _FOLD.sub(" ", value)
            out.append(value.strip())
        return out

    def headers(self, name: str) -> list[str]:
        """All values of a header (any spelling or compact form); lists split at commas."""
        k = hdr.key(name)
        cached = self._cache.get(k + "\0h")
        if cached is not None:
            return list(cached)
        values = self._values(k)
        if k in hdr.MULTI_VALUE:
            values = [item for value in values for item in split_list(value)]
        self._cache[k + "\0h"] = values
        return list(values)

    def header(self, name: str) -> str | None:
        values = self._values(hdr.key(name))
        return values[0] if values else None

    def has(self, name: str) -> bool:
        return hdr.key(name) in self._idx()

    def header_count(self, name: str) -> int:
        return len(self._idx().get(hdr.key(name), ()))

    # -- typed accessors (cached) ----------------------------------------------------------
    def _single(self, k: str) -> str:
        values = self._values(k)
        if not values:
            raise SipParseError(f"missing {hdr.canonical_name(k)}")
        if len(values) > 1:
            raise SipParseError(f"more than one {hdr.canonical_name(k)} header")
        return values[0]

    @property
    def vias(self) -> list[Via]:
        vias = self._cache.get("via\0t")
        if vias is None:
            vias = [parse_via(v) for v in self.headers("via")]
            self._cache["via\0t"] = vias
        return vias

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise SipParseError("missing Via")
        return vias[0]

    @property
    def call_id(self) -> str:
        value = self._cache.get("call-id\0t")
        if value is None:
            value = self._single("call-id")
            if not value or " " in value or "," in value:
                raise SipParseError(f"bad Call-ID {value!r}")
            self._cache["call-id\0t"] = value
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        value = self._cache.get("cseq\0t")
        if value is None:
            text = self._single("cseq")
            parts = text.split()
            if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10 \
                    or int(parts[0]) >= 2**31 or not _METHOD.match(parts[1].encode(_ENC, _ERRORS)):
                raise SipParseError(f"bad CSeq {text!r}")
            value = (int(parts[0]), parts[1])
            self._cache["cseq\0t"] = value
        return value

    def _addr(self, k: str) -> NameAddr:
        value = self._cache.get(k + "\0t")
        if value is None:
            value = parse_name_addr(self._single(k))
            self._cache[k + "\0t"] = value
        return value

    @property
    def from_(self) -> NameAddr:
        return self._addr("from")

    @property
    def to(self) -> NameAddr:
        return self._addr("to")

    def _addrs(self, k: str) -> list[NameAddr]:
        value = self._cache.get(k + "\0a")
        if value is None:
            value = [parse_name_addr(v) for v in self.headers(k) if v != "*"]
            self._cache[k + "\0a"] = value
        return value

    @property
    def contact(self) -> list[NameAddr]:
        return self._addrs("contact")

    @property
    def route(self) -> list[NameAddr]:
        return self._addrs("route")

    @property
    def record_route(self) -> list[NameAddr]:
        return self._addrs("record-route")

    @property
    def pai(self) -> list[NameAddr]:
        return self._addrs("p-asserted-identity")

    @property
    def identity(self) -> list[str]:
        return self._values("identity")

    @property
    def max_forwards(self) -> int | None:
        if "max-forwards" not in self._idx():
            return None
        text = self._single("max-forwards")
        if not text.isdigit() or len(text) > 10 or int(text) > 255:
            raise SipParseError(f"bad Max-Forwards {text!r}")
        return int(text)

    # -- mutation --------------------------------------------------------------------------
    def _changed(self, k: str | None = None) -> None:
        """Forget what was derived from header ``k`` (everything when None)."""
        self._dirty = True
        self._index = None
        if k is None:
            self._cache.clear()
        elif self._cache:
            prefix = k + "\0"
            for name in [n for n in self._cache if n.startswith(prefix)]:
                del self._cache[name]

    @staticmethod
    def _line(name: str, value: str) -> tuple[str, bytes]:
        return hdr.key(name), f"{hdr.canonical_name(name)}: {value}".encode(_ENC, _ERRORS)

    def prepend_header(self, name: str, value: str) -> None:
        line = self._line(name, value)
        self._lines.insert(0, line)
        self._changed(line[0])

    def append_header(self, name: str, value: str) -> None:
        line = self._line(name, value)
        self._lines.append(line)
        self._changed(line[0])

    def set_header(self, name: str, value: str) -> None:
        k = hdr.key(name)
        positions = self._idx().get(k)
        line = self._line(name, value)
        if not positions:
            self._lines.append(line)
        else:
            self._lines[positions[0]] = line
            for pos in reversed(positions[1:]):
                del self._lines[pos]
        self._changed(k)

    def remove_header(self, name: str) -> int:
        k = hdr.key(name)
        before = len(self._lines)
        self._lines = [item for item in self._lines if item[0] != k]
        removed = before - len(self._lines)
        if removed:
            self._changed(k)
        return removed

    def pop_first_value(self, name: str) -> str | None:
        """Remove the first value of a list header; the rest of its line stays."""
        k = hdr.key(name)
        positions = self._idx().get(k)
        if not positions:
            return None
        pos = positions[0]
        line = self._lines[pos][1]
        colon = line.index(b":")
        value = line[colon + 1:].decode(_ENC, _ERRORS)
        items = split_list(_FOLD.sub(" ", value))
        if len(items) <= 1:
            del self._lines[pos]
        else:
            name_part = line[:colon].decode(_ENC, _ERRORS)
            self._lines[pos] = (k, f"{name_part}: {', '.join(items[1:])}".encode(_ENC, _ERRORS))
        self._changed(k)
        return items[0] if items else None

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        if content_type is not None:
            self.set_header("Content-Type", content_type)
        self._changed()

    # -- output ----------------------------------------------------------------------------
    def serialize(self) -> bytes:
        if not self._dirty and self._cl_ok:
            return self._raw
        lines = self._lines
        cl = f"Content-Length: {len(self.body)}".encode()
        positions = self._idx().get("content-length")
        out = [self._start]
        if positions:
            first = positions[0]
            for pos, (k, line) in enumerate(lines):
                if k == "content-length":
                    if pos == first:
                        out.append(line if self._cl_matches(line) else cl)
                else:
                    out.append(line)
        else:
            out.extend(line for _, line in lines)
            out.append(cl)
        return b"\r\n".join(out) + b"\r\n\r\n" + self.body

    def _cl_matches(self, line: bytes) -> bool:
        text = line[line.index(b":") + 1:].strip()
        return text.isdigit() and int(text) == len(self.body)

    def __bytes__(self) -> bytes:
        return self.serialize()


class Request(Message):
    __slots__ = ("method", "uri", "version")

    def __init__(self, raw: bytes, start: bytes, lines: list[tuple[str, bytes]], body: bytes,
                 cl_ok: bool, method: str, uri: str, version: str) -> None:
        super().__init__(raw, start, lines, body, cl_ok)
        self.method = method
        self.uri = uri
        self.version = version

    @property
    def ruri(self) -> SipUri:
        """The Request-URI, parsed (cached); escaped headers in it are refused (RFC 4475 escruri)."""
        value = self._cache.get("\0ruri")
        if value is None:
            value = parse_uri(self.uri)
            if value.headers is not None:
                raise SipParseError("Request-URI carries escaped headers")
            self._cache["\0ruri"] = value
        return value

    def set_uri(self, uri: str) -> None:
        self.uri = uri
        self._start = f"{self.method} {uri} {self.version}".encode(_ENC, _ERRORS)
        self._cache.pop("\0ruri", None)
        self._changed("\0")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("status", "reason", "version")

    def __init__(self, raw: bytes, start: bytes, lines: list[tuple[str, bytes]], body: bytes,
                 cl_ok: bool, status: int, reason: str, version: str) -> None:
        super().__init__(raw, start, lines, body, cl_ok)
        self.status = status
        self.reason = reason
        self.version = version

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def parse(data: bytes, max_size: int = MAX_SIZE) -> Request | Response:
    """Parse one complete message (a UDP datagram, or one framed TCP message)."""
    if len(data) > max_size:
        raise SipParseError(f"message of {len(data)} bytes exceeds the {max_size}-byte limit", 513)
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        head, body = data[:end], data[end + 4:]
        split = head.split(b"\r\n")
    else:
        end = data.find(b"\n\n")  # bare-LF senders (RFC 3261 7: CRLF, but LF is seen in the field)
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
    start = split[0]
    lines: list[tuple[str, bytes]] = []
    for line in split[1:]:
        if line[:1] in (b" ", b"\t"):
            if not lines:
                raise SipParseError("continuation line before any header")
            k, prev = lines[-1]
            lines[-1] = (k, prev + b"\r\n" + line)
            continue
        colon = line.find(b":")
        if colon <= 0:
            raise SipParseError(f"header line without a name: {line[:40]!r}")
        name = line[:colon]
        lines.append((_NAMES.get(name) or _header_key(name), line))
    if start.startswith(b"SIP/"):
        msg: Request | Response = _response(data, start, lines, body)
    else:
        msg = _request(data, start, lines, body)
    return msg


_NAMES: dict[bytes, str] = {}


def _header_key(name: bytes) -> str:
    """Validate a header name (a token, RFC 3261 25.1) and memoise its lookup key."""
    stripped = name.rstrip(b" \t")
    if not _METHOD.match(stripped):
        raise SipParseError(f"bad header name {stripped[:40]!r}")
    k = hdr.key(stripped.decode("ascii"))
    if len(_NAMES) < 4096:
        _NAMES[name] = k
    return k


def _content_length(lines: list[tuple[str, bytes]], body: bytes) -> tuple[bytes, bool]:
    """Check Content-Length against the body: a longer body is cut (RFC 3261 18.3),
    a shorter one is an error. Returns the body and whether the input bytes are exact."""
    values = [line[line.index(b":") + 1:].strip() for k, line in lines if k == "content-length"]
    if not values:
        return body, False
    if len(values) > 1 or b"," in values[0]:
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
    if not _METHOD.match(method_b):
        raise SipParseError(f"bad method {method_b[:20]!r}")
    method = method_b.decode("ascii")
    uri = uri_b.decode(_ENC, _ERRORS)
    version = version_b.decode(_ENC, _ERRORS)
    req = Request(data, start, lines, body, False, method, uri, version)
    present = {k for k, _ in lines}
    missing = [hdr.canonical_name(k) for k in _REQUIRED if k not in present]
    # Answerable: a response copies the raw Via/From/To/Call-ID/CSeq lines and goes back
    # to the packet's source, so presence is enough. An ACK is never answered.
    partial = req if not missing and method != "ACK" else None
    if missing:
        raise SipParseError(f"missing {', '.join(missing)}", 400, partial)
    if bad_line:
        raise SipParseError("bad request line (expected METHOD SP Request-URI SP SIP/2.0, single spaces)",
                            400, partial)
    try:
        if version != "SIP/2.0" and version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version!r}", 505)
        if req.cseq[1] != method:
            raise SipParseError(f"CSeq method {req.cseq[1]!r} does not match {method!r}")
        if uri[:1] == "<" or ":" not in uri:
            raise SipParseError(f"bad Request-URI {uri[:60]!r}")
        cut_body, exact = _content_length(lines, body)
    except SipParseError as exc:
        raise SipParseError(exc.reason, exc.status_hint, partial) from None
    req.body = cut_body
    req._cl_ok = exact
    return req


def validate(msg: Message) -> None:
    """Read every header the proxy relies on, so a malformed one raises SipParseError now.
    Used by tests and by callers that want parse-time strictness."""
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
    reason = parts[2].decode(_ENC, _ERRORS) if len(parts) == 3 else ""
    cut_body, exact = _content_length(lines, body)
    resp = Response(data, start, lines, cut_body, exact, int(code), reason, "SIP/2.0")
    present = {k for k, _ in lines}
    missing = [hdr.canonical_name(k) for k in _REQUIRED if k not in present]
    if missing:
        raise SipParseError(f"response missing {', '.join(missing)}")
    resp.cseq  # noqa: B018
    return resp


def build_response(req: Request, status: int, reason: str, headers: Sequence[tuple[str, str]] = (),
                   to_tag: str | None = None, body: bytes = b"", content_type: str | None = None) -> bytes:
    """RFC 3261 8.2.6.2: a response copying Via (all, in order), From, To (+ our tag),
    Call-ID and CSeq from the request, then ``headers``, then Content-Length."""
    out = [f"SIP/2.0 {status} {reason}".encode(_ENC, _ERRORS)]
    seen: set[str] = set()
    for k, line in req._lines:
        if k == "via":
            out.append(line)
        elif k in _COPIED and k not in seen:
            # The first of each only: a request with two To lines (RFC 4475 multi01) still
            # gets a well-formed 400.
            seen.add(k)
            if k == "to" and to_tag and status > 100 and not _has_tag(req):
                line += b";tag=" + to_tag.encode(_ENC, _ERRORS)
            out.append(line)
    for name, value in headers:
        out.append(f"{name}: {value}".encode(_ENC, _ERRORS))
    if content_type is not None:
        out.append(f"Content-Type: {content_type}".encode())
    out.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(out) + b"\r\n\r\n" + body


_COPIED = frozenset({"from", "to", "call-id", "cseq"})
_TAG = re.compile(rb";[ \t]*tag[ \t]*=", re.IGNORECASE)


def _has_tag(req: Request) -> bool:
    """Whether the request's To has a tag; a malformed To (answering a bad request) is
    searched as text so that building the 400 itself never fails."""
    try:
        return "tag" in req.to.params
    except SipParseError:
        line = next((line for k, line in req._lines if k == "to"), b"")
        return _TAG.search(line.partition(b">")[2] if b">" in line else line) is not None
