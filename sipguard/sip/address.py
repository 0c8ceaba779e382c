"""URIs, name-addrs and Via values (RFC 3261 sections 19.1, 20.10, 20.42, 25.1; RFC 3966).

Parsing is strict where the proxy relies on the value (hosts, ports, branch) and keeps
everything else as text so it can be forwarded untouched. Every error is SipParseError.
Deliberate choices on RFC 4475's "reject or be liberal" cases: spaces inside an addr-spec
(badaspec) and non-token display names (baddn) are rejected; escapes stay escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sipguard.sip.errors import SipParseError

try:  # the byte-level pieces in C (sipguard/sip/_fast.c) when built; the Python here defines them
    from sipguard.sip import _fast
except ImportError:  # pragma: no cover - a tree without the extension runs the Python
    _fast = None  # type: ignore[assignment]

Params = dict[str, str | None]

# RFC 3261 25.1: token and host characters.
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_HOST_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-."
_IPV6REF = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
_TOKEN_RE = re.compile(f"^{_TOKEN}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+\-.]*$")
# No two adjacent quantifiers may match the same white space: a long run of blanks
# followed by junk would otherwise backtrack quadratically (found by the fuzz test).
_VIA = re.compile(
    r"^\s*SIP\s*/\s*[0-9.]+\s*/\s*(" + _TOKEN + r")\s+(\[[^\]\s]*\]|[^\s;:\[\]]+)\s*(?::\s*(\d+)\s*)?(?:;(.*))?$",
    re.DOTALL,
)


# One list item: quoted strings (backslash escapes; a quote opens even inside <>, and an
# unterminated one runs to the end), <...> spans (ending at '>' outside quotes, or at the
# end), or any other character but a comma. Linear: every alternative starts differently.
_QUOTED = r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)'
_LIST_ITEM = re.compile(r"(?:" + _QUOTED + r"|<(?:" + _QUOTED + r'|[^>"])*(?:>|\Z)|[^,"<])+', re.DOTALL)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quoted strings and <...>."""
    if "," not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    if '"' not in value and "<" not in value:  # nothing to respect: the usual Via list
        out = []
        for item in value.split(","):
            item = item.strip()
            if item:
                out.append(item)
        return out
    out = []
    for item in _LIST_ITEM.findall(value):
        item = item.strip()
        if item:
            out.append(item)
    return out


_C_PARAMS = _fast.params if _fast is not None else None


def parse_params(text: str) -> Params:
    """';a=b;c' -> {'a': 'b', 'c': None}; names lower-cased, values kept (quotes too): in C
    for the ASCII text it accepts (tests/property/test_sip_c.py), else ``parse_params_py``."""
    if _C_PARAMS is not None:
        found = _C_PARAMS(text)
        if found is not None:
            return found
    return parse_params_py(text)


def parse_params_py(text: str) -> Params:
    """``parse_params``'s definition; SipParseError for an empty parameter name."""
    params: Params = {}
    if not text:
        return params
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            raise SipParseError(f"empty parameter name in {text[:60]!r}")
        params[name] = value.strip() if sep else None
    return params


def check_host(host: str, where: str) -> None:
    if not host:
        raise SipParseError(f"missing host in {where[:80]}")
    if host.startswith("["):
        if not _IPV6REF.match(host):
            raise SipParseError(f"bad IPv6 reference {host[:60]!r}")
    elif not is_hostname(host):
        raise SipParseError(f"bad host {host[:60]!r}")


def is_hostname(host: str) -> bool:
    """RFC 3261 25.1 hostname or IPv4address: letters, digits, '-' and '.', beginning and ending
    with a letter or digit, then an optional '.' (``[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\\.?``)."""
    name = host[:-1] if host[-1:] == "." else host
    return name != "" and not name.strip(_HOST_CHARS) and name[0] not in ".-" and name[-1] not in ".-"


def _port(text: str, where: str) -> int:
    if not text.isdecimal() or len(text) > 5 or not 0 < int(text) < 65536:
        raise SipParseError(f"bad port {text[:10]!r} in {where[:60]}")
    return int(text)


