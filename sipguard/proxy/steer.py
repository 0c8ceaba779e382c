"""Transaction steering: with several workers, spread one peer's requests over all of them
while every request of a transaction still reaches the worker that holds it.

SO_REUSEPORT hands datagrams to workers by 4-tuple, so all traffic of one peer (the SBC or
Kamailio in front, one sipp) lands in one worker while the others idle. With steering the
worker the kernel picked reads the request's top Via branch (one regex over the raw bytes,
scanned in C when the extension is built; RFC 3261 17.2.3: the branch identifies the server transaction) and the owner is
``branch_hash(branch) % workers``: the hash of the program that, where the kernel takes it,
makes this choice before any worker reads the datagram (``reuseport.py``), so that a
hand-over is the exception. A request another worker owns is handed over on an AF_UNIX
datagram socket, prefixed with its source address and the index of the listening socket it
arrived on; the owner answers from its own copy of that socket (same address and port).

An INVITE, its retransmissions, its CANCEL and the ACK of a non-2xx response carry the same
branch, so they meet in one worker. Requests relayed statelessly (BYE, in-dialog requests)
could be relayed by any worker, but they are spread by the same hash: with one busy peer
the worker the kernel picked would otherwise relay all of them itself and saturate first
(measured: at 3,000 calls/s from one sipp, 2.0-2.5 % failed calls without, 0.9-1.0 % with;
bench/RESULTS.md). Responses are never steered: a forwarded request leaves
from the forwarding worker's private socket and its responses come back there. TCP is not
steered: a connection already belongs to one worker. A request without a branch (RFC 2543)
stays where it arrived.

Sockets: the supervisor makes one socketpair per worker before forking; worker i reads the
``inbox`` end of pair i and every worker may send on the ``outbox`` end of any pair. The
pair is connected, so the kernel's per-receiver datagram queue limit does not apply, only
the send buffer (grown at creation). When it is full the request is dropped and counted,
exactly like a full UDP receive buffer: the upstream retransmits.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sipguard.proxy.transport import Receive, UdpEndpoint, grow_buffer

try:  # the owner check in C (sipguard/sip/_fast.c) when built; owner_of_py here defines it
    from sipguard.sip import _fast
except ImportError:  # pragma: no cover - a tree without the extension runs the Python
    _fast = None  # type: ignore[assignment]

log = logging.getLogger("sipguard.steer")

# The top Via's branch: the first "branch=" after the first Via header name (long or compact).
_BRANCH = re.compile(rb"\n(?:via|v)[ \t]*:[^\n]*?;[ \t]*branch[ \t]*=[ \t]*([^;,\s]+)", re.IGNORECASE)
_HEADER = struct.Struct("!BHB")   # listening socket index, source port, length of the source IP text
BUFFER = 4 << 20
SO_SNDBUFFORCE = 32  # Linux; not in the socket module
MAXLEN = 32          # bytes of the branch value hashed, here and by the kernel program (reuseport.py)

Deliver = Callable[[bytes, tuple[str, int], int], None]


def branch_hash(value: bytes) -> int:
    """h = h * 31 + byte over the first MAXLEN bytes, modulo 2**32: the hash of the kernel
    program (reuseport.py builds it from this definition and its tests compare the two)."""
    h = 0
    for i in range(min(len(value), MAXLEN)):   # indexed, not sliced: a C loop once compiled
        h = (h * 31 + value[i]) & 0xFFFFFFFF
    return h


_C_OWNER = _fast.owner if _fast is not None else None


def owner_of(data: bytes, workers: int) -> int | None:
    """The worker that owns this request's transaction, None when it has no branch: C's
    answer (``_fast.owner``, -1 for None) when the extension is built, else ``owner_of_py``'s."""
    if _C_OWNER is not None:
        owner = _C_OWNER(data, workers)
        if owner is not None:
            return owner if owner >= 0 else None
    return owner_of_py(data, workers)


def owner_of_py(data: bytes, workers: int) -> int | None:
    """``owner_of``'s definition, and its answer wherever C gives none
    (tests/property/test_steer_c.py compares both)."""
    m = _BRANCH.search(data, 0, 4096)
    if m is None:
        return None
    return branch_hash(m.group(1)) % workers  # the kernel program's hash (reuseport.py)


def pack(data: bytes, source: tuple[str, int], listen_index: int) -> bytes:
    ip = source[0].encode("ascii")
    return _HEADER.pack(listen_index, source[1], len(ip)) + ip + data


