"""The relay fast path: responses and in-dialog requests read from their lines, not parsed whole.

A relaying proxy needs few headers of most messages it passes on: a response is routed by
its top two Vias and its CSeq; a BYE or the ACK of a 2xx by its Request-URI, top Via and
Max-Forwards. The full parser (``parser.parse``) builds a ``Message`` with an index, a
cache and typed accessors, which costs several times the few reads the relay makes.

Here a message of the common shape (CRLF line ends, no folded line, header names the
parser has already learnt, one Content-Length equal to the body; in a request, no list in
the top Via line; a response's Via lists are split as the full path splits them) is
split into lines once (with the parser's own scan, ``known_keys``); the values the relay
reads come from the same functions the full path uses (``parse_via``, ``parse_name_addr``,
``parse_uri``, ``cseq_value``, ``max_forwards_value``: a bad value raises SipParseError,
and the caller takes the full path, which reports it), and the bytes it sends are
the input with the same lines changed. Every check the full parser makes on such a
message is made here too; anything else is ``None``: the caller takes the full parse,
which also answers or drops what is malformed. The proxy core must send the same bytes to
the same place on either path: ``tests/property/test_relay_fastpath.py`` runs both on
generated and mutated messages and compares them.

The same way of reading serves an overloaded worker (``overload_answer``): a 503 for a new
INVITE built from its lines, so shedding costs a fraction of a decision (proxy/overload.py).

Sans-I/O like the rest of ``sipguard.sip``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from sipguard.sip.address import split_list
from sipguard.sip.message import (
    COMMA,
    ENC,
    ERRORS,
    LANGLE,
    MAX_VALUES,
    cseq_value,
    max_forwards_value,
    without_first,
)
from sipguard.sip.parser import _METHODS, _NAMES, _REQUIRED, MAX_LINES, known_keys_re

try:  # the byte-level pieces in C (sipguard/sip/_fast.c) when built; the Python here defines them
    from sipguard.sip import _fast
except ImportError:  # pragma: no cover - a tree without the extension runs the Python
    _fast = None  # type: ignore[assignment]

CRLF = b"\r\n"


# The classes below write their own __init__ (dataclass keeps it): compiled, the one
# dataclasses generates would run as interpreted Python for every message.
@dataclass(slots=True)
class Lines:
    """A message of the common shape, split: what both fast paths start from."""

    start: bytes
    lines: list[bytes]      # header lines, raw, in order
    keys: list[str]         # the lookup key of each line (``headers.key``)
    body: bytes

    def __init__(self, start: bytes, lines: list[bytes], keys: list[str], body: bytes) -> None:
        self.start, self.lines, self.keys, self.body = start, lines, keys, body

    def value(self, index: int) -> str:
        """The value of header line ``index`` as the full path reads it (decoded, stripped):
        ``line_value``, in C when the extension is built."""
        line = self.lines[index]
        if _C_VALUE is not None:
            found = _C_VALUE(line)
            if found is not None:
                return found
        return line_value(line)

    def only(self, k: str) -> int | None:
        """The index of the one line of header ``k``; None when absent or repeated."""
        keys = self.keys
        if keys.count(k) != 1:
            return None
        return keys.index(k)

    def cseq(self) -> tuple[int, str] | None:
        """CSeq as the full path reads it (one line; a bad value raises SipParseError)."""
        i = self.only("cseq")
        return None if i is None else cseq_value(self.value(i))

    def join(self, lines: list[bytes]) -> bytes:
        """The message with ``lines`` as its headers (Content-Length stays right: same body)."""
        return CRLF.join([self.start, *lines, b"", self.body])


def line_value(line: bytes) -> str:
    """``Lines.value``'s definition: the text after the first colon, decoded, stripped."""
    return line[line.index(b":") + 1:].decode(ENC, ERRORS).strip()


_C_SPLIT = _fast.split if _fast is not None else None
_C_VALUE = _fast.value if _fast is not None else None


