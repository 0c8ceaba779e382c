"""The admin listener's bytes: one bounded HTTP/1.1 request per connection, judged before
its body is read.

The listener serves call records and changes what is blocked, and anyone who reaches its
port can talk to it. So a request is taken in this order, every step bounded:

1. a connection beyond ``http.max_connections`` is answered 503 and closed, nothing read;
2. the request head (at most ``MAX_HEAD`` bytes, 431 past that) must arrive within
   ``http.read_timeout`` (408), so a slow sender cannot hold a slot; a connection that sent
   nothing by then is closed without an answer (nothing stale for a client to read later);
3. the ``Gate`` (observe/http.py) checks method, path, bearer token and how much body the
   route takes (404 / 405 / 401 / 413) while the body still sits in the client's socket;
4. only then is the body read, into a buffer of exactly its announced length;
5. after the answer, what the client still sends is dropped, bounded in bytes and time.

``Connection`` is an ``asyncio.BufferedProtocol``: the transport reads into the buffer we
hand it and never more, so a client we refuse makes us read at most ``MAX_HEAD`` bytes
and drop at most ``LINGER_BYTES`` more, whatever it sends (``Listener.bytes_read`` counts
them). ``parse_head`` is pure.
This module must not know endpoints or query parameters: that is observe/http.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from sipguard.yamlconf import Section

log = logging.getLogger("sipguard.http")

MAX_HEAD = 8192
WRITE_TIMEOUT = 30.0          # a client that does not read its answer is cut off after this
LINGER_TIME = 2.0             # after answering: how long, and how many bytes, we drop what the
LINGER_BYTES = 65536          # client still sends before closing (see Connection.reply)
_SCRATCH = bytearray(4096)    # where dropped bytes go, shared: never read back
JSON = "application/json"
Headers = tuple[tuple[str, str], ...]
# (status, content type, body) or with extra headers (Set-Cookie, Location: the console)
Reply = tuple[int, str, bytes] | tuple[int, str, bytes, Headers]
REASONS = {100: "Continue", 200: "OK", 201: "Created", 303: "See Other", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
           413: "Payload Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """``http.max_connections``, ``http.max_body`` (bytes, for routes that take a body) and
    ``http.read_timeout`` (seconds for the whole request to arrive)."""

    max_connections: int = 64
    max_body: int = 65536
    read_timeout: float = 5.0

    @classmethod
    def from_section(cls, sec: Section) -> HttpLimits:
        return cls(int(sec.int("max_connections", default=64, minimum=1, maximum=100_000)),
                   int(sec.int("max_body", default=65536, minimum=1024, maximum=16 << 20)),
                   float(sec.number("read_timeout", default=5.0, minimum=0.1, maximum=300)))


@dataclass(frozen=True, slots=True)
class Head:
    method: str
    path: str
    query: str
    length: int               # Content-Length, 0 when absent
    bearer: str               # the token of "Authorization: Bearer <token>", "" when none
    expect_continue: bool
    cookie: str = ""          # the Cookie header (the console's session), "" when none
    origin: str = ""          # the Origin header a browser sends with POST and DELETE
    host: str = ""            # the Host header (compared with Origin)
    csrf: str = ""            # X-Sipguard-CSRF: the console's scripts send their session's token


class HeadError(Exception):
    """A request head we cannot take; ``status`` is the answer (400, 411)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def parse_head(data: bytes) -> Head:
    """The request line and the headers that matter here, from the head without its final
    blank line. Anything ambiguous (two lengths, chunked bodies, folded lines) is refused."""
    lines = data.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[0].isalpha() \
            or not parts[0].isascii():
        raise HeadError(400, "malformed request line; expected METHOD /path HTTP/1.1")
    method, target = parts[0], parts[1]
    if not target.startswith("/"):
        raise HeadError(400, "the request target must be a path (/traceback?...)")
    path, _, query = target.partition("?")
    lengths: set[int] = set()
    bearer = ""
    expect = False
    single: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HeadError(400, "malformed header line (folded, or no name:value)")
        name = name.lower()
        value = value.strip()
        if name == "content-length":
            if not (value.isascii() and value.isdigit() and len(value) <= 12):
                raise HeadError(400, "bad Content-Length")
            lengths.add(int(value))
        elif name == "transfer-encoding":
            raise HeadError(411, "send the body with Content-Length (no Transfer-Encoding)")
        elif name == "authorization" and value[:7].lower() == "bearer ":
            bearer = value[7:].strip()
        elif name == "expect" and value.lower() == "100-continue":
            expect = True
        elif name in SINGLE:
            if name in single:          # two Cookie or Origin headers: which one counts is ambiguous
                raise HeadError(400, f"{name} header given twice")
            single[name] = value
    if len(lengths) > 1:
        raise HeadError(400, "conflicting Content-Length headers")
    return Head(method, path, query, lengths.pop() if lengths else 0, bearer, expect,
                single.get("cookie", ""), single.get("origin", ""), single.get("host", ""),
                single.get("x-sipguard-csrf", ""))


