"""ProxyCore tests without sockets: a Sender that keeps what the core sends, and a config."""

from __future__ import annotations

from pathlib import Path

import yaml

from sipguard.config import Config, load_config


class Capture:
    """``sent``: (bytes, address, transport) in order; the core's own address is ``ours``."""

    def __init__(self, ours: tuple[str, int] = ("127.0.0.1", 5060)) -> None:
        self.ours = ours
        self.sent: list[tuple[bytes, tuple[str, int], str]] = []

    def send_to_source(self, data: bytes, addr: tuple[str, int], transport: str, conn: object) -> None:
        self.sent.append((data, addr, transport))

    def send_to(self, data: bytes, addr: tuple[str, int], transport: str) -> None:
        self.sent.append((data, addr, transport))

    def via_sent_by(self, transport: str) -> str:
        return f"{self.ours[0]}:{self.ours[1]}"

    def is_local(self, host: str, port: int) -> bool:
        return (host, port) == self.ours

    def take(self) -> list[tuple[bytes, tuple[str, int]]]:
        """What was sent since the last take, as (bytes, address)."""
        out, self.sent = self.sent, []
        return [(data, addr) for data, addr, _ in out]


def proxy_config(folder: Path, ours: tuple[str, int] = ("127.0.0.1", 5060),
                 next_hop: tuple[str, int] = ("127.0.0.1", 5070), sources: str = "127.0.0.1/32",
                 **extra: object) -> Config:
    """A proxy-mode config on the memory store with one foreign trunk (for 127.0.0.1)."""
    path = folder / "sipguard.yaml"
    path.write_text(yaml.safe_dump({
        "listen": [f"udp://{ours[0]}:{ours[1]}"], "mode": "proxy", "next_hop": f"sip:{next_hop[0]}:{next_hop[1]}",
        "store": "memory", "traceback": {"path": str(folder / "tb.db")},
        "trunks": [{"id": "t", "role": "foreign", "sources": [sources],
                    "provider": {"name": "P", "frn": "0012345678", "rmd": "RMD0001234", "country": "GB"}}],
        **extra}))
    return load_config(str(path))
