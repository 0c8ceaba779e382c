"""What sipguard writes into SIP itself: its Via, branch and tags, its own responses, and the
two requests a proxy makes on its own (RFC 3261 17.1.1.3's ACK, 9.1's CANCEL).

One builder per kind, as Kamailio's ``tm/t_msgbuilder.c`` has one ``build_local`` for the
local ACK and CANCEL. The builders are plain functions; ``Answers`` sends (through the
core's ``Sender``) and counts the responses to requests sipguard does not pass on.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from sipguard.clock import Clock
from sipguard.proxy.act import PHRASES
from sipguard.sip import Request, SipParseError, Via, build_response, parse, parse_uri
from sipguard.sip.message import ENC, ERRORS

if TYPE_CHECKING:
    from sipguard.proxy.transactions import InviteTx

log = logging.getLogger("sipguard.proxy")

BRANCH_PREFIX = "z9hG4bKsg"
TAG_PREFIX = "sg"
SERVER_HEADER = ("Server", "sipguard")
ROUTED_SCHEMES = ("sip", "sips", "tel")   # Request-URI schemes relayed (others: 416)
_RPORT = re.compile(r";\s*rport(?=\s*(;|$))", re.IGNORECASE)
# What a refused request gets (RFC 3261 16.3, 21.4): status, phrase, Warning text.
REFUSALS = {
    "unknown_source": (403, "Forbidden", "unknown source"),
    "forged_route": (403, "Forbidden", "Route not signed by this proxy"),
    "no_route": (404, "Not Found", "no dialog of this proxy to route it in"),
}


class Hop(NamedTuple):
    """Where a request goes next: an address and the transport to reach it."""

    host: str
    port: int
    transport: str   # udp | tcp | tls


class Sender(Protocol):
    """What the core needs from the transport layer."""

    def send_to_source(self, data: bytes, addr: tuple[str, int], transport: str, conn: object) -> None:
        """Send back towards where a request came from (on its TCP connection when there is one)."""

    def send_to(self, data: bytes, addr: tuple[str, int], transport: str) -> None:
        """Send to a next hop (our own socket, so responses come back to this process)."""

    def via_sent_by(self, transport: str) -> str:
        """host:port to put in our Via for this transport."""

    def is_local(self, host: str, port: int) -> bool:
        """Is host:port one of our own listening addresses?"""


@dataclass(slots=True)
class Counters:
    """What the proxy core counts, its answers and its relay included: cumulative, exported as
    sipguard_sip_events{event=<field>} (observe/metrics.py)."""

    received: int = 0
    invites: int = 0
    retransmissions: int = 0
    overload_503: int = 0
    malformed_answered: int = 0
    malformed_dropped: int = 0
    forwarded: int = 0
    rejected: int = 0
    redirected: int = 0
    responses_relayed: int = 0
    decide_errors: int = 0
    refused_unknown_source: int = 0   # requests from a source that is no known peer
    refused_forged_route: int = 0     # our Route with a signature that does not verify
    refused_no_route: int = 0         # a known peer's request that no dialog of ours routes
    dropped_forged_response: int = 0  # a response whose branch we did not make


def to_bytes(text: str) -> bytes:
    """Text read from a message back to bytes: any byte survives (a non-UTF-8 byte in a
    branch or a From read with surrogateescape must not raise here)."""
    return text.encode(ENC, ERRORS)


def tag(source: tuple[str, int], key: str) -> str:
    """Our To tag for a response to ``key`` from ``source``: the same for a retransmission.
    The text hashed is ``f"{source}{key}"`` (``tag_py``) with the tuple's repr spelled out, in
    an f-string compiled code joins itself (no tuple boxed and formatted, no ``!r``, which
    compiled goes through ``str.format``): 0.9 -> 0.5 us (session 15)."""
    host = source[0]
    return TAG_PREFIX + _blake2b_hex6(to_bytes(f"({repr(host)}, {source[1]}){key}"))


def tag_py(source: tuple[str, int], key: str) -> str:
    """``tag``'s definition (tests/property/test_keyed_hash.py holds them to the same tags)."""
    return TAG_PREFIX + blake2b_hex(to_bytes(f"{source}{key}"), 6)