@dataclass(frozen=True, slots=True)
class SipUri:
    scheme: str                   # sip, sips, tel, or any other scheme kept opaque
    user: str | None = None       # user part as written (escapes kept), incl. user params
    password: str | None = None
    host: str = ""                # IPv6 references keep their brackets
    port: int | None = None
    params: Params = field(default_factory=dict)
    headers: str | None = None
    raw: str = ""

    def format(self) -> str:
        return self.raw


_SIP_URI = re.compile(
    r"^(sips?):(?:([^@\s<>]+)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?\.?)"
    r"(?::(\d{1,5}))?((?:;[^?\s<>]*)?)(?:\?([^\s<>]*))?$", re.IGNORECASE)


def parse_uri(text: str) -> SipUri:
    m = _SIP_URI.match(text)
    if m is not None:  # the common case, in one regex; anything unusual takes the long way
        scheme, userinfo, host, port_text, params, headers = m.groups()
        user = password = None
        if userinfo is not None:
            user, colon, pw = userinfo.partition(":")
            password = pw if colon else None
        port = None
        if port_text is not None:
            port = int(port_text)
            if not 0 < port < 65536:
                raise SipParseError(f"bad port {port_text!r} in {text[:60]}")
        return SipUri(scheme.lower(), user, password, host.lower(), port,
                      parse_params(params[1:]) if params else {}, headers, text)
    raw = text.strip()
    if raw.startswith("<") and raw.endswith(">"):
        raw = raw[1:-1].strip()
    scheme, sep, rest = raw.partition(":")
    if not sep or not _SCHEME.match(scheme):
        raise SipParseError(f"bad URI {text[:80]!r}")
    scheme = scheme.lower()
    if any(c in rest for c in " \t\r\n<>"):
        raise SipParseError(f"white space or <> inside URI {text[:80]!r}")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise SipParseError(f"empty tel URI {text[:80]!r}")
        return SipUri("tel", user=number, params=parse_params(params), raw=raw)
    if scheme not in ("sip", "sips"):
        return SipUri(scheme, raw=raw)
    user = password = None
    at = rest.find("@")  # the user part holds no unescaped '@' (it may hold '?', RFC 4475 intmeth)
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1:]
        if not userinfo:
            raise SipParseError(f"empty user part in {text[:80]!r}")
        user, colon, pw = userinfo.partition(":")
        password = pw if colon else None
    rest, qmark, headers = rest.partition("?")
    hostport, _, params = rest.partition(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError(f"bad IPv6 reference in {text[:80]!r}")
        host, port_text = hostport[:end + 1], hostport[end + 1:]
        if port_text and not port_text.startswith(":"):
            raise SipParseError(f"bad IPv6 reference in {text[:80]!r}")
        port_text = port_text[1:]
    else:
        host, _, port_text = hostport.partition(":")
    check_host(host, text)
    port = _port(port_text, text) if port_text else None
    return SipUri(scheme, user, password, host.lower(), port, parse_params(params),
                  headers if qmark else None, raw)


def check_uri(text: str) -> None:
    """Raise SipParseError unless ``parse_uri(text)`` would succeed; cheaper when the
    result is not needed (a name-addr keeps its URI as text)."""
    if not _usual_uri(text):
        parse_uri(text)  # raises with the precise message, or accepts the unusual URI


_C_USUAL_URI = _fast.usual_uri if _fast is not None else None


def _usual_uri(text: str) -> bool:
    """Whether ``text`` is a sip or sips URI that ``parse_uri`` takes in its one regex: the
    C matcher's answer for ASCII text (None otherwise), else the regex's (``usual_uri_re``)."""
    if _C_USUAL_URI is not None:
        found = _C_USUAL_URI(text)
        if found is not None:
            return found
    return usual_uri_re(text)


def usual_uri_re(text: str) -> bool:
    """``_usual_uri``'s definition, and its answer wherever C gives none."""
    m = _SIP_URI.match(text)
    if m is None:
        return False
    port, params = m.group(4), m.group(5)
    return (port is None or 0 < int(port) < 65536) and not (params and ";=" in params)


def _unquote(text: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            i += 1
            ch = text[i]
        out.append(ch)
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/Route/PAI value: display name, URI and header parameters
    (``parse_name_addr``). A message keeps the one it read: never change ``params``."""

    display: str | None
    uri: str
    params: Params
    raw: str

    def __init__(self, display: str | None, uri: str, params: Params, raw: str) -> None:
        # written out (dataclass keeps it): compiled, this is a few stores; the generated
        # __init__ runs as interpreted Python (bench/RESULTS.md, session 7)
        object.__setattr__(self, "display", display)
        object.__setattr__(self, "uri", uri)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "raw", raw)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def format(self) -> str:
        return self.raw


_NAME_ADDR = re.compile(
    r'^\s*(?:"((?:[^"\\]|\\.)*)"\s*|(' + _TOKEN + r"(?:[ \t]+" + _TOKEN + r")*)\s*)?<([^<>\s]+)>\s*(;.*)?$",
    re.DOTALL)


_C_NAME_ADDR = _fast.name_addr if _fast is not None else None
_C_NAME_ADDR_TAG = _fast.name_addr_tag if _fast is not None else None
_C_NAME_ADDR_URI = _fast.name_addr_uri if _fast is not None else None


def parse_name_addr(value: str) -> NameAddr:
    """``value`` parsed, or SipParseError: the usual ASCII name-addr in C where the extension
    is built (the fields ``parse_name_addr_py`` gives it), anything else ``parse_name_addr_py``.
    Not remembered: nearly every From/To value is new (its tag is the call's), and looking one
    up and storing it cost more than reading it (bench/RESULTS.md, session 13)."""
    if _C_NAME_ADDR is not None:
        parts = _C_NAME_ADDR(value)
        if parts is not None:
            return NameAddr(parts[0], parts[1], parts[2], parts[3])
    return parse_name_addr_py(value)


def tag_of(value: str) -> str:
    """``parse_name_addr(value).tag or ""`` (SipParseError for a bad value), without building
    the name-addr where C reads the usual shape: the From/To tag of an in-dialog request."""
    if _C_NAME_ADDR_TAG is not None:
        found = _C_NAME_ADDR_TAG(value)
        if found is not None:
            return found
    # the C readers decline the same values (their shape check and parameter scan are shared):
    # straight to the definition, not through parse_name_addr's C read a second time
    return parse_name_addr_py(value).tag or ""


def uri_of(value: str) -> str:
    """``parse_name_addr(value).uri`` (SipParseError for a bad value), without building the
    name-addr where C reads the usual shape: the URI of an in-dialog request's Route."""
    if _C_NAME_ADDR_URI is not None:
        found = _C_NAME_ADDR_URI(value)
        if found is not None:
            return found
    return parse_name_addr_py(value).uri   # as tag_of: C declined, the definition answers


def parse_name_addr_py(value: str) -> NameAddr:
    """``parse_name_addr``'s definition."""
    if value[:1] == "<":  # the usual shape, <sip:...> and parameters, without a regex of its own
        gt = value.find(">")
        inner, after = value[1:gt], value[gt + 1:]
        # _SIP_URI allows no white space or <>, but its $ a final LF, which <...> refuses
        if gt > 1 and after[:1] in ("", ";") and inner[-1] != "\n" and _usual_uri(inner):
            return NameAddr(None, inner, parse_params(after[1:]) if after else {}, value.strip())
    m = _NAME_ADDR.match(value)
    if m is not None:  # common case: ["display"] <uri> ;params
        quoted, token_display, uri, params = m.groups()
        check_uri(uri)
        shown = _unquote(quoted) if quoted is not None else (token_display or None)
        return NameAddr(shown, uri, parse_params(params[1:]) if params else {}, value.strip())
    return name_addr_by_hand(value)


def name_addr_by_hand(value: str) -> NameAddr:
    """The name-addr or addr-spec the regular expression did not take (an unusual display
    name, an addr-spec without <>), read character by character; SipParseError if bad."""
    text = value.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    rest = text
    if text.startswith('"'):
        i, n = 1, len(text)
        while i < n and text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        if i >= n:
            raise SipParseError(f"unterminated quoted display name in {value[:80]!r}")
        display = _unquote(text[1:i])
        rest = text[i + 1:].lstrip()
        if not rest.startswith("<"):
            raise SipParseError(f"display name without <URI> in {value[:80]!r}")
    lt = rest.find("<")
    if lt >= 0:
        gt = rest.find(">", lt)
        if gt < 0:
            raise SipParseError(f"missing '>' in {value[:80]!r}")
        if display is None:
            name = rest[:lt].strip()
            if name:
                if not all(_TOKEN_RE.match(word) for word in name.split()):
                    raise SipParseError(f"bad display name {name[:60]!r}")
                display = name
        uri = rest[lt + 1:gt]
        if uri != uri.strip():
            raise SipParseError(f"spaces inside <> in {value[:80]!r}")
        param_text = rest[gt + 1:].strip()
        if param_text and not param_text.startswith(";"):
            raise SipParseError(f"unexpected text after URI in {value[:80]!r}")
    else:
        # addr-spec: the URI ends at the first ';' (its own params would need <>); no spaces
        uri, _, param_text = rest.partition(";")
        uri = uri.strip()
        if " " in uri or "\t" in uri or "?" in uri or "," in uri:
            raise SipParseError(f"address must be enclosed in <> ({value[:80]!r})")
    parse_uri(uri)
    return NameAddr(display, uri, parse_params(param_text), text)


@dataclass(frozen=True, slots=True)
class Via:
    transport: str            # upper case: UDP, TCP, TLS, SCTP, WS ...
    host: str                 # IPv6 references keep their brackets
    port: int | None
    params: Params
    raw: str

    def __init__(self, transport: str, host: str, port: int | None, params: Params, raw: str) -> None:
        object.__setattr__(self, "transport", transport)  # as NameAddr's
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "raw", raw)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        """None when absent, '' when present without value (RFC 3581 request), else the port."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    def sent_by_addr(self) -> tuple[str, int]:
        """Where a response goes (RFC 3261 18.2.2 with RFC 3581): received and rport win."""
        host = self.received or self.host
        port_text = self.params.get("rport")
        default = 5061 if self.transport == "TLS" else 5060
        port = int(port_text) if port_text and port_text.isdecimal() else (self.port or default)
        return host.strip("[]"), port


# The usual Via, "SIP/2.0/UDP host[:port];params" with one space, takes no regular expression.
_TRANSPORTS = frozenset(("UDP", "TCP", "TLS", "SCTP", "WS", "WSS"))


_C_VIA = _fast.via if _fast is not None else None


def parse_via(value: str) -> Via:
    """``value`` parsed, or SipParseError: the usual shape in C where the extension is built
    (the fields of ``parse_via_py``'s first branch), anything else ``parse_via_py``."""
    if _C_VIA is not None:
        parts = _C_VIA(value)
        if parts is not None:
            return Via(parts[0], parts[1], parts[2], parts[3], value.strip())
    return parse_via_py(value)


def parse_via_py(value: str) -> Via:
    """``parse_via``'s definition."""
    if value.startswith("SIP/2.0/"):
        space = value.find(" ", 8)
        transport = value[8:space]
        if space > 0 and transport in _TRANSPORTS:
            # (names of their own: compiled, a name's type is that of its first value)
            sent_by, semi, after = value[space + 1:].partition(";")
            name, colon, digits = sent_by.partition(":")
            if is_hostname(name) and (not colon or digits.isascii() and digits.isdigit()):
                return _via(transport, name, digits or None, after if semi else None, value)
    m = _VIA.match(value)
    if m is None:
        raise SipParseError(f"bad Via {value.strip()[:80]!r}")
    transport, host, port_text, params = m.groups()
    check_host(host, "Via")
    return _via(transport.upper(), host, port_text, params, value)


def _via(transport: str, host: str, port_text: str | None, params: str | None, value: str) -> Via:
    port = _port(port_text, "Via") if port_text else None
    parsed = parse_params(params or "")
    rport = parsed.get("rport")
    if rport and not rport.isdecimal():
        raise SipParseError(f"bad rport {rport[:10]!r} in Via")
    return Via(transport, host, port, parsed, value.strip())
