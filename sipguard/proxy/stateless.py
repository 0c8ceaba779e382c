"""The stateless relay (RFC 3261 16.11): where a request other than an initial INVITE goes, the
signed Record-Route that says so, and the keyed branch that proves a response is ours.

Rules:
1. A request goes where our signed Record-Route on top says (the other end of the dialog it
   was signed for), else to the next hop of the trunk it comes from; never to the host of a
   Request-URI or a Route a peer wrote. Anything else is refused (a key of
   ``messages.REFUSALS``).
2. Our branch is a keyed hash of the incoming request's (``stateless_branch``): a
   retransmission takes the same branch and path, and a response with no transaction here
   is relayed only when its branch is the one we made for the previous hop's Via.
3. The fast path (``fast_request``) sends exactly the bytes the full path (``forward``)
   would (``tests/property/test_relay_fastpath.py`` compares both).

No transaction state, no clock: the core keeps the INVITE transactions (an ACK they absorb
never gets here).
"""

from __future__ import annotations

import base64
import functools
import hmac
import ipaddress
import os
import re
from collections.abc import Callable

from sipguard.addresses import next_hop_address
from sipguard.config import CoreSettings
from sipguard.numbers import parse_tn
from sipguard.proxy.messages import (
    BRANCH_PREFIX,
    ROUTED_SCHEMES,
    Answers,
    Hop,
    Sender,
    blake2b_hex,
    rewritten_via,
    to_bytes,
    via_value,
)
from sipguard.sip import Request, Response, Via, parse_via, relay
from sipguard.sip.address import tag_of, uri_of
from sipguard.sip.message import COMMA, ENC, ERRORS
from sipguard.sip.relay import FastRequest, FastResponse
from sipguard.trunks import Peers, TrunkTable

RR_MARK = "sgrr"
# The key of our Record-Route tokens and stateless branches when proxy.secret_file is not
# set: made at import, so the workers forked from one supervisor share it.
_START_SECRET = os.urandom(32)
MACS = 4096
_SGRR = re.compile(RR_MARK + r"=([A-Za-z0-9_-]+)\.([0-9a-f]{24})")