# Hashers that have taken their key (and size) and nothing else, by (key, size): a copy
# hashes a message without a new hasher's set-up and its key block, most of BLAKE2b's cost
# on a message this short (bench/RESULTS.md, session 11). Bounded: a key changes on reload.
_HASHERS: dict[tuple[bytes, int], hashlib.blake2b] = {}


_TAG_HASHER = hashlib.blake2b(digest_size=6)   # tag's: no key, 6 bytes


def _blake2b_hex6(data: bytes) -> str:
    """``blake2b_hex(data, 6)`` from a hasher made once (no lookup by key and size)."""
    hasher = _TAG_HASHER.copy()
    hasher.update(data)
    return hasher.hexdigest()


def blake2b_hex(data: bytes, size: int, key: bytes = b"") -> str:
    """``hashlib.blake2b(data, digest_size=size, key=key).hexdigest()``, the same digest."""
    base = _HASHERS.get((key, size))
    if base is None:
        if len(_HASHERS) >= 16:
            _HASHERS.clear()
        base = _HASHERS[(key, size)] = hashlib.blake2b(digest_size=size, key=key)
    hasher = base.copy()
    hasher.update(data)
    return hasher.hexdigest()


def via_value(sent_by: str, transport: str, branch: str) -> str:
    """Our Via (RFC 3581: we ask for rport too)."""
    return f"SIP/2.0/{transport.upper()} {sent_by};branch={branch};rport"


def rewritten_via(via: Via, source: tuple[str, int]) -> str | None:
    """RFC 3261 18.2.1 / RFC 3581: the previous hop's Via value with received and rport filled
    in; None when it needs neither. ``via.raw`` is the value as it stands in the message (what
    ``pop_first_value`` removes)."""
    received = via.host.strip("[]") != source[0]
    if via.rport != "" and not received:
        return None
    value = via.raw
    if via.rport == "":  # fill in the rport the request asked for
        value = _RPORT.sub(f";rport={source[1]}", value, count=1)
    if received:
        value += f";received={source[0]}"
    return value


def response(req: Request, status: int, to_tag: str, *headers: tuple[str, str]) -> bytes:
    """A response of ours with the usual phrase and our Server header."""
    return build_response(req, status, PHRASES.get(status, "Error"), [*headers, SERVER_HEADER], to_tag=to_tag)


def warning_response(req: Request, status: int, phrase: str, text: str, to_tag: str) -> bytes:
    """A response of ours that says why in a ``Warning: 399 sipguard "..."`` (RFC 3261 20.43)."""
    warning = text.replace('"', "'")
    return build_response(req, status, phrase, [("Warning", f'399 sipguard "{warning}"'), SERVER_HEADER],
                          to_tag=to_tag)


def reparse(data: bytes | None, max_size: int) -> Request | None:
    """A request this core accepted (or built) before, parsed again; None if absent."""
    if data is None:
        return None
    try:
        msg = parse(data, max_size)
    except SipParseError:  # pragma: no cover - it parsed the first time
        return None
    return msg if isinstance(msg, Request) else None


def local_request(tx: InviteTx, method: str, to: str | None, sender: Sender, max_size: int) -> bytes | None:
    """The ACK of a non-2xx final response (RFC 3261 17.1.1.3, ``to``: the response's To) or
    the CANCEL (9.1, ``to``: None for the INVITE's own) of the INVITE ``tx`` forwarded: its
    Request-URI, From, Call-ID, CSeq number, Route and our branch; None when it was not
    forwarded."""
    inv = reparse(tx.sent, max_size)
    if tx.dest is None or tx.client_branch is None or inv is None:
        return None
    transport = tx.dest.transport
    lines = [
        f"{method} {inv.uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {sender.via_sent_by(transport)};branch={tx.client_branch}",
        "Max-Forwards: 70",
        f"From: {inv.header('From')}",
        f"To: {inv.header('To') if to is None else to}",
        f"Call-ID: {inv.call_id}",
        f"CSeq: {inv.cseq[0]} {method}",
    ]
    lines.extend(f"Route: {r}" for r in inv.headers("Route"))
    lines.append("Content-Length: 0")
    return to_bytes("\r\n".join(lines)) + b"\r\n\r\n"


