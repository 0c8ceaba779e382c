"""asyncio adapters: sockets in, bytes to the ProxyCore; bytes out. No SIP logic here.

UDP: the listening sockets (shared by workers with SO_REUSEPORT) receive from upstream and
send responses back from the address the request reached. Requests we forward leave from
a private per-process socket whose port is in our Via, so their responses come back to
the process that holds the transaction (the kernel spreads SO_REUSEPORT traffic by
4-tuple, which would otherwise hand a response to another worker).
TCP: one connection object per peer, framed by Content-Length; outgoing connections are
pooled per destination and reused for the responses that come back on them.
UDP sockets are read and written by ``UdpSocket`` (``sipguard/proxy/_udp.c``: source and
destination addresses cached, no context copied per datagram) when that extension is built
and the address is an IP literal; otherwise by the event loop's datagram transport.
Either way the ``UdpEndpoint`` protocol gets the same calls.
TLS: the same connection objects over asyncio's TLS transport (``sipguard/tls.py`` makes the
contexts). A message for any other transport (SCTP, WebSocket) is dropped and counted.
Stream listeners are accepted here (``Acceptor``), so a connection is admitted by
``proxy/connlimits.py`` before anything is made for it (TLS: before the handshake); the
same module times out the ones that stop making progress.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sipguard.addresses import Listen
from sipguard.proxy.connlimits import ConnectionLimits
from sipguard.sip import SipParseError, StreamFramer
from sipguard.tls import TlsConfig, client_context, server_context

try:  # UDP in C (sipguard/proxy/_udp.c) when built; the event loop's transport otherwise
    from sipguard.proxy import _udp as _udp_c
except ImportError:  # pragma: no cover - the pure-Python tree
    _udp_c = None  # type: ignore[assignment]

log = logging.getLogger("sipguard.transport")
# UdpSocket is used when the extension is there, unless SIPGUARD_UDP=loop asks for the event
# loop's transport (a way back without a rebuild; the tests run both)
OWN_UDP: bool = _udp_c is not None and os.environ.get("SIPGUARD_UDP", "") != "loop"
# a send the kernel could not take now (its buffer full): queued, sent when the socket is writable
_AGAIN = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR))
UDP_BACKLOG = 4 << 20        # bytes queued on one UDP socket at most; past it a datagram is dropped

Receive = Callable[[bytes, tuple[str, int], str, object], None]
_KEEPALIVE = frozenset(b"\r\n\x00 ")
MAX_TCP_BUFFER = 1 << 20


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, receive: Receive, index: int = -1) -> None:
        self.receive = receive
        self.index = index        # position among the listening sockets; -1: a private socket
        self.transport: asyncio.DatagramTransport | None = None
        self.family = 0           # address family of the socket, once made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.family = sock.family if sock is not None else 0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # keep-alive pings (CRLF, empty, STUN-less NAT keepalives); a SIP message starts with a
        # letter, so only a datagram starting with white space or NUL is looked at whole
        if len(data) < 4 or (data[0] in _KEEPALIVE and not data.strip(b"\r\n\x00 ")):
            return
        # (host, port): uvloop gives IPv6 sources as (host, port, flowinfo, scope_id)
        self.receive(data, addr if len(addr) == 2 else (addr[0], addr[1]), "udp", self)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)


class UdpSocket:
    """The transport of a ``UdpEndpoint`` whose socket ``_udp`` reads and writes (module doc):
    the loop calls a ``_udp.Reader`` when the socket is readable, which hands each datagram
    to the endpoint's ``datagram_received`` as uvloop's transport would; ``sendto`` sends at
    once. A datagram the kernel cannot take now (its buffer full) waits here, in order, until
    the socket is writable, up to UDP_BACKLOG bytes; past it, it is dropped (UDP: the sender
    retransmits), counted in ``dropped`` and logged once while the backlog lasts. A send that
    fails otherwise goes to ``error_received``, as the loop's transport reports it."""

    def __init__(self, sock: socket.socket, endpoint: UdpEndpoint) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.family = int(sock.family)
        self.endpoint = endpoint
        self.closing = False
        self.backlog: deque[tuple[bytes, tuple[str, int]]] = deque()
        self.queued = 0          # bytes in the backlog
        self.dropped = 0         # datagrams dropped because the backlog was full (cumulative)
        self.warned = False      # this backlog's drops are logged
        self.loop = asyncio.get_running_loop()
        self.reader = _udp_c.Reader(self.fd, self.family, endpoint.datagram_received, endpoint.error_received)
        endpoint.connection_made(self)  # type: ignore[arg-type]
        self.loop.add_reader(self.fd, self.reader)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        if name == "sockname":
            return self.sock.getsockname()
        return default

    def is_closing(self) -> bool:
        return self.closing

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.closing or not data:
            return
        if not self.backlog:
            err: int = _udp_c.send(self.fd, self.family, data, addr)
            if err == 0:
                return
            if err not in _AGAIN:
                self.endpoint.error_received(OSError(err, os.strerror(err)))
                return
        if self.queued + len(data) > UDP_BACKLOG:
            if not self.warned:
                self.warned = True
                log.warning("UDP socket %s: the kernel takes no more datagrams; dropping them while "
                            "%d bytes wait", self.get_extra_info("sockname"), self.queued)
            self.dropped += 1
            return
        if not self.backlog:
            self.loop.add_writer(self.fd, self._flush)
        self.backlog.append((data, addr))
        self.queued += len(data)

    def _flush(self) -> None:
        backlog = self.backlog
        while backlog:
            data, addr = backlog[0]
            err: int = _udp_c.send(self.fd, self.family, data, addr)
            if err in _AGAIN:
                return
            backlog.popleft()
            self.queued -= len(data)
            if err:
                self.endpoint.error_received(OSError(err, os.strerror(err)))
        self.warned = False
        self.loop.remove_writer(self.fd)

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.reader.close()
        self.loop.remove_reader(self.fd)
        if self.backlog:
            self.loop.remove_writer(self.fd)
            self.backlog.clear()
            self.queued = 0
        self.sock.close()
        self.loop.call_soon(self.endpoint.connection_lost, None)