class StatelessRelay:
    """Routing and relaying without a transaction, for one core's settings (``configure``)."""

    def __init__(self, sender: Sender, answers: Answers,
                 upstream_of: Callable[[Request, tuple[str, int]], tuple[str, int]]) -> None:
        self.sender = sender
        self.answers = answers
        self.upstream_of = upstream_of
        self.secret = _START_SECRET
        self.next_hop = ""
        self.reject_unknown = False
        self.peers: Peers | None = None
        self._hops: dict[str, Hop] = {}
        # The MACs of the tokens we signed, by what they sign: a dialog's ACK and BYE carry the
        # token its INVITE got. Bounded (emptied at MACS entries); emptied with a new key.
        self._macs: dict[str, str] = {}

    def configure(self, settings: CoreSettings, trunks: TrunkTable) -> None:
        """Settings for the messages that follow; without a secret of its own the key stays.
        Known peers: the trunks, the trusted proxies and the next hops (``trunks.Peers``)."""
        self.peers = Peers.of(settings, trunks)
        self.next_hop = settings.next_hop
        self._hops = {settings.next_hop: Hop(*next_hop_address(settings.next_hop))}
        self.reject_unknown = settings.unknown_source == "reject"
        if settings.secret is not None and settings.secret != self.secret:
            self.secret = settings.secret
            self._macs.clear()

    def hop(self, uri: str) -> Hop:
        hop = self._hops.get(uri)
        if hop is None:
            hop = Hop(*next_hop_address(uri))
            if len(self._hops) > 1024:
                self._hops.clear()
            self._hops[uri] = hop
        return hop

    # -- requests -------------------------------------------------------------------------------
    def route(self, req: Request, source: tuple[str, int]) -> Hop | str:
        """Where a request other than an initial INVITE goes; a refusal (a key of REFUSALS)
        when nowhere. Never to the host of the Request-URI or of a Route a peer wrote.
        1. Our signed Record-Route on top: the other end of the dialog it was signed for (our
           entries dropped, loose routing); one that does not verify is refused.
        2. Else from a trunk, from a trusted front proxy speaking for one, or from any source
           under ``unknown_source: allow``: that trunk's next hop (else the global one).
        3. Else refused: an unknown source, or a known peer (a next hop) outside our dialogs."""
        routes = req.route
        if routes and RR_MARK in routes[0].uri:
            dest = self.dialog_end(req, routes[0].uri)
            if dest is None:
                return "forged_route"
            while routes and RR_MARK in routes[0].uri:
                req.pop_first_value("Route")
                routes = routes[1:]
            return dest
        refusal = self.source_refusal(req, source)
        if refusal:
            return refusal
        assert self.peers is not None
        kind = self.peers.kind(source[0])
        if kind == Peers.PROXY:
            trunk = self.peers.trunks.classify(self.upstream_of(req, source)[0])
        elif kind == Peers.HOP:
            return "no_route"
        else:
            trunk = self.peers.trunks.classify(source[0])
        return self.hop(trunk.next_hop if trunk is not None and trunk.next_hop else self.next_hop)

    def source_refusal(self, req: Request, source: tuple[str, int]) -> str:
        """"unknown_source" when ``unknown_source: reject`` refuses this request's sender;
        an emergency call's requests are never refused for their source (the INVITE was not)."""
        assert self.peers is not None
        if not self.reject_unknown or self.peers.kind(source[0]) != Peers.UNKNOWN:
            return ""
        if parse_tn(req.to.uri).emergency or parse_tn(req.uri).emergency:
            return ""
        return "unknown_source"

    def forward(self, req: Request, source: tuple[str, int], transport: str, conn: object) -> None:
        """RFC 3261 16.11: forward without a transaction, where ``route`` says (483 at
        Max-Forwards 0, refused when nowhere); the branch is a hash of the incoming one."""
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            if req.method != "ACK":
                self.answers.reply(req, 483, source, transport, conn)
            return
        dest = self.route(req, source)
        if isinstance(dest, str):
            self.answers.refused(req, source, transport, conn, dest)
            return
        branch = stateless_branch(self.secret, req.top_via, req.method, req.cseq[0])
        self.prepare(req, source, transport, dest.transport, branch)
        self.sender.send_to(req.serialize(), (dest.host, dest.port), dest.transport)

    def fast_request(self, req: FastRequest, source: tuple[str, int], redirect: bool,
                     absorbed: Callable[[str, Via], bool]) -> bool:
        """``forward`` on the fast path's view, for ACK, BYE and the other requests relayed
        statelessly: along our signed Record-Route when one Route line holds just that entry
        (to the other end of the dialog), else when they come straight from a trunk (to its
        next hop); ``absorbed``: does an INVITE transaction take this ACK. False (nothing
        changed) for whatever is answered or refused or needs the full parse (other Routes,
        a token that does not verify, Proxy-Require, another scheme, Max-Forwards 0, any other
        source)."""
        method, msg = req.method, req.msg  # never INVITE, CANCEL or OPTIONS (the core's ``_fast``)
        if redirect and method != "ACK":
            return False
        if method != "ACK" and ("proxy-require" in msg.keys
                                or req.uri.split(":", 1)[0].lower() not in ROUTED_SCHEMES):
            return False
        route = -1
        if "route" in msg.keys:
            found = msg.only("route")
            if found is None or COMMA in msg.lines[found]:
                return False
            route = found
        via = parse_via(msg.value(req.via))
        if method == "ACK":
            to = msg.only("to")
            if to is None:
                return False
            if absorbed(tag_of(msg.value(to)), via):
                return True
        if req.max_forwards <= 0:
            return False
        if route >= 0:
            dest = self._fast_dialog_end(req, route)
            if dest is None:
                return False
        else:
            assert self.peers is not None
            trunk = self.peers.trunks.classify(source[0])
            if trunk is None:
                return False
            dest = self.hop(trunk.next_hop or self.next_hop)
        prev = rewritten_via(via, source)
        our = via_value(self.sender.via_sent_by(dest.transport), dest.transport,
                        stateless_branch(self.secret, via, method, req.cseq))
        self.sender.send_to(relay.forwarded(req, to_bytes("Via: " + our), prev, route), (dest.host, dest.port),
                            dest.transport)
        return True

    def _fast_dialog_end(self, req: FastRequest, route: int) -> Hop | None:
        """``dialog_end`` for the one Route line ``route`` of a fast-path request: None (the
        full path decides) unless it is our entry and its token verifies."""
        msg = req.msg
        uri = uri_of(msg.value(route))  # as parse_name_addr's .uri and .tag, without building them
        found = _SGRR.search(uri) if RR_MARK in uri else None
        from_, to, cid = msg.only("from"), msg.only("to"), msg.only("call-id")
        if found is None or from_ is None or to is None or cid is None:
            return None
        call_id = msg.value(cid)
        if not call_id or " " in call_id or "," in call_id:
            return None  # the full path's Call-ID check refuses it
        return self._end(found, tag_of(msg.value(from_)), tag_of(msg.value(to)), call_id)

    def prepare(self, req: Request, source: tuple[str, int], in_transport: str, out_transport: str,
                branch: str, rr_token: str | None = None) -> None:
        """RFC 3261 16.6: received/rport on the previous Via, Max-Forwards - 1, RR (given a
        token: only the initial INVITE of a dialog is record-routed), our Via."""
        prev = rewritten_via(req.top_via, source)
        if prev is not None:
            req.pop_first_value("Via")
            req.prepend_header("Via", prev)
        mf = req.max_forwards
        req.set_header("Max-Forwards", str((mf if mf is not None else 70) - 1))
        if rr_token is not None:
            # RFC 5658: changing transport, we record both of our sides; the callee reads the top
            # one (ours facing it), the caller the lower one (ours facing the caller)
            if in_transport != out_transport:
                req.prepend_header("Record-Route", self._record_route(in_transport, rr_token))
            req.prepend_header("Record-Route", self._record_route(out_transport, rr_token))
        req.prepend_header("Via", via_value(self.sender.via_sent_by(out_transport), out_transport, branch))

    # -- Record-Route -----------------------------------------------------------------------------
    def _record_route(self, transport: str, token: str) -> str:
        param = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{self.sender.via_sent_by(transport)}{param};lr;{RR_MARK}={token}>"

    def rr_token(self, req: Request, up: Hop, down: Hop) -> str:
        """Our Record-Route's parameter: the dialog's two ends as this proxy saw them (where the
        INVITE came from, where it went) and a MAC over them, the Call-ID and the caller's tag.
        An in-dialog request carrying it goes to the other end and nowhere else; a stranger
        cannot make one for another destination or another dialog."""
        payload = _payload(f"{up.transport}/{up.host}/{up.port}/{down.transport}/{down.host}/{down.port}")
        signed = f"{req.call_id}\n{req.from_.tag or ''}\n{payload}"
        mac = self._mac(signed)
        if len(self._macs) >= MACS:
            self._macs.clear()
        self._macs[signed] = mac
        return f"{payload}.{mac}"

    def _mac(self, signed: str) -> str:
        return blake2b_hex(to_bytes(signed), 12, self.secret)

    def dialog_end(self, req: Request, route: str) -> Hop | None:
        """The end of our dialog a request carrying our Record-Route goes to: the callee's side
        when it comes from the caller (its From tag signed the token), the caller's side when
        it comes from the callee (its To tag did). None: not a token we made."""
        found = _SGRR.search(route)
        if found is None:
            return None
        return self._end(found, req.from_.tag or "", req.to.tag or "", req.call_id)

    def _end(self, found: re.Match[str], from_tag: str, to_tag: str, call_id: str) -> Hop | None:
        """``dialog_end`` from the values it reads (the token found in the Route)."""
        payload, mac = found.group(1), found.group(2)
        for tag, side in ((from_tag, 1), (to_tag, 0)):
            signed = f"{call_id}\n{tag}\n{payload}"
            if hmac.compare_digest(mac, self._macs.get(signed) or self._mac(signed)):
                return _ends(payload)[side]
        return None

    # -- responses --------------------------------------------------------------------------------
    def response(self, resp: Response, branch: str) -> None:
        """A response with our ``branch`` and no transaction here: back to the previous hop
        when the branch is the one we made for it; else (or with no previous hop) dropped."""
        if resp.via_count() >= 2:
            prev = resp.via(1)  # the previous hop, read before our Via is popped
            if self.response_ours(branch, prev, resp.cseq[1], resp.cseq[0]):
                resp.pop_first_value("Via")
                self.send_response(resp.serialize(), prev)

    def fast_response(self, resp: FastResponse, branch: str) -> None:
        """``response`` on the relay fast path's view."""
        if resp.second is not None:
            prev = parse_via(resp.second)
            if self.response_ours(branch, prev, resp.method, resp.cseq):
                self.send_response(resp.relayed, prev)

    def response_ours(self, branch: str, prev: Via, method: str, cseq: int) -> bool:
        """A response with no transaction here is relayed only when its branch is the one we
        made for the request it answers (a keyed hash of the previous hop's Via): a forged
        response cannot send bytes to an address it names (counted). CANCEL: only ours have
        one, answered hop by hop, never relayed."""
        if method == "CANCEL":
            return False
        # as bytes: compare_digest refuses str with non-ASCII characters, and a peer writes the branch
        if hmac.compare_digest(to_bytes(branch), to_bytes(stateless_branch(self.secret, prev, method, cseq))):
            return True
        self.answers.counters.dropped_forged_response += 1
        return False

    def send_response(self, data: bytes, prev: Via) -> None:
        """A response relayed statelessly, to the previous hop's Via."""
        self.answers.counters.responses_relayed += 1
        addr = prev.sent_by_addr()
        if not _routable(addr[0]):
            return  # RFC 4475 bcast: never send to broadcast, multicast or unspecified
        self.sender.send_to_source(data, addr, prev.transport.lower(), None)