def unpack(frame: bytes) -> tuple[bytes, tuple[str, int], int]:
    """Inverse of ``pack``; ValueError on a frame that is not one."""
    if len(frame) < _HEADER.size:
        raise ValueError("short steering frame")
    index, port, iplen = _HEADER.unpack_from(frame)
    start = _HEADER.size + iplen
    if len(frame) < start:
        raise ValueError("short steering frame")
    return frame[start:], (frame[_HEADER.size:start].decode("ascii"), port), index


class Channels:
    """The socketpairs of N workers, made by the supervisor before it forks."""

    def __init__(self, workers: int) -> None:
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        for _ in range(workers):
            outbox, inbox = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            outbox.setblocking(False)
            inbox.setblocking(False)
            # a connected AF_UNIX datagram pair queues up to the sender's send buffer; past
            # net.core.wmem_max with SO_SNDBUFFORCE when allowed (CAP_NET_ADMIN)
            grow_buffer(outbox, (SO_SNDBUFFORCE, socket.SO_SNDBUF), BUFFER)
            self.pairs.append((outbox, inbox))

    def for_worker(self, index: int) -> Steering:
        return Steering(index, [outbox for outbox, _ in self.pairs], self.pairs[index][1])

    def close(self) -> None:
        for outbox, inbox in self.pairs:
            outbox.close()
            inbox.close()


@dataclass(slots=True)
class SteerCounters:
    """Cumulative, exported as sipguard_sip_events{event=<field>}."""

    steered_out: int = 0        # requests handed to the worker that owns their transaction
    steered_in: int = 0         # requests other workers handed to this one
    steer_dropped: int = 0      # hand-overs that failed (the owner's inbox was full)
    steer_bad_frames: int = 0   # frames in the inbox that did not unpack


class Steering:
    """One worker's side: decide, hand over, and read what the others hand over."""

    def __init__(self, index: int, outboxes: list[socket.socket], inbox: socket.socket) -> None:
        self.index = index
        self.workers = len(outboxes)
        self.outboxes = outboxes
        self.inbox = inbox
        self.counters = SteerCounters()
        self._transport: asyncio.BaseTransport | None = None

    def hand_over(self, data: bytes, source: tuple[str, int], listen_index: int) -> bool:
        """True when another worker owns the request (it was sent there, or dropped)."""
        owner = owner_of(data, self.workers)
        if owner is None or owner == self.index:
            return False
        try:
            self.outboxes[owner].send(pack(data, source, listen_index))
            self.counters.steered_out += 1
        except (BlockingIOError, InterruptedError):
            self.counters.steer_dropped += 1  # the owner is not keeping up: as a full UDP buffer would
        except OSError as exc:
            self.counters.steer_dropped += 1
            log.warning("handing a request to worker %d failed: %s", owner, exc)
        return True

    def wrap(self, receive: Receive) -> Steered:
        """``receive`` with this worker's steering in front of it."""
        return Steered(self, receive)

    async def start(self, deliver: Deliver) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Inbox(self, deliver), sock=self.inbox)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Steered:
    """The receive callback of a worker that steers: a request that reached a listening UDP
    socket and that another worker owns is handed over; everything else goes on to ``inner``
    (responses, TCP and TLS, what the worker's own private sockets receive)."""

    __slots__ = ("steering", "inner")

    def __init__(self, steering: Steering, inner: Receive) -> None:
        self.steering = steering
        self.inner = inner

    def __call__(self, data: bytes, source: tuple[str, int], transport: str, conn: object) -> None:
        if type(conn) is UdpEndpoint and conn.index >= 0 and not data.startswith(b"SIP/") \
                and self.steering.hand_over(data, source, conn.index):
            return
        self.inner(data, source, transport, conn)


class _Inbox(asyncio.DatagramProtocol):
    """What the other workers hand over, unpacked and delivered."""

    def __init__(self, steering: Steering, deliver: Deliver) -> None:
        self.steering = steering
        self.deliver = deliver

    def datagram_received(self, frame: bytes, addr: Any) -> None:
        try:
            data, source, listen_index = unpack(frame)
        except (ValueError, UnicodeDecodeError):
            self.steering.counters.steer_bad_frames += 1
            return
        self.steering.counters.steered_in += 1
        self.deliver(data, source, listen_index)