class TcpConnection(asyncio.Protocol):
    """One TCP or TLS connection (``name``: "tcp" | "tls"), inbound or outbound. An inbound
    one was admitted by the ``Acceptor`` and holds a place in ``Transports.limits`` until it
    ends; ``active`` and ``head_since`` are what the timeouts read (proxy/connlimits.py)."""

    def __init__(self, registry: Transports, max_size: int, name: str = "tcp") -> None:
        self.registry = registry
        self.name = name
        self.pool = registry.streams[name]
        self.framer = StreamFramer(max_size)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.ready = asyncio.get_running_loop().create_future()
        self.backlog: list[bytes] = []
        self.counted = False          # holds a place in the limits (released once, when it ends)
        self.active = time.monotonic()
        self.head_since = 0.0         # when the unfinished message (or TLS handshake) began; 0: none

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a peer that reset before we looked has no peername: an accepted connection knows its
        # peer from accept(); anything else has nobody to talk to and is closed quietly (it
        # used to raise here, a traceback in the log for every such connection)
        peer = transport.get_extra_info("peername") or (self.peer if self.peer[0] else None)
        if peer is None:
            transport.close()
            self.connection_lost(None)
            return
        self._made(transport, peer)

    def _made(self, transport: asyncio.BaseTransport, peer: Any) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = (peer[0], peer[1])
        self.active = time.monotonic()
        self.pool[self.peer] = self
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for data in self.backlog:
            self.transport.write(data)  # type: ignore[union-attr]
        self.backlog.clear()
        if not self.ready.done():
            self.ready.set_result(True)

    def data_received(self, data: bytes) -> None:
        now = self.active = time.monotonic()
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            log.info("closing %s connection from %s:%s: %s", self.name, self.peer[0], self.peer[1], exc.reason)
            if self.transport is not None:
                self.transport.close()
            return
        # the head timeout runs from the first byte of a message; any message completed is progress
        if not self.framer.buffered:
            self.head_since = 0.0
        elif messages or not self.head_since:
            self.head_since = now
        for message in messages:
            self.registry.receive(message, self.peer, self.name, self)
        error = self.framer.error
        if error is not None and self.transport is not None:
            # the good messages before the bad bytes were delivered; the stream cannot be resynced
            log.info("closing %s connection from %s:%s: %s", self.name, self.peer[0], self.peer[1], error.reason)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pool.get(self.peer) is self:
            del self.pool[self.peer]
        self._release()
        if not self.ready.done():
            self.ready.set_result(False)

    def _release(self) -> None:
        if self.counted and self.registry.limits is not None:
            self.counted = False
            self.registry.limits.release(self.peer[0])

    def expire(self, limit: str) -> None:
        """A timeout passed (proxy/connlimits.py): close now, without waiting for the peer."""
        if self.pool.get(self.peer) is self:
            del self.pool[self.peer]
        if self.transport is not None:
            self.transport.abort()
        self._release()

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.backlog.append(data)
        elif not self.transport.is_closing():
            if self.transport.get_write_buffer_size() > MAX_TCP_BUFFER:
                log.warning("%s peer %s:%s is not reading; closing", self.name, *self.peer)
                self.transport.close()
                return
            self.active = time.monotonic()
            self.transport.write(data)