def split(data: bytes, max_size: int) -> Lines | None:
    """The lines of ``data`` when it has the common shape, else None (take the full parse):
    ``split_py``, in C when the extension is built (the same result: tests/property/test_sip_c.py)."""
    if _C_SPLIT is not None:
        parts = _C_SPLIT(data, max_size, _NAMES)
        return None if parts is None else Lines(parts[0], parts[1], parts[2], parts[3])
    return split_py(data, max_size)


def split_py(data: bytes, max_size: int) -> Lines | None:
    """``split``'s definition."""
    if len(data) > max_size:
        return None
    end = data.find(b"\r\n\r\n")
    if end <= 0 or data.find(b"\n\n", 0, end) >= 0:
        return None
    head = data[:end]
    lines = head.split(CRLF)
    count = len(lines)
    if count > MAX_LINES or not lines[0]:
        return None  # too many lines, or CRLF before the start line
    keys = known_keys_re(head, count - 1)  # the parser's own common-case scan
    if keys is None:
        return None
    body = data[end + 4:]
    if keys.count("content-length") != 1:
        return None
    line = lines[keys.index("content-length") + 1]
    text = line[line.index(b":") + 1:].strip()
    if not text.isdigit() or len(text) > 9 or int(text) != len(body):
        return None
    if not _REQUIRED.issubset(keys):
        return None
    start = lines.pop(0)
    return Lines(start, lines, keys, body)


@dataclass(slots=True)
class FastResponse:
    """A response whose Via lines hold one value each."""

    status: int
    method: str             # of the CSeq
    top: str                # the top Via value
    second: str | None      # the next Via value (where a stateless relay sends it)
    relayed: bytes          # the response without its top Via line
    cseq: int = 0           # the CSeq number (a stateless relay checks its branch with it)

    def __init__(self, status: int, method: str, top: str, second: str | None, relayed: bytes,
                 cseq: int = 0) -> None:
        self.status, self.method, self.top, self.second, self.relayed, self.cseq = \
            status, method, top, second, relayed, cseq


_C_RESPONSE = _fast.response if _fast is not None else None


def response(data: bytes, max_size: int) -> FastResponse | None:
    """A response of the common shape read for the relay, else None (take the full parse); a
    bad CSeq raises SipParseError. ``response_py``, its usual case in C when the extension is
    built (the same result: tests/property/test_sip_c.py)."""
    if _C_RESPONSE is not None:
        got = _C_RESPONSE(data, max_size, _NAMES, MAX_VALUES)
        if got is not None:
            return FastResponse(got[0], got[1], got[2], got[3], got[4], got[5])
    return response_py(data, max_size)


def response_py(data: bytes, max_size: int) -> FastResponse | None:
    """``response``'s definition."""
    if data[:8] != b"SIP/2.0 ":
        return None
    msg = split(data, max_size)
    if msg is None:
        return None
    start = msg.start
    code = start[8:11]
    if not code.isdigit() or start[11:12] not in (b" ", b"") or not 100 <= int(code) <= 699:
        return None
    cseq = msg.cseq()
    if cseq is None:
        return None
    keys, lines = msg.keys, msg.lines
    vias = [i for i, k in enumerate(keys) if k == "via"]
    if len(vias) > MAX_VALUES:
        return None
    top = vias[0]
    if any(COMMA in lines[i] for i in vias):
        return _listed(msg, int(code), cseq, vias)
    value = msg.value(top)
    if not value:
        return None  # an empty Via line holds no value: the full path's list splitting decides
    second = msg.value(vias[1]) if len(vias) > 1 else None
    return FastResponse(int(code), cseq[1], value, second, msg.join(lines[:top] + lines[top + 1:]), cseq[0])


