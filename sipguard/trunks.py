"""Which trunk a packet came from: source address -> configured trunk (longest prefix wins);
and whether an address is a peer at all (``Peers``)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from typing import Final

from sipguard.addresses import next_hop_address
from sipguard.config import Config, CoreSettings, Trunk

log = logging.getLogger("sipguard.trunks")


class TrunkTable:
    """Longest-prefix match over the trunks' source CIDRs, memoised per address.

    The memo is bounded: a flood from random addresses costs one dict entry each until
    the bound, then the memo is cleared (classification stays correct, only slower).
    """

    __slots__ = ("_nets", "_memo", "_limit", "by_id")

    def __init__(self, trunks: Sequence[Trunk], memo_limit: int = 65536) -> None:
        nets = [(net, trunk) for trunk in trunks for net in trunk.sources]
        nets.sort(key=lambda item: item[0].prefixlen, reverse=True)
        self._nets = nets
        self._memo: dict[str, Trunk | None] = {}
        self._limit = memo_limit
        self.by_id = {trunk.id: trunk for trunk in trunks}

    @staticmethod
    def trusted(ip: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
        try:
            addr = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        return any(addr.version == net.version and addr in net for net in networks)

    def classify(self, ip: str) -> Trunk | None:
        try:
            return self._memo[ip]
        except KeyError:
            pass
        found = None
        try:
            addr = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
        except ValueError:
            addr = None
        if addr is not None:
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            for net, trunk in self._nets:
                if addr.version == net.version and addr in net:
                    found = trunk
                    break
        if len(self._memo) >= self._limit:
            self._memo.clear()
        self._memo[ip] = found
        return found


class Peers:
    """Who may send sipguard a request, by source address, and where such a request may go.

    Known peers are the trunks' sources, the trusted front proxies and the next hops (the
    global one and each trunk's; a next hop given as a name is resolved once, when made: at
    start and SIGHUP; one that does not resolve then is left out and logged). The remote ends of dialogs sipguard itself
    relayed are known by the signed Record-Route they carry (``proxy/stateless.py``), not by
    address. ``kind`` is memoised per address and bounded like ``TrunkTable``'s memo."""

    __slots__ = ("trunks", "_trusted", "_hops", "_memo", "_limit")

    # Final: constants of the class, not instance attributes (mypyc compiles this module)
    TRUNK: Final = "trunk"   # a trunk's source: its requests go to its next hop
    PROXY: Final = "proxy"   # a trusted front proxy (Kamailio): requests on behalf of trunks
    HOP: Final = "hop"       # a next hop: only in-dialog requests of our dialogs go back from it
    UNKNOWN: Final = ""

    def __init__(self, trunks: TrunkTable, trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
                 hops: frozenset[str], memo_limit: int = 65536) -> None:
        self.trunks = trunks
        self._trusted = tuple(trusted)
        self._hops = hops
        self._memo: dict[str, str] = {}
        self._limit = memo_limit

    @classmethod
    def of(cls, config: Config | CoreSettings, trunks: TrunkTable | None = None) -> Peers:
        """The peers a config (or the core's settings) names; ``trunks``: the trunk table to share (else its own)."""
        hops = config.hop_addresses if isinstance(config, CoreSettings) else None
        return cls(trunks if trunks is not None else TrunkTable(config.trunks), config.trusted_proxies,
                   hops if hops is not None else hop_addresses(config))

    def known(self, ip: str) -> bool:
        """A trunk source, a trusted proxy or a next hop: what a connection from an unknown
        source is refused by at accept (``unknown_source: reject``)."""
        return self.kind(ip) != self.UNKNOWN

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, str) and self.known(ip)

    def kind(self, ip: str) -> str:
        try:
            return self._memo[ip]
        except KeyError:
            pass
        if self.trunks.classify(ip) is not None:
            found = self.TRUNK
        elif self._trusted and self.trunks.trusted(ip, self._trusted):
            found = self.PROXY
        else:
            try:
                found = self.HOP if _canonical(ip) in self._hops else self.UNKNOWN
            except ValueError:
                found = self.UNKNOWN
        if len(self._memo) >= self._limit:
            self._memo.clear()
        self._memo[ip] = found
        return found


def hop_addresses(config: Config | CoreSettings) -> frozenset[str]:
    """The addresses of every next hop a config names (the global one and each trunk's). A
    name is resolved now, which blocks: a running worker calls this off its event loop
    (``Worker.reload``) and hands the answer in ``CoreSettings.hop_addresses``."""
    found: set[str] = set()
    for hop in (config.next_hop, *(t.next_hop for t in config.trunks)):
        if hop:
            found.update(_addresses(next_hop_address(hop)[0]))
    return frozenset(found)


def _canonical(host: str) -> str:
    """An address as one spelling (IPv4-mapped IPv6 as IPv4); ValueError for a name."""
    addr = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def _addresses(host: str) -> set[str]:
    """The addresses of a next hop's host: itself when an IP, else what it resolves to now."""
    try:
        return {_canonical(host)}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
    except OSError as exc:
        log.warning("next hop %s does not resolve (%s): its connections count as unknown sources", host, exc)
        return set()
    return {_canonical(str(info[4][0])) for info in infos}