class Acceptor:
    """One TCP or TLS listening socket, accepted from here rather than by ``create_server``,
    so a connection is admitted (``Transports.limits``) before a transport, a protocol or a
    TLS handshake is made for it: a refused source costs an accept and a close."""

    BATCH = 64   # connections accepted per loop turn (the other sockets get their turn)

    def __init__(self, registry: Transports, sock: socket.socket, name: str) -> None:
        self.registry = registry
        self.sock = sock
        self.name = name
        self.paused: asyncio.TimerHandle | None = None

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self.ready)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self.paused is not None:
            self.paused.cancel()
        loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def ready(self) -> None:
        registry, limits = self.registry, self.registry.limits
        for _ in range(self.BATCH):
            try:
                sock, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors (EMFILE, ENFILE), or memory: try again in a second
                log.warning("%s accept failed: %s; accepting again in 1 s", self.name.upper(), exc)
                loop = asyncio.get_running_loop()
                loop.remove_reader(self.sock.fileno())
                self.paused = loop.call_later(1.0, self.start)
                return
            if limits is not None and not limits.admit(peer[0], self.name, time.monotonic()):
                sock.close()
                continue
            registry.accepted(sock, (peer[0], peer[1]), self.name, counted=limits is not None)


@dataclass(slots=True)
class TransportCounters:
    """Cumulative, exported as sipguard_sip_events{event=<field>}."""

    unsupported_transport: int = 0   # messages for a transport we do not speak (SCTP, WS...)


