"""SIP messages: lazy header access, a few mutations, byte-exact serialization.

Rule 1: a header is decoded when first read, then cached per header until it changes.
Rule 2: headers nobody changed go out as the very bytes that came in (spelling, compact
form, folding); ``serialize`` of an untouched message returns the input.
Rule 3: on bad bytes the only exception is SipParseError. Parsing lives in parser.py.

Hot path notes: the header index (key -> line positions) is built on first use and kept up
to date by append and set in place; a prepend drops it (rebuilt when next read). The
per-header cache is dropped only for the header that changed. ``_cl_ok`` says the one
Content-Length line is right for the body, so serialize joins the lines as they are.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Final

from sipguard.sip import headers as hdr
from sipguard.sip.address import NameAddr, SipUri, Via, parse_name_addr, parse_uri, parse_via, split_list
from sipguard.sip.errors import SipParseError

try:  # the byte-level pieces in C (sipguard/sip/_fast.c) when built; the Python here defines them
    from sipguard.sip import _fast
except ImportError:  # pragma: no cover - a tree without the extension runs the Python
    _fast = None  # type: ignore[assignment]

MAX_SIZE = 65535
MAX_VALUES = 128             # items in one list header (Via, Route ...): bounds the work per message
ENC = "utf-8"
# One byte looked for in bytes, as an int: ``COMMA in line`` is a memchr, where ``b"," in line``
# first tries its operand as an int inside CPython and raises and clears a TypeError each time
# (18 against 142 ns, the cost of the relay fast path's checks).
COMMA: Final = 0x2C   # ","
LANGLE: Final = 0x3C  # "<"
RANGLE: Final = 0x3E  # ">"
ERRORS = "surrogateescape"   # any byte survives decode/encode unchanged
METHOD = re.compile(rb"^[A-Za-z0-9\-.!%*_+`'~]+$")
_FOLD = re.compile(r"\r?\n[ \t]+")
_RURI = "\0ruri"             # cache slot of the Request-URI (not a header key)
_VIA_SLOTS = ("v0", "v1")    # cache slots of the first two Vias parsed on their own


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


_C_CSEQ = _fast.cseq if _fast is not None else None


def cseq_value(text: str) -> tuple[int, str]:
    """A CSeq value (number < 2**31, token method); SipParseError otherwise. In C where the
    extension is built and takes the text (a valid ASCII value), else ``cseq_value_py``."""
    if _C_CSEQ is not None:
        found = _C_CSEQ(text)
        if found is not None:
            return found
    return cseq_value_py(text)


def cseq_value_py(text: str) -> tuple[int, str]:
    """``cseq_value``'s definition. Digits are ``isdecimal`` here and below: ``isdigit`` also
    takes superscripts and the like ("\u00b2"), which ``int`` refuses with a ValueError."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdecimal() or len(parts[0]) > 10 \
            or int(parts[0]) >= 2**31 or not METHOD.match(parts[1].encode(ENC, ERRORS)):
        raise SipParseError(f"bad CSeq {text!r}")
    return int(parts[0]), parts[1]


_C_VALUES = _fast.values if _fast is not None else None


def values_py(lines: list[tuple[str, bytes]], positions: list[int]) -> list[str]:
    """The values of the header lines at ``positions``, unfolded and stripped: what
    ``Message._values`` reads, in C (``_fast.values``) for lines that hold no fold after the strip."""
    values = []
    for pos in positions:
        line = lines[pos][1]
        value = line[line.index(b":") + 1:].decode(ENC, ERRORS)
        if "\n" in value:
            value = _FOLD.sub(" ", value)
        values.append(value.strip())
    return values


def without_first(line: bytes, items: list[str]) -> bytes | None:
    """A list header line with its first value taken out, the rest joined as ``split_list``
    gave them; None when no value is left (the line goes)."""
    if len(items) <= 1:
        return None
    name = line[:line.index(b":")].decode(ENC, ERRORS)
    return f"{name}: {', '.join(items[1:])}".encode(ENC, ERRORS)


def max_forwards_value(text: str) -> int:
    """A Max-Forwards value (0..255); SipParseError otherwise."""
    if not text.isdecimal() or len(text) > 10 or int(text) > 255:
        raise SipParseError(f"bad Max-Forwards {text!r}")
    return int(text)


def _values_at(lines: list[tuple[str, bytes]], positions: list[int]) -> list[str]:
    """The values of the header lines at ``positions``: the C's answer, or the definition's
    (``values_py``) where the C leaves it (None)."""
    found = _C_VALUES(lines, positions) if _C_VALUES is not None else None
    return found if found is not None else values_py(lines, positions)