def _listed(msg: Lines, status: int, cseq: tuple[int, str], vias: list[int]) -> FastResponse | None:
    """A response whose Via lines hold lists ("Via: ours, theirs", as sipp and other UAs
    echo them): the values split as the full path splits them, its top value removed from
    its line as ``Message.pop_first_value`` removes it."""
    per_line = [split_list(msg.value(i)) for i in vias]
    values = [item for items in per_line for item in items]
    if len(values) > MAX_VALUES:
        return None  # the full path refuses it
    top, first = vias[0], per_line[0]
    if not first:
        return None  # an empty first line: the full path decides
    lines = msg.lines
    rest = without_first(lines[top], first)
    kept = lines[:top] + lines[top + 1:] if rest is None else [*lines[:top], rest, *lines[top + 1:]]
    return FastResponse(status, cseq[1], values[0], values[1] if len(values) > 1 else None, msg.join(kept),
                        cseq[0])


@dataclass(slots=True)
class FastRequest:
    """An in-dialog or other non-INVITE request whose top Via line holds one value."""

    msg: Lines
    method: str
    uri: str
    cseq: int
    via: int                # index of the top Via line
    max_forwards: int       # its one Max-Forwards, validated (0..255)
    mf_line: int            # index of that line

    def __init__(self, msg: Lines, method: str, uri: str, cseq: int, via: int, max_forwards: int,
                 mf_line: int) -> None:
        self.msg, self.method, self.uri, self.cseq, self.via, self.max_forwards, self.mf_line = \
            msg, method, uri, cseq, via, max_forwards, mf_line


_C_REQUEST = _fast.request if _fast is not None else None


def request(data: bytes, max_size: int) -> FastRequest | None:
    """A request of the common shape read for the relay, else None (take the full parse); a bad
    CSeq or Max-Forwards raises SipParseError. ``request_py``, its usual case in C when the
    extension is built (the same result: tests/property/test_sip_c.py)."""
    if _C_REQUEST is not None:
        got = _C_REQUEST(data, max_size, _NAMES, _METHODS)
        if got is not None:
            return FastRequest(Lines(got[0], got[1], got[2], got[3]), got[4], got[5], got[6], got[7], got[8], got[9])
    return request_py(data, max_size)


def request_py(data: bytes, max_size: int) -> FastRequest | None:
    """``request``'s definition."""
    msg = split(data, max_size)
    if msg is None:
        return None
    parts = msg.start.split(b" ")
    if len(parts) != 3 or parts[2] != b"SIP/2.0" or not parts[1]:
        return None
    method = _METHODS.get(parts[0])
    if method is None:
        return None
    uri = parts[1].decode(ENC, ERRORS)
    if uri[:1] == "<" or ":" not in uri:
        return None
    cseq = msg.cseq()
    if cseq is None or cseq[1] != method:
        return None
    keys = msg.keys
    via = keys.index("via")
    if COMMA in msg.lines[via] or not msg.value(via):
        return None
    mf_line = msg.only("max-forwards")
    if mf_line is None:
        return None
    return FastRequest(msg, method, uri, cseq[0], via, max_forwards_value(msg.value(mf_line)), mf_line)


def forwarded(req: FastRequest, our_via: bytes, prev_via: str | None, drop: int = -1) -> bytes:
    """RFC 3261 16.6 on the lines: our Via on top, the previous hop's Via rewritten
    (``prev_via``: with received/rport, moved to the top as the full path's pop and prepend
    do) or left as it is (None), Max-Forwards less one; header line ``drop`` (a Route line
    holding only our entry, popped by loose routing) left out."""
    lines = list(req.msg.lines)
    lines[req.mf_line] = b"Max-Forwards: %d" % (req.max_forwards - 1)
    if prev_via is not None:
        lines[req.via] = b""
    if drop >= 0:
        lines[drop] = b""
    if prev_via is not None or drop >= 0:
        lines = [line for line in lines if line]  # a header line is never empty (``split``)
    if prev_via is not None:
        lines.insert(0, b"Via: " + prev_via.encode(ENC, ERRORS))
    lines.insert(0, our_via)
    return req.msg.join(lines)


