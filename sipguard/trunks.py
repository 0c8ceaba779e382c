"""Which trunk a packet came from: source address -> configured trunk (longest prefix wins);
and whether an address is a peer at all (``KnownPeers``)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence

from sipguard.config import Config, Trunk, next_hop_address

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


class KnownPeers:
    """Is an address one sipguard deals with: a trunk source, a trusted proxy, or a next hop
    (global or a trunk's)? What a connection from an unknown source is refused by
    (``unknown_source: reject``). Next hops given as names are resolved once, when made
    (start and SIGHUP); a name that does not resolve then is left out and logged."""

    __slots__ = ("_nets", "_hosts", "_memo")

    def __init__(self, config: Config) -> None:
        nets = [net for trunk in config.trunks for net in trunk.sources]
        nets.extend(config.trusted_proxies)
        self._nets = tuple(nets)
        hops = [config.next_hop, *[t.next_hop for t in config.trunks if t.next_hop]]
        hosts: set[str] = set()
        for hop in hops:
            try:
                host = next_hop_address(hop)[0]
            except ValueError:
                continue
            hosts.update(_addresses(host))
        self._hosts = frozenset(hosts)
        self._memo: dict[str, bool] = {}

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, str) and self.known(ip)

    def known(self, ip: str) -> bool:
        found = self._memo.get(ip)
        if found is not None:
            return found
        text = ip.strip("[]").split("%", 1)[0]
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(text)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        found = str(addr) in self._hosts or any(addr.version == net.version and addr in net for net in self._nets)
        if len(self._memo) >= 65536:  # a flood from random addresses: bounded, as TrunkTable's memo
            self._memo.clear()
        self._memo[ip] = found
        return found


def _addresses(host: str) -> set[str]:
    """The addresses of a next hop's host: itself when an IP, else what it resolves to now."""
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
    except OSError as exc:
        log.warning("next hop %s does not resolve (%s): its connections count as unknown sources", host, exc)
        return set()
    return {str(ipaddress.ip_address(info[4][0])) for info in infos}
