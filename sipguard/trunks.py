"""Which trunk a packet came from: source address -> configured trunk (longest prefix wins)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from sipguard.config import Trunk


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