SINGLE = frozenset(("cookie", "origin", "host", "x-sipguard-csrf"))
# On every answer: nothing of the admin listener is framed, sniffed, cached or runs a
# script from anywhere but itself (the console's pages, but the JSON answers too).
SECURITY_HEADERS = ("X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n"
                    "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                    "form-action 'self'\r\nReferrer-Policy: same-origin\r\nCache-Control: no-store\r\n")


def error(message: str, parameter: str | None = None) -> bytes:
    doc = {"error": message} if parameter is None else {"error": message, "parameter": parameter}
    return json.dumps(doc).encode()


def response(reply: Reply, head_only: bool = False) -> bytes:
    status, ctype, body = reply[0], reply[1], reply[2]
    extra = "".join(f"{name}: {value}\r\n" for name, value in (reply[3] if len(reply) == 4 else ())
                    if not _BREAKS.intersection(name + value))
    challenge = 'WWW-Authenticate: Bearer realm="sipguard"\r\n' if status == 401 else ""
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: {ctype}\r\n"
            f"{challenge}{extra}{SECURITY_HEADERS}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + (b"" if head_only else body)


_BREAKS = frozenset("\r\n\0")     # a header value never splits the answer


class Gate(Protocol):
    limits: HttpLimits

    def admit(self, head: Head) -> Reply | None:
        """None to read the body and call ``handle``; otherwise the refusal to send."""

    async def handle(self, head: Head, body: bytes) -> Reply: ...


class Listener:
    """The listening sockets, the open connections and what they made us read."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.connections: set[Connection] = set()
        self.bytes_read = 0          # every byte taken from a client socket (tests bound it)
        self.refused = 0             # connections turned away at max_connections
        self.server: asyncio.Server | None = None
        self._warned = 0.0

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Listen on ``host:port``, or on ``sock`` already bound and listening (the supervisor
        binds before it forks its workers: observe/http.py ``bind_http``)."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            self.server = await loop.create_server(lambda: Connection(self), sock=sock)
        else:
            self.server = await loop.create_server(lambda: Connection(self), host, port)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            for conn in list(self.connections):
                conn.abort()
            await self.server.wait_closed()
            self.server = None

    def busy(self) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._warned > 60:   # a flood must not flood the log
            self._warned = now
            log.warning("admin HTTP: %d connections open (http.max_connections): new ones get 503",
                        len(self.connections) - 1)


class Connection(asyncio.BufferedProtocol):
    """One request: head into an ``MAX_HEAD`` buffer, the gate's verdict, then the body."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray(MAX_HEAD)
        self.filled = 0
        self.head: Head | None = None       # set once the gate let the request through
        self.answered = False
        self.lingered = 0
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)   # uvloop's is not a subclass
        listener = self.listener
        listener.connections.add(self)
        if len(listener.connections) > listener.gate.limits.max_connections:
            listener.busy()
            self.reply((503, JSON, error("too many connections to the admin listener; try again")), linger=False)
            return
        self.timer = asyncio.get_running_loop().call_later(listener.gate.limits.read_timeout, self._expired)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.answered:
            return memoryview(_SCRATCH)
        return memoryview(self.buf)[self.filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self.listener.bytes_read += nbytes
        if self.answered:                    # lingering: dropped
            self.lingered += nbytes
            if self.lingered > LINGER_BYTES:
                self.close()
            return
        start = max(0, self.filled - 3)
        self.filled += nbytes
        if self.head is None:
            end = self.buf.find(b"\r\n\r\n", start, self.filled)
            if end >= 0:
                self._judge(end)
            elif self.filled == len(self.buf):
                self.reply((431, JSON, error(f"request head over {MAX_HEAD} bytes")))
        elif self.filled == len(self.buf):
            self._dispatch()

    def _judge(self, end: int) -> None:
        assert self.transport is not None
        self.transport.pause_reading()
        try:
            head = parse_head(bytes(self.buf[:end]))
        except HeadError as exc:
            self.reply((exc.status, JSON, error(str(exc))))
            return
        refusal = self.listener.gate.admit(head)
        if refusal is not None:
            self.reply(refusal)
            return
        self.head = head
        early = self.buf[end + 4:self.filled][:head.length]   # body bytes that came with the head
        self.buf = bytearray(head.length)
        self.buf[:len(early)] = early
        self.filled = len(early)
        if self.filled == head.length:
            self._dispatch()
            return
        if head.expect_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.transport.resume_reading()

    def _dispatch(self) -> None:
        assert self.transport is not None and self.head is not None
        self.transport.pause_reading()
        if self.timer is not None:
            self.timer.cancel()
        self.task = asyncio.get_running_loop().create_task(self._run(self.head, bytes(self.buf)))

    async def _run(self, head: Head, body: bytes) -> None:
        try:
            reply = await self.listener.gate.handle(head, body)
        except Exception:
            log.exception("HTTP handler failed")
            reply = 500, JSON, error("internal error")
        self.reply(reply)

    def _expired(self) -> None:
        if self.idle:
            # not one byte of a request: closed without a word. An answer written here would
            # sit in the socket, and a client that sends its next request on this connection
            # (a browser's preconnect, a keep-alive pool) would read it as that request's answer
            self.close()
            return
        self.reply((408, JSON, error("request not received in time (http.read_timeout)")))

    @property
    def idle(self) -> bool:
        """Nothing of a request received yet (RFC 9112 9.5: a server may close a connection
        at any time; a request begun and not finished in time gets its 408, RFC 9110 15.5.9)."""
        return self.head is None and self.filled == 0 and not self.answered

    def reply(self, reply: Reply, linger: bool = True) -> None:
        """Answer, then linger: half-close and drop what the client still sends (at most
        ``LINGER_BYTES``, for ``LINGER_TIME``) until it closes. Closing a socket with unread
        bytes in it sends a reset, and the reset can destroy the answer (a 401, a 413) before
        the client reads it. Dropped bytes go to one shared scratch buffer: nothing is kept."""
        transport = self.transport
        if self.answered or transport is None or transport.is_closing():
            return
        self.answered = True
        if self.timer is not None:
            self.timer.cancel()
        transport.write(response(reply, self.head is not None and self.head.method == "HEAD"))
        if not linger or not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self.buf, self.filled = _SCRATCH, 0
        transport.resume_reading()
        self.timer = asyncio.get_running_loop().call_later(LINGER_TIME, self.close)

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.timer is not None:
            self.timer.cancel()
        self.transport.close()
        self.timer = asyncio.get_running_loop().call_later(WRITE_TIMEOUT, self.abort)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        if self.answered or self.idle:
            self.close()            # done, or a client that leaves without asking anything
        elif self.task is None:
            self.reply((400, JSON, error("incomplete request")))
        return True        # keep the socket open for the answer of a request already complete

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()
