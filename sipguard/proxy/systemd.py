"""systemd's notify protocol (sd_notify(3)) without a dependency: READY, STOPPING, and the
watchdog pings while the event loop runs. Without $NOTIFY_SOCKET (not under systemd, or
Type=simple) every call does nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("sipguard.serve")


def sd_notify(message: str) -> bool:
    """systemd readiness/watchdog: one datagram to $NOTIFY_SOCKET (no dependency needed)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False
    return True


async def ping_watchdog(stopping: asyncio.Event) -> None:
    """WATCHDOG=1 at half the interval systemd asked for: sent only while the loop runs."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return
    interval = int(usec) / 2e6
    while not stopping.is_set():
        sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval)
