"""ProxyCore tests without sockets: a Sender that keeps what the core sends, and a config."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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


def example_config(folder: Path, policy: str | None = None, anchors: str | None = None,
                   **extra: Any) -> Any:
    """The example config (config/sipguard.example.yaml with its demo data and a policy,
    ``config/policy.example.yaml`` unless ``policy`` names another file of the repository)
    loaded from ``folder``: records there, the first trunk at 192.0.2.0/24; with ``anchors``
    (a test PKI's STI trust anchors) no CRL checks; ``extra`` replaces top-level keys."""
    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "config/demo", folder / "demo", dirs_exist_ok=True)
    shutil.copy(root / (policy or "config/policy.example.yaml"), folder / "policy.yaml")
    data = yaml.safe_load((root / "config/sipguard.example.yaml").read_text())
    data["policy"] = "policy.yaml"
    data["traceback"] = {"path": str(folder / "tb.db"), "spool": str(folder / "spool")}
    data["trunks"][0]["sources"] = ["192.0.2.0/24"]
    if anchors is not None:
        data["shaken"].update(trust_anchors=anchors, crl={"enabled": False})
    data.update(extra)
    (folder / "sipguard.yaml").write_text(yaml.safe_dump(data))
    return load_config(str(folder / "sipguard.yaml"))
