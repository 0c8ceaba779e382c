"""A three-namespace test network built with pyroute2, for tests where source addresses matter.

    upstream (carrier)            edge (sipguard / Kamailio)          core
    10.99.1.10  in the trunk  --  10.99.1.1 | 10.99.2.1  --  10.99.2.10
    10.99.1.100 outside it        veth "up" | veth "core"

    with Topology() as net:              # skips the test when namespaces cannot be made
        proc = net.popen("edge", [sys.executable, "-m", "sipguard", ...])
        with net.inside("upstream"):      # sockets made here live in that namespace
            sock = socket.socket(...); sock.bind(("10.99.1.10", 0))

Addresses are 10.99.x.y and exist only inside namespaces this module creates; the host's
own network is never touched (the veth pairs are created in the root namespace only for the
instant it takes to move both ends away). Everything is removed on exit, even after errors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

UPSTREAM_IN_TRUNK = "10.99.1.10"
UPSTREAM_OUTSIDE = "10.99.1.100"
EDGE_UP = "10.99.1.1"
EDGE_CORE = "10.99.2.1"
CORE = "10.99.2.10"
TRUNK_CIDR = "10.99.1.0/28"

# (namespace, interface, addresses, default gateway) for the two links
LINKS = (
    (("upstream", "up0", (UPSTREAM_IN_TRUNK, UPSTREAM_OUTSIDE), EDGE_UP), ("edge", "up1", (EDGE_UP,), None)),
    (("edge", "core1", (EDGE_CORE,), None), ("core", "core0", (CORE,), EDGE_CORE)),
)


class Topology:
    """upstream / edge / core namespaces joined by two veth pairs (see module docstring)."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or f"sg{os.getpid()}"
        self.names = {role: f"{self.tag}-{role}" for role in ("upstream", "edge", "core")}
        self.created: list[str] = []

    def __enter__(self) -> Topology:
        try:
            from pyroute2 import netns
        except ImportError:  # pragma: no cover - pyroute2 is a test dependency
            pytest.skip("pyroute2 is not installed")
        if shutil.which("ip") is None:
            pytest.skip("the ip command (iproute2) is needed to run processes in a namespace")
        try:
            for name in self.names.values():
                netns.create(name)
                self.created.append(name)
            for index, ends in enumerate(LINKS):
                self._link(index, ends)
        except Exception as exc:
            self.close()
            if isinstance(exc, PermissionError) or "Operation not permitted" in str(exc) or \
                    getattr(exc, "code", None) == 1:
                pytest.skip(f"cannot create network namespaces (needs CAP_NET_ADMIN): {exc}")
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _link(self, index: int, ends: tuple[tuple[Any, ...], tuple[Any, ...]]) -> None:
        from pyroute2 import IPRoute, NetNS

        (ns_a, if_a, _, _), (ns_b, if_b, _, _) = ends
        tmp_a, tmp_b = f"{self.tag[:8]}a{index}", f"{self.tag[:8]}b{index}"
        with IPRoute() as ip:
            ip.link("add", ifname=tmp_a, kind="veth", peer=tmp_b)
            ip.link("set", index=ip.link_lookup(ifname=tmp_a)[0], net_ns_fd=self.names[ns_a], ifname=if_a)
            ip.link("set", index=ip.link_lookup(ifname=tmp_b)[0], net_ns_fd=self.names[ns_b], ifname=if_b)
        for role, ifname, addresses, gateway in ends:
            with NetNS(self.names[role]) as ns:
                lo = ns.link_lookup(ifname="lo")[0]
                ns.link("set", index=lo, state="up")
                idx = ns.link_lookup(ifname=ifname)[0]
                for address in addresses:
                    ns.addr("add", index=idx, address=address, prefixlen=24)
                ns.link("set", index=idx, state="up")
                if gateway:
                    ns.route("add", dst="default", gateway=gateway)

    def popen(self, role: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Start a process inside a namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.names[role], *argv], **kw)

    @contextmanager
    def inside(self, role: str) -> Iterator[None]:
        """Run the block in a namespace (this thread only); sockets made here stay there."""
        from pyroute2 import netns

        netns.pushns(self.names[role])
        try:
            yield
        finally:
            netns.popns()

    def close(self) -> None:
        from pyroute2 import netns

        while self.created:
            name = self.created.pop()
            try:
                netns.remove(name)
            except OSError:
                pass