class Transports:
    """The Sender the ProxyCore talks to, plus the listening sockets of one process."""

    def __init__(self, listen: tuple[Listen, ...], receive: Receive, max_size: int,
                 advertise: str | None = None, udp_socks: dict[int, socket.socket] | None = None,
                 tls: TlsConfig | None = None, limits: ConnectionLimits | None = None) -> None:
        self.listen = listen
        self.limits = limits                 # admission and timeouts of stream connections (None: none)
        self._sweeper: asyncio.TimerHandle | None = None
        self.udp_socks = udp_socks or {}   # listen index -> a UDP socket made (and bound) for us
        self.receive = receive
        self.max_size = max_size
        self.advertise = advertise
        self.udp: list[UdpEndpoint] = []
        self.udp_out: dict[int, UdpEndpoint] = {}     # address family -> private socket
        self.out_sent_by: dict[int, str] = {}
        # tcp | tls -> the connections by peer address; a transport not here is not spoken
        self.streams: dict[str, dict[tuple[str, int], TcpConnection]] = {"tcp": {}, "tls": {}}
        self.tls_config = tls or TlsConfig()
        self._client_ctx: ssl.SSLContext | None = None   # made at the first TLS next hop
        self._server_ctx: ssl.SSLContext | None = None   # the current one (reload_tls swaps it)
        self.acceptors: list[Acceptor] = []
        self.local: set[tuple[str, int]] = set()
        self._sent_by: dict[str, str] = {}               # tcp | tls -> our first listener of it
        self.counters = TransportCounters()

    async def start(self, reuse_port: bool) -> None:
        # the private sockets first: a listening socket delivers at once (a restarted worker's
        # reuseport socket already holds queued requests), and what they forward must leave
        # from the socket in our Via, or the responses go astray
        for addr in self.listen:
            family = family_of(addr.host)
            if addr.transport == "udp" and family not in self.udp_out:
                out = await _udp_endpoint(UdpEndpoint(self.receive), addr.host, 0, family, False)
                self.udp_out[family] = out
                port = out.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
                self.out_sent_by[family] = _hostport(self._advertised(addr.host), port)
        for position, addr in enumerate(self.listen):
            family = family_of(addr.host)
            self.local.add((addr.host, addr.port))
            if addr.transport == "udp":
                proto = await _udp_endpoint(UdpEndpoint(self.receive, len(self.udp)), addr.host, addr.port,
                                            family, reuse_port, self.udp_socks.get(position))
                _grow_receive_buffer(proto)
                self.udp.append(proto)
            else:  # tcp or tls: TLS is the same stream server over asyncio's TLS transport
                if addr.transport == "tls":
                    self._tls_server()  # made (and checked) now, not at the first connection
                acceptor = Acceptor(self, _stream_listener(addr, family, reuse_port), addr.transport)
                acceptor.start()
                self.acceptors.append(acceptor)
                if addr.transport not in self._sent_by:
                    self._sent_by[addr.transport] = _hostport(self._advertised(addr.host), addr.port)
        if "tcp" not in self._sent_by:
            self._sent_by["tcp"] = next(iter(self.out_sent_by.values()), "127.0.0.1:5060")
        if self.limits is not None:
            self._sweep()

    def accepted(self, sock: socket.socket, peer: tuple[str, int], name: str, counted: bool) -> None:
        """An admitted connection: its transport (TLS after a handshake under the head timeout)."""
        loop = asyncio.get_running_loop()
        conn = TcpConnection(self, self.max_size, name)
        conn.peer, conn.counted = peer, counted
        ctx = self._tls_server() if name == "tls" else None
        timeout = self.limits.settings.head_timeout if self.limits is not None and ctx is not None else None

        async def made() -> None:
            try:
                await loop.connect_accepted_socket(lambda: conn, sock, ssl=ctx, ssl_handshake_timeout=timeout)
            except Exception as exc:  # a refused certificate, a handshake timeout, a reset: this peer only
                log.info("%s connection from %s:%s failed: %s", name.upper(), peer[0], peer[1],
                         exc or type(exc).__name__)
                sock.close()
                conn._release()

        task = loop.create_task(made())
        _background.add(task)
        task.add_done_callback(_background.discard)

    def _sweep(self) -> None:
        """Close the stream connections a timeout has passed for, a few times a second."""
        assert self.limits is not None
        self.limits.sweep([c for pool in self.streams.values() for c in pool.values()], time.monotonic())
        self._sweeper = asyncio.get_running_loop().call_later(self.limits.interval(), self._sweep)

    def open_connections(self) -> dict[str, int]:
        """Open stream connections by transport (tcp, tls)."""
        return {name: len(pool) for name, pool in self.streams.items()}

    def _tls_server(self) -> ssl.SSLContext:
        """The context the TLS servers are made with. Each handshake switches to the current
        one (``sni_callback``, called for every ClientHello), so ``reload_tls`` takes effect
        for the next connection without restarting the servers."""
        if self._server_ctx is None:
            self._server_ctx = front = server_context(self.tls_config)

            def current(conn: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
                if self._server_ctx is not None and self._server_ctx is not ctx:
                    conn.context = self._server_ctx

            front.sni_callback = current
        return self._server_ctx

    def reload_tls(self, cfg: TlsConfig) -> None:
        """SIGHUP: new certificates and trust for the TLS connections made from now on (open
        ones keep theirs). The caller has validated ``cfg`` (load_config builds the contexts)."""
        self.tls_config = cfg
        self._client_ctx = None
        if self._server_ctx is not None and cfg.cert is not None:
            self._server_ctx = server_context(cfg)

    def _advertised(self, host: str) -> str:
        if self.advertise:
            return self.advertise.split(":")[0] if self.advertise.count(":") == 1 else self.advertise
        if host in ("0.0.0.0", "::"):
            return socket.gethostbyname(socket.gethostname())
        return host

    # -- Sender ------------------------------------------------------------------------------
    def via_sent_by(self, transport: str) -> str:
        if transport == "udp":
            return self.out_sent_by.get(socket.AF_INET) or next(iter(self.out_sent_by.values()),
                                                                self._sent_by.get("tcp", ""))
        return self._sent_by.get(transport) or self._sent_by.get("tcp", "")

    def is_local(self, host: str, port: int) -> bool:
        return (host, port) in self.local or any(
            port == p and h in ("0.0.0.0", "::") for h, p in self.local)

    def send_to_source(self, data: bytes, addr: tuple[str, int], transport: str, conn: object) -> None:
        if transport == "udp":
            endpoint = conn if isinstance(conn, UdpEndpoint) else self._udp_for(addr[0], listening=True)
            if endpoint is not None:
                endpoint.sendto(data, addr)
            return
        pool = self.streams.get(transport)
        if pool is None:
            self._drop(transport, addr)
            return
        stream = conn if isinstance(conn, TcpConnection) and conn.transport is not None \
            and not conn.transport.is_closing() else pool.get(addr)
        if stream is not None:
            stream.write(data)
        else:
            self._connect(addr, transport).write(data)

    def send_to(self, data: bytes, addr: tuple[str, int], transport: str) -> None:
        if transport == "udp":
            endpoint = self._udp_for(addr[0], listening=False)
            if endpoint is not None:
                endpoint.sendto(data, addr)
            return
        pool = self.streams.get(transport)
        if pool is None:
            self._drop(transport, addr)
            return
        conn = pool.get(addr)
        if conn is None or conn.transport is None and conn.ready.done():
            conn = self._connect(addr, transport)
        conn.write(data)

    def _drop(self, transport: str, addr: tuple[str, int]) -> None:
        self.counters.unsupported_transport += 1  # counted (sip_events), not logged each
        log.debug("not sent to %s:%s: transport %r is not one sipguard speaks (udp, tcp, tls)",
                  addr[0], addr[1], transport)

    def _udp_for(self, host: str, listening: bool) -> UdpEndpoint | None:
        family = family_of(host)
        if not listening and family in self.udp_out:
            return self.udp_out[family]
        for endpoint in self.udp:
            if endpoint.transport is not None and endpoint.family == family:
                return endpoint
        return self.udp_out.get(family)

    def _connect(self, addr: tuple[str, int], transport: str = "tcp") -> TcpConnection:
        """Open a TCP or TLS connection; writes queue until it is up (dropped if it fails)."""
        loop = asyncio.get_running_loop()
        conn = TcpConnection(self, self.max_size, transport)
        conn.pool[addr] = conn
        ctx: ssl.SSLContext | None = None
        if transport == "tls":
            if self._client_ctx is None:
                self._client_ctx = client_context(self.tls_config)
            ctx = self._client_ctx
        name = (self.tls_config.server_name or addr[0]) if ctx is not None else None

        async def connect() -> None:
            try:
                await loop.create_connection(lambda: conn, addr[0], addr[1], ssl=ctx, server_hostname=name)
            except OSError as exc:  # ssl.SSLError (a refused certificate) is one too
                log.warning("%s connect to %s:%s failed: %s", transport.upper(), addr[0], addr[1], exc)
                if conn.pool.get(addr) is conn:
                    del conn.pool[addr]
                conn.backlog.clear()
                if not conn.ready.done():
                    conn.ready.set_result(False)

        task = loop.create_task(connect())
        _background.add(task)
        task.add_done_callback(_background.discard)
        return conn

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for acceptor in self.acceptors:
            acceptor.close()
        for endpoint in [*self.udp, *self.udp_out.values()]:
            if endpoint.transport is not None:
                endpoint.transport.close()
        for conn in [c for pool in self.streams.values() for c in pool.values()]:
            if conn.transport is not None:
                conn.transport.close()


_background: set[asyncio.Task[None]] = set()
UDP_RCVBUF = 4 << 20


async def _udp_endpoint(endpoint: UdpEndpoint, host: str, port: int, family: int, reuse_port: bool,
                        sock: socket.socket | None = None) -> UdpEndpoint:
    """``endpoint`` on a UDP socket: ``sock`` (the supervisor's reuseport group: kernel
    steering) or one bound here to (host, port). Read and written by ``UdpSocket`` when the
    extension is built and the host is an IP literal, else by the loop's datagram transport."""
    loop = asyncio.get_running_loop()
    if OWN_UDP and (sock is not None or _ip_literal(host)):
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
        UdpSocket(sock, endpoint)
        return endpoint
    if sock is not None:
        await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
    else:
        await loop.create_datagram_endpoint(lambda: endpoint, local_addr=(host, port), family=family,
                                            reuse_port=reuse_port)
    return endpoint


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _grow_receive_buffer(endpoint: UdpEndpoint) -> None:
    """A burst of INVITEs must wait in the kernel, not be dropped (a drop costs a 500 ms
    retransmission and snowballs). The kernel caps the size at net.core.rmem_max."""
    sock = endpoint.transport.get_extra_info("socket") if endpoint.transport else None
    if sock is not None:
        grow_buffer(sock, (socket.SO_RCVBUF,), UDP_RCVBUF)


def _stream_listener(addr: Listen, family: int, reuse_port: bool) -> socket.socket:
    """A listening TCP socket (what ``create_server`` would make), accepted by an ``Acceptor``."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((addr.host, addr.port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def family_of(host: str) -> int:
    """The address family of a host as sipguard writes it (an IPv6 address has a colon)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reuseport_group(listen: Listen, members: int) -> list[socket.socket]:
    """``members`` UDP sockets bound to one address with SO_REUSEPORT, in order: socket i is
    index i of the kernel's reuseport group (what a reuseport program's answer selects)."""
    family = family_of(listen.host)
    group: list[socket.socket] = []
    try:
        for _ in range(members):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            group.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind((listen.host, listen.port))
    except OSError:
        for sock in group:
            sock.close()
        raise
    return group


def grow_buffer(sock: socket.socket, options: tuple[int, ...], size: int) -> bool:
    """Set a socket buffer size with the first of ``options`` the kernel accepts."""
    for option in options:
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            return True
        except OSError as exc:
            log.debug("could not set socket buffer option %d to %d: %s", option, size, exc)
    return False


def _hostport(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"