class Message:
    """Common part of Request and Response. ``_lines`` holds (key, raw line) pairs;
    ``_cache`` maps a header key to what was derived from it ({kind: value})."""

    __slots__ = ("_raw", "_start", "_lines", "_index", "body", "_cache", "_dirty", "_cl_ok")

    def __init__(self, raw: bytes, start: bytes, lines: list[tuple[str, bytes]], body: bytes,
                 cl_ok: bool) -> None:
        self._raw = raw
        self._start = start
        self._lines = lines
        self._index: dict[str, list[int]] | None = None
        self.body = body
        self._cache: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._cl_ok = cl_ok

    # -- raw access ------------------------------------------------------------------------
    @property
    def raw(self) -> bytes:
        """The bytes the message was parsed from (mutations do not change them)."""
        return self._raw

    def _idx(self) -> dict[str, list[int]]:
        index = self._index
        if index is None:
            index = {}
            for pos, (k, _) in enumerate(self._lines):
                positions = index.get(k)
                if positions is None:
                    index[k] = [pos]
                else:
                    positions.append(pos)
            self._index = index
        return index

    def _slot(self, k: str) -> dict[str, Any]:
        slot = self._cache.get(k)
        if slot is None:
            slot = self._cache[k] = {}
        return slot

    def _values(self, k: str) -> list[str]:
        """The values of header ``k``, one per line, unfolded and stripped (cached: do not mutate)."""
        slot = self._cache.get(k)
        if slot is not None:
            cached: list[str] | None = slot.get("v")
            if cached is not None:
                return cached
        else:
            slot = self._cache[k] = {}
        positions = self._idx().get(k)
        values = _values_at(self._lines, positions) if positions else []
        slot["v"] = values
        return values

    def headers(self, name: str) -> list[str]:
        """All values of a header (any spelling or compact form); lists split at commas."""
        k = hdr.key(name)
        slot = self._slot(k)
        values = slot.get("h")
        if values is None:
            values = self._values(k)
            if k in hdr.MULTI_VALUE:
                values = [item for value in values for item in split_list(value)]
                if len(values) > MAX_VALUES:
                    raise SipParseError(f"more than {MAX_VALUES} {hdr.canonical_name(k)} values")
            slot["h"] = values
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
        if len(values) != 1:
            what = "missing" if not values else "more than one"
            raise SipParseError(f"{what} {hdr.canonical_name(k)}{'' if not values else ' header'}")
        return values[0]

    @property
    def vias(self) -> list[Via]:
        slot = self._slot("via")
        vias = slot.get("t")
        if vias is None:
            values = self.headers("via")
            top = slot.get("v0")  # the top Via, if already read on its own: the same value
            vias = slot["t"] = [top if i == 0 and top is not None and top.raw == value else parse_via(value)
                                for i, value in enumerate(values)]
        return vias  # type: ignore[no-any-return]

    @property
    def top_via(self) -> Via:
        """The first Via only, parsed on its own: a proxy reads the others only when it
        relays a response statelessly (``via(1)``)."""
        return self.via(0)

    def via(self, index: int) -> Via:
        slot = self._slot("via")
        vias = slot.get("t")
        if vias is not None:
            if index >= len(vias):
                raise SipParseError("missing Via")
            return vias[index]  # type: ignore[no-any-return]
        key = _VIA_SLOTS[index] if index < 2 else f"v{index}"
        via = slot.get(key)
        if via is None:
            if index == 0:  # the common read: the first line, when it holds one value
                lines = self._values("via")
                if lines and "," not in lines[0]:
                    via = slot[key] = parse_via(lines[0])
                    return via
            values = self.headers("via")
            if index >= len(values):
                raise SipParseError("missing Via")
            via = slot[key] = parse_via(values[index])
        return via  # type: ignore[no-any-return]

    def via_count(self) -> int:
        return len(self.headers("via"))

    @property
    def call_id(self) -> str:
        slot = self._slot("call-id")
        value = slot.get("t")
        if value is None:
            value = self._single("call-id")
            if not value or " " in value or "," in value:
                raise SipParseError(f"bad Call-ID {value!r}")
            slot["t"] = value
        return value  # type: ignore[no-any-return]

    @property
    def cseq(self) -> tuple[int, str]:
        slot = self._slot("cseq")
        value = slot.get("t")
        if value is None:
            value = slot["t"] = cseq_value(self._single("cseq"))
        return value  # type: ignore[no-any-return]

    def _addr(self, k: str) -> NameAddr:
        slot = self._slot(k)
        value = slot.get("t")
        if value is None:
            value = slot["t"] = parse_name_addr(self._single(k))
        return value  # type: ignore[no-any-return]

    @property
    def from_(self) -> NameAddr:
        return self._addr("from")

    @property
    def to(self) -> NameAddr:
        return self._addr("to")

    def _addrs(self, k: str) -> list[NameAddr]:
        slot = self._slot(k)
        value = slot.get("a")
        if value is None:
            value = slot["a"] = [parse_name_addr(v) for v in self.headers(k) if v != "*"]
        return value  # type: ignore[no-any-return]

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
        return list(self._values("identity"))

    @property
    def max_forwards(self) -> int | None:
        if "max-forwards" not in self._idx():
            return None
        return max_forwards_value(self._single("max-forwards"))

    # -- mutation --------------------------------------------------------------------------
    def _changed(self, k: str) -> None:
        """Forget what was derived from header ``k``."""
        self._dirty = True
        self._cache.pop(k, None)
        if k == "content-length":
            self._cl_ok = False  # serialize checks (and fixes) it again

    @staticmethod
    def _line(name: str, value: str) -> tuple[str, bytes]:
        return hdr.key(name), f"{hdr.canonical_name(name)}: {value}".encode(ENC, ERRORS)

    def prepend_header(self, name: str, value: str) -> None:
        k, line = self._line(name, value)
        self._lines.insert(0, (k, line))
        # every line moved down by one: the index is rebuilt when next needed (the proxy's
        # last change before serialize is a prepend, and serialize rarely needs the index)
        self._index = None
        self._changed(k)

    def append_header(self, name: str, value: str) -> None:
        k, line = self._line(name, value)
        self._lines.append((k, line))
        index = self._index
        if index is not None:
            index.setdefault(k, []).append(len(self._lines) - 1)
        self._changed(k)

    def set_header(self, name: str, value: str) -> None:
        """Replace the first line of a header in place (others of it go), or append it."""
        k, line = self._line(name, value)
        positions = self._idx().get(k)
        if not positions:
            self.append_header(name, value)
            return
        self._lines[positions[0]] = (k, line)
        if len(positions) > 1:
            for pos in reversed(positions[1:]):
                del self._lines[pos]
            self._index = None
        self._changed(k)

    def remove_header(self, name: str) -> int:
        k = hdr.key(name)
        if k not in self._idx():
            return 0
        before = len(self._lines)
        self._lines = [item for item in self._lines if item[0] != k]
        removed = before - len(self._lines)
        if removed:
            self._index = None
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
        value = line[colon + 1:].decode(ENC, ERRORS)
        items = split_list(_FOLD.sub(" ", value))
        rest = without_first(line, items)
        if rest is None:
            del self._lines[pos]
            self._index = None
        else:
            self._lines[pos] = (k, rest)
        self._changed(k)
        return items[0] if items else None

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        if content_type is not None:
            self.set_header("Content-Type", content_type)
        self._dirty = True
        self._cl_ok = False

    # -- output ----------------------------------------------------------------------------
    def serialize(self) -> bytes:
        lines = self._lines
        if self._cl_ok:  # one Content-Length line, right for the body, not changed since
            if not self._dirty:
                return self._raw
            out = [self._start]
            out.extend(line for _, line in lines)
            out.append(b"")
            out.append(self.body)
            return b"\r\n".join(out)
        positions = self._idx().get("content-length")
        out = [self._start]
        if positions:
            # the first Content-Length line stays where it is (rewritten if wrong), others go
            first = positions[0]
            out.extend(line for _, line in lines[:first])
            line = lines[first][1]
            out.append(line if self._cl_matches(line) else b"Content-Length: %d" % len(self.body))
            out.extend(line for k, line in lines[first + 1:] if k != "content-length")
        else:
            out.extend(line for _, line in lines)
            out.append(b"Content-Length: %d" % len(self.body))
        out.append(b"")
        out.append(self.body)
        return b"\r\n".join(out)

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
        slot = self._slot(_RURI)
        value = slot.get("t")
        if value is None:
            value = parse_uri(self.uri)
            if value.headers is not None:
                raise SipParseError("Request-URI carries escaped headers")
            slot["t"] = value
        return value  # type: ignore[no-any-return]

    def set_uri(self, uri: str) -> None:
        self.uri = uri
        self._start = f"{self.method} {uri} {self.version}".encode(ENC, ERRORS)
        self._changed(_RURI)

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