class Answers:
    """The responses sipguard sends to requests it does not pass on, counted: malformed
    (RFC 3261 21.4, with a Warning saying why; an ACK is dropped), not routable by a proxy
    (16.3: 416, 420), refused (``REFUSALS``, at most one log warning per kind every 10 s),
    and the plain ones (483, 503, OPTIONS to us, a redirect server's 405)."""

    def __init__(self, sender: Sender, counters: Counters, clock: Clock) -> None:
        self.sender = sender
        self.counters = counters
        self.clock = clock
        self._warned: dict[str, tuple[float, int]] = {}  # refusal -> (last warning, since then)

    def reply(self, req: Request, status: int, source: tuple[str, int], transport: str, conn: object,
              *headers: tuple[str, str]) -> None:
        data = response(req, status, tag(source, req.top_via.branch or req.call_id), *headers)
        self.sender.send_to_source(data, source, transport, conn)

    def malformed(self, exc: SipParseError, source: tuple[str, int], transport: str, conn: object,
                  req: Request | None = None) -> None:
        partial = req if req is not None else exc.partial
        if partial is None or partial.method == "ACK":
            self.counters.malformed_dropped += 1
            log.debug("dropped malformed message from %s:%s: %s", source[0], source[1], exc.reason)
            return
        self.counters.malformed_answered += 1
        try:
            data = warning_response(partial, exc.status_hint, PHRASES.get(exc.status_hint, "Bad Request"),
                                    exc.reason, tag(source, exc.reason))
        except SipParseError:
            self.counters.malformed_dropped += 1
            return
        self.sender.send_to_source(data, source, transport, conn)

    def unacceptable(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> bool:
        """RFC 3261 16.3: a scheme we cannot route (416), an extension a proxy must
        understand (420 + Unsupported). Answered here; True when answered."""
        scheme = req.uri.split(":", 1)[0].lower()
        emergency = scheme == "urn" and req.uri.lower().startswith("urn:service:sos")
        if scheme not in ROUTED_SCHEMES and not emergency:  # RFC 5031 emergency URNs route on
            self.reply(req, 416, source, transport, conn)
            return True
        required = req.headers("Proxy-Require") if req.method != "CANCEL" and req.has("proxy-require") else []
        if required:
            self.reply(req, 420, source, transport, conn, ("Unsupported", ", ".join(required)))
            return True
        return False

    def refused(self, req: Request, source: tuple[str, int], transport: str, conn: object, refusal: str) -> bool:
        """Answer (never an ACK), count and log, at most one warning per kind every 10 s;
        False when ``refusal`` is empty (nothing refused)."""
        if not refusal:
            return False
        counter = "refused_" + refusal
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        status, phrase, text = REFUSALS[refusal]
        if req.method != "ACK":
            data = warning_response(req, status, phrase, text,
                                    req.to.tag or tag(source, req.top_via.branch or req.call_id))
            self.sender.send_to_source(data, source, transport, conn)
        now = self.clock.monotonic()
        last, since = self._warned.get(refusal, (0.0, 0))
        if now - last >= 10.0:
            log.warning("refused %s from %s:%s (%s, Request-URI %s)%s", req.method, source[0], source[1], text,
                        req.uri[:200], f"; {since} more refused since the last warning" if since else "")
            self._warned[refusal] = (now, 0)
        else:
            self._warned[refusal] = (last, since + 1)
        return True

    def here(self, req: Request, source: tuple[str, int], transport: str, conn: object, redirect: bool,
             refusal: Callable[[Request, tuple[str, int]], str]) -> bool:
        """A request other than INVITE, ACK and CANCEL that is answered here, not relayed: an
        OPTIONS for us (200, or refused), or anything a redirect server gets (405; OPTIONS 200).
        ``refusal``: why its source is refused ("" when it is not). True when answered."""
        if req.method == "OPTIONS" and self._for_us(req) and not req.route:
            if self.refused(req, source, transport, conn, refusal(req, source)):
                return True
            self.reply(req, 200, source, transport, conn, ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"),
                       ("Accept", "application/sdp"))
            return True
        if not redirect:
            return False
        if self.refused(req, source, transport, conn, refusal(req, source)):
            return True
        if req.method == "OPTIONS":
            self.reply(req, 200, source, transport, conn)
        else:
            self.reply(req, 405, source, transport, conn, ("Allow", "INVITE, ACK, CANCEL, OPTIONS"))
        return True

    def _for_us(self, req: Request) -> bool:
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            return True
        uri = parse_uri(req.uri)
        return not uri.user or self.sender.is_local(uri.host.strip("[]"), uri.port or 5060)