def stateless_branch(secret: bytes, via: Via, method: str, cseq: int) -> str:
    """RFC 3261 16.11: a stateless relay's branch is a function of the incoming request, so
    a retransmission takes the same branch (and path). Keyed: the response that comes back
    with the previous hop's Via below ours proves we relayed its request (``response_ours``).
    ACK and CANCEL take the INVITE's (RFC 3261 17.1.3, 9.1)."""
    if method == "ACK" or method == "CANCEL":
        method = "INVITE"
    seed = f"{via.branch}|{via.host}|{via.port}|{method}|{cseq}"
    return BRANCH_PREFIX + blake2b_hex(to_bytes(seed), 8, secret)


# Few pairs of ends (a trunk, a next hop): their encodings are remembered both ways.
@functools.lru_cache(maxsize=1024)
def _payload(ends: str) -> str:
    return base64.urlsafe_b64encode(to_bytes(ends)).rstrip(b"=").decode("ascii")


@functools.lru_cache(maxsize=1024)
def _ends(payload: str) -> tuple[Hop | None, Hop | None]:
    """The caller's and the callee's side from a payload we signed (``rr_token``)."""
    parts = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode(ENC, ERRORS).split("/")
    if len(parts) != 6:
        return None, None  # pragma: no cover - we signed it
    up, down = (Hop(parts[i + 1], int(parts[i + 2]), parts[i]) if parts[i + 2].isdigit() else None for i in (0, 3))
    return up, down


@functools.lru_cache(maxsize=4096)
def _routable(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name: resolved by the transport
    if addr.is_multicast or addr.is_unspecified:
        return False
    return not (addr.version == 4 and str(addr) == "255.255.255.255")
