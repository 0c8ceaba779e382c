"""Header names: canonical spellings, compact forms (RFC 3261 section 7.3.3 and the
extensions that define one), and which headers may carry comma-separated values."""

from __future__ import annotations

CANONICAL: dict[str, str] = {
    "via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq",
    "max-forwards": "Max-Forwards", "contact": "Contact", "route": "Route",
    "record-route": "Record-Route", "content-length": "Content-Length",
    "content-type": "Content-Type", "content-encoding": "Content-Encoding",
    "p-asserted-identity": "P-Asserted-Identity", "identity": "Identity",
    "identity-info": "Identity-Info", "diversion": "Diversion", "history-info": "History-Info",
    "supported": "Supported", "require": "Require", "proxy-require": "Proxy-Require",
    "unsupported": "Unsupported", "allow": "Allow", "subject": "Subject", "event": "Event",
    "refer-to": "Refer-To", "referred-by": "Referred-By", "session-expires": "Session-Expires",
    "allow-events": "Allow-Events", "reason": "Reason", "warning": "Warning",
    "retry-after": "Retry-After", "call-info": "Call-Info", "user-agent": "User-Agent",
    "server": "Server", "date": "Date", "accept": "Accept", "www-authenticate": "WWW-Authenticate",
    "authorization": "Authorization", "proxy-authorization": "Proxy-Authorization",
    "proxy-authenticate": "Proxy-Authenticate", "expires": "Expires",
}

# RFC 3261 7.3.3, RFC 3265 (o, u), RFC 3515 (r), RFC 3892 (b), RFC 3841 (j, d, a),
# RFC 4028 (x), RFC 4474 (y, n).
COMPACT: dict[str, str] = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
    "c": "content-type", "e": "content-encoding", "k": "supported", "s": "subject", "o": "event",
    "u": "allow-events", "r": "refer-to", "b": "referred-by", "x": "session-expires",
    "y": "identity", "n": "identity-info", "j": "reject-contact", "d": "request-disposition",
    "a": "accept-contact",
}

# Headers whose values are a comma-separated list (RFC 3261 7.3.1); the parser splits them.
# Identity is not one of them: one Identity per header line (RFC 8224).
MULTI_VALUE = frozenset({
    "via", "route", "record-route", "contact", "allow", "supported", "require", "proxy-require",
    "unsupported", "accept", "accept-encoding", "accept-language", "allow-events",
    "p-asserted-identity", "diversion", "history-info", "call-info", "reason", "warning",
})

# Headers that must appear once with one value (RFC 4475 3.3.8 tests this).
SINGLE_VALUE = ("from", "to", "call-id", "cseq", "max-forwards", "content-length")

_KEYS: dict[str, str] = {}


def key(name: str) -> str:
    """The lookup key of a header name: lower case, compact form expanded (memoised)."""
    k = _KEYS.get(name)
    if k is None:
        low = name.strip().lower()
        k = COMPACT.get(low, low)
        if len(_KEYS) < 4096:
            _KEYS[name] = k
    return k


def canonical_name(name: str) -> str:
    """'v' -> 'Via', 'call-id' -> 'Call-ID', 'x-custom' -> 'X-Custom'."""
    k = key(name)
    return CANONICAL.get(k) or "-".join(part.capitalize() for part in k.split("-"))