# -- answers under overload ----------------------------------------------------------------------
# An overloaded worker answers new INVITEs from their lines: no parse, no verification, no
# transaction (a stateless 503, RFC 3261 16.11 / 8.2.6.2). The To tag is a hash of the top Via
# and Call-ID lines, so a retransmission gets the same answer; its ACK is recognised by the tag.
_SHED_SLOTS = {b"via": 0, b"v": 0, b"from": 1, b"f": 1, b"to": 2, b"t": 2, b"call-id": 3, b"i": 3, b"cseq": 4}
_TAG_PARAM = re.compile(rb";[ \t]*tag[ \t]*=", re.IGNORECASE)
_ACK_TO_TAG = re.compile(rb"\r\n(?:to|t)[ \t]*:[^\r\n]*?;[ \t]*tag[ \t]*=[ \t]*([^;,\s>]+)", re.IGNORECASE)


def overload_answer(data: bytes, headers: bytes, tag_prefix: bytes, max_size: int,
                    live: Callable[[bytes, str], bool] | None = None) -> bytes | None:
    """``503 Service Unavailable`` for an initial INVITE, read from its lines: every Via line in
    order, From, To with a tag of ours, Call-ID, CSeq, then ``headers`` (whole CRLF-ended lines:
    Retry-After, Server). None for anything else: not an INVITE, an INVITE with a To tag (a
    re-INVITE: in-dialog traffic keeps flowing), a bare-LF or folded head, a missing or repeated
    From/To/Call-ID/CSeq; the caller then takes the full path, which answers or refuses it.
    Also None when ``live(data, top Via value)`` says the INVITE is a retransmission of a
    transaction that lives (RFC 3261 17.2.3: it is answered by its transaction, never twice)."""
    if data[:7] != b"INVITE ":
        return None
    end = data.find(b"\r\n\r\n", 0, max_size)
    if end < 0:
        return None
    lines = data[:end].split(CRLF)
    if len(lines) > MAX_LINES:
        return None
    vias: list[bytes] = []
    found: list[bytes | None] = [None, None, None, None]   # From, To, Call-ID, CSeq
    for line in lines[1:]:
        colon = line.find(b":")
        if colon <= 0 or line[0] in b" \t":
            return None  # folded or not a header line: the full parse decides
        slot = _SHED_SLOTS.get(line[:colon].rstrip(b" \t").lower())
        if slot is None:
            continue
        if slot == 0:
            vias.append(line)
        elif found[slot - 1] is not None:
            return None
        else:
            found[slot - 1] = line.rstrip(b" \t")
    from_, to, call_id, cseq = found
    if not vias or from_ is None or to is None or call_id is None or cseq is None:
        return None
    value = to[to.find(b":") + 1:]
    if _TAG_PARAM.search(value, value.rfind(b">") + 1 if LANGLE in value else 0):
        return None
    top = vias[0]
    if live is not None and live(data, top[top.find(b":") + 1:].decode(ENC, ERRORS).strip()):
        return None
    tag = tag_prefix + hashlib.blake2b(vias[0] + call_id, digest_size=6).hexdigest().encode()
    return b"".join((b"SIP/2.0 503 Service Unavailable\r\n", CRLF.join(vias), CRLF, from_, CRLF,
                     to, b";tag=", tag, CRLF, call_id, CRLF, cseq, CRLF, headers, b"Content-Length: 0\r\n\r\n"))


def overload_ack(data: bytes, tag_prefix: bytes) -> bool:
    """Is this the ACK of an ``overload_answer`` (its To tag starts with ``tag_prefix``)? Such
    an ACK is hop-by-hop (RFC 3261 17.2.1) and there is no transaction to stop: absorbed."""
    end = data.find(b"\r\n\r\n") if data[:4] == b"ACK " else -1
    if end < 0 or data.find(tag_prefix, 0, end) < 0:
        return False   # the To tag is part of the head: without the prefix there, not ours (most ACKs)
    m = _ACK_TO_TAG.search(data, 0, end)
    return m is not None and m.group(1).startswith(tag_prefix)
