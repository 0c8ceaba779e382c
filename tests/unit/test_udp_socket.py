"""The UDP sockets read and written beside the event loop (sipguard/proxy/_udp.c and
``transport.UdpSocket``), with real sockets on loopback: what reaches the endpoint is what the
loop's datagram transport would have handed it, sends reach the address asked for, and a
send the kernel cannot take waits in order."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.proxy import transport
from sipguard.proxy.transport import UdpEndpoint, UdpSocket

_udp: Any = transport._udp_c
pytestmark = pytest.mark.skipif(_udp is None, reason="sipguard/proxy/_udp.c is not built (make native)")
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def bound(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    return sock


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the socket read by the Reader, a peer that sends to it)"""
    ours, peer = bound(), bound()
    ours.setblocking(False)
    yield ours, peer
    ours.close()
    peer.close()


def read_all(reader: Any) -> None:
    while True:
        before = len(reader.got)
        reader()
        if len(reader.got) == before:
            return


class Collect:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self.errors: list[Exception] = []

    def deliver(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, addr))

    def error(self, exc: Exception) -> None:
        self.errors.append(exc)


def reader_of(sock: socket.socket, sink: Collect) -> Any:
    reader = _udp.Reader(sock.fileno(), sock.family, sink.deliver, sink.error)
    return reader


def drain(reader: Any, sink: Collect, count: int) -> None:
    for _ in range(1000):
        if len(sink.got) >= count:
            return
        reader()
    raise AssertionError(f"{len(sink.got)} of {count} datagrams")


def keepalive(data: bytes) -> bool:
    """What UdpEndpoint.datagram_received drops (its own definition)."""
    return len(data) < 4 or (data[0] in b"\r\n\x00 " and not data.strip(b"\r\n\x00 "))


def test_datagrams_arrive_in_order_with_their_source(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    sink = Collect()
    reader = reader_of(ours, sink)
    other = bound()
    messages = [f"OPTIONS sip:x SIP/2.0 {n}".encode() for n in range(100)]  # more than ROUNDS
    for n, message in enumerate(messages):
        (peer if n % 2 else other).sendto(message, ours.getsockname())
    drain(reader, sink, 100)
    assert [data for data, _ in sink.got] == messages
    ports = {peer.getsockname()[1], other.getsockname()[1]}
    assert {addr for _, addr in sink.got} == {("127.0.0.1", port) for port in ports}
    # one peer's datagrams share one source tuple (the cache), equal to a fresh one
    tuples = {id(addr) for data, addr in sink.got if addr[1] == peer.getsockname()[1]}
    assert len(tuples) == 1
    assert reader() is None and not sink.errors
    other.close()


def test_one_call_reads_a_bounded_number() -> None:
    ours, peer = bound(), bound()
    ours.setblocking(False)
    sink = Collect()
    reader = reader_of(ours, sink)
    for n in range(_udp.BATCH * _udp.ROUNDS + 5):
        peer.sendto(b"OPTIONS %d" % n, ours.getsockname())
    reader()
    assert len(sink.got) == _udp.BATCH * _udp.ROUNDS          # the rest at the loop's next turn
    reader()
    assert len(sink.got) == _udp.BATCH * _udp.ROUNDS + 5
    ours.close()
    peer.close()


def test_ipv6_sources_are_host_and_port() -> None:
    try:
        ours, peer = bound(socket.AF_INET6), bound(socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    ours.setblocking(False)
    sink = Collect()
    reader = reader_of(ours, sink)
    peer.sendto(b"OPTIONS sip:x SIP/2.0", ours.getsockname())
    drain(reader, sink, 1)
    assert sink.got == [(b"OPTIONS sip:x SIP/2.0", ("::1", peer.getsockname()[1]))]
    ours.close()
    peer.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(
    [b"", b"\r\n", b"\r\n\r\n", b"\x00\x00\x00\x00", b"    ", b" \r\nX", b"\r\nINVITE", b"SIP/2.0 200 OK"])),
    min_size=1, max_size=20))
def test_keepalives_are_dropped_as_the_endpoint_drops_them(datagrams: list[bytes]) -> None:
    ours, peer = bound(), bound()
    ours.setblocking(False)
    try:
        sink = Collect()
        reader = reader_of(ours, sink)
        for data in datagrams:
            peer.sendto(data, ours.getsockname())
        peer.sendto(b"END OF TEST", ours.getsockname())      # all before it have arrived with it
        expected = [d for d in datagrams if not keepalive(d)] + [b"END OF TEST"]
        drain(reader, sink, len(expected))
        assert [data for data, _ in sink.got] == expected
    finally:
        ours.close()
        peer.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")   # the second, reported
def test_an_exception_from_deliver_leaves_the_batch_whole(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    got: list[bytes] = []

    def deliver(data: bytes, addr: tuple[str, int]) -> None:
        got.append(data)
        if data.startswith(b"BAD"):
            raise ValueError(data.decode())

    reader = _udp.Reader(ours.fileno(), ours.family, deliver, lambda exc: None)
    for data in (b"GOOD 1", b"BAD 1", b"GOOD 2", b"BAD 2", b"GOOD 3"):
        peer.sendto(data, ours.getsockname())
    with pytest.raises(ValueError, match="BAD 1"):     # the first, after the batch
        for _ in range(100):
            reader()
    for _ in range(10):
        reader()
    assert got == [b"GOOD 1", b"BAD 1", b"GOOD 2", b"BAD 2", b"GOOD 3"]


def test_a_failed_read_goes_to_error() -> None:
    sock = bound()
    sink = Collect()
    reader = reader_of(sock, sink)
    sock.close()                                   # the fd is gone: EBADF
    assert reader() is None
    assert [type(e) for e in sink.errors] == [OSError] and sink.errors[0].errno == errno.EBADF


def test_send_reaches_the_address_asked_for(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    peer.settimeout(2)
    host, port = peer.getsockname()
    assert _udp.send(ours.fileno(), socket.AF_INET, b"one", (host, port)) == 0
    assert _udp.send(ours.fileno(), socket.AF_INET, b"two", ("".join([host]), int(str(port)))) == 0  # equal, not same
    assert [peer.recvfrom(100) for _ in range(2)] == [(b"one", ours.getsockname()), (b"two", ours.getsockname())]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=400))
def test_send_cache_never_mixes_destinations(order: list[int]) -> None:
    # more destinations over the run than the cache has places: each datagram reaches its own
    sender = bound()
    targets = [bound() for _ in range(8)]
    try:
        for n, i in enumerate(order):
            assert _udp.send(sender.fileno(), socket.AF_INET, b"%d %d" % (n, i), targets[i].getsockname()) == 0
        for i, target in enumerate(targets):
            target.setblocking(False)
            got = []
            while True:
                try:
                    got.append(target.recv(100))
                except BlockingIOError:
                    break
            assert got == [b"%d %d" % (n, j) for n, j in enumerate(order) if j == i]
    finally:
        sender.close()
        for target in targets:
            target.close()


def test_send_refuses_what_is_not_an_address_of_its_family(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    fd = ours.fileno()
    for addr in (("localhost", 5060), ("::1", 5060), ("1.2.3.4\x00x", 5060), ("999.1.1.1", 5060)):
        with pytest.raises(ValueError, match="DNS lookup"):
            _udp.send(fd, socket.AF_INET, b"x", addr)
    with pytest.raises(ValueError):
        _udp.send(fd, socket.AF_INET6, b"x", ("127.0.0.1", 5060))
    for bad in (("127.0.0.1",), ["127.0.0.1", 5060], (b"127.0.0.1", 5060), ("127.0.0.1", "5060")):
        with pytest.raises(TypeError):
            _udp.send(fd, socket.AF_INET, b"x", bad)
    with pytest.raises(OverflowError):
        _udp.send(fd, socket.AF_INET, b"x", ("127.0.0.1", 70000))
    with pytest.raises(TypeError):
        _udp.send(fd, socket.AF_INET, "text", ("127.0.0.1", 5060))
    closed = bound()
    closed.close()
    assert _udp.send(closed.fileno() if closed.fileno() >= 0 else 10**6, socket.AF_INET, b"x",
                     ("127.0.0.1", 5060)) == errno.EBADF


# -- UdpSocket: the endpoint's transport ------------------------------------------------------
class Endpoint:
    """A real UdpEndpoint (compiled: not subclassed) and what it received."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self.proto = UdpEndpoint(lambda data, addr, name, conn: self.got.append((data, addr)))


def errors_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("udp error")]


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_udp_socket_serves_an_endpoint_on_the_loop(loop_name: str) -> None:
    async def main() -> None:
        endpoint = Endpoint()
        sock = bound()
        UdpSocket(sock, endpoint.proto)
        proto = endpoint.proto
        assert proto.transport is not None and proto.family == socket.AF_INET
        assert proto.transport.get_extra_info("socket") is sock
        peer = bound()
        peer.setblocking(False)
        for n in range(30):
            peer.sendto(b"OPTIONS sip:x SIP/2.0 %d" % n, sock.getsockname())
        for _ in range(200):
            if len(endpoint.got) == 30:
                break
            await asyncio.sleep(0.005)
        assert [d for d, _ in endpoint.got] == [b"OPTIONS sip:x SIP/2.0 %d" % n for n in range(30)]
        assert {a for _, a in endpoint.got} == {peer.getsockname()}
        proto.sendto(b"SIP/2.0 200 OK", peer.getsockname())
        await asyncio.sleep(0.01)
        assert peer.recvfrom(100) == (b"SIP/2.0 200 OK", sock.getsockname())
        proto.transport.close()
        await asyncio.sleep(0)
        assert proto.transport.is_closing() and sock.fileno() == -1
        proto.sendto(b"after close", peer.getsockname())   # dropped, as a closing transport does
        peer.close()

    loop = LOOPS[loop_name]()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


class FakeSend:
    """``_udp.send`` that answers ``answers`` in turn (then sends for real)."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.real = _udp.send

    def __call__(self, fd: int, family: int, data: bytes, addr: tuple[str, int]) -> int:
        if self.answers:
            return self.answers.pop(0)
        return int(self.real(fd, family, data, addr))


def test_a_send_the_kernel_refuses_for_now_waits_in_order(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="sipguard.transport")

    async def main() -> None:
        endpoint = Endpoint().proto
        sock = bound()
        udp = UdpSocket(sock, endpoint)
        peer = bound()
        peer.settimeout(2)
        fake = FakeSend([errno.EAGAIN, errno.ENOBUFS])
        monkeypatch.setattr(transport, "_udp_c", type("M", (), {"send": fake, "Reader": _udp.Reader}))
        endpoint.sendto(b"first", peer.getsockname())          # EAGAIN: queued
        endpoint.sendto(b"second", peer.getsockname())         # behind it, not ahead
        assert len(udp.backlog) == 2 and udp.queued == len(b"firstsecond")
        for _ in range(100):
            if not udp.backlog:
                break
            await asyncio.sleep(0.005)                        # the writer callback: ENOBUFS, then both
        assert [peer.recv(100) for _ in range(2)] == [b"first", b"second"]
        assert udp.queued == 0 and not errors_of(caplog)
        fake.answers = [errno.EPERM]                          # refused otherwise: reported, not queued
        endpoint.sendto(b"third", peer.getsockname())
        assert errors_of(caplog) == [f"udp error: [Errno {errno.EPERM}] Operation not permitted"]
        assert not udp.backlog
        udp.close()
        peer.close()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_the_backlog_is_bounded(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        endpoint = Endpoint().proto
        udp = UdpSocket(bound(), endpoint)
        monkeypatch.setattr(transport, "UDP_BACKLOG", 100)
        monkeypatch.setattr(transport, "_udp_c", type("M", (), {"send": FakeSend([errno.EAGAIN] * 1000),
                                                                "Reader": _udp.Reader}))
        for _ in range(20):
            endpoint.sendto(b"x" * 30, ("127.0.0.1", 9))
        assert len(udp.backlog) == 3 and udp.queued == 90 and udp.dropped == 17
        assert [r.getMessage().split(":")[0] for r in caplog.records if r.name == "sipguard.transport"] \
            == [f"UDP socket ('127.0.0.1', {udp.sock.getsockname()[1]})"]      # once, not 17 times
        udp.close()
        assert not udp.backlog and udp.queued == 0 and udp.dropped == 17

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_a_delivery_that_closes_the_socket_ends_the_batch(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    got: list[bytes] = []

    def deliver(data: bytes, addr: tuple[str, int]) -> None:
        got.append(data)
        if data == b"CLOSE NOW":
            reader.close()                 # what UdpSocket.close does before closing the socket

    reader = _udp.Reader(ours.fileno(), ours.family, deliver, lambda exc: None)
    for data in (b"FIRST ONE", b"CLOSE NOW", b"NOT READ 1", b"NOT READ 2"):
        peer.sendto(data, ours.getsockname())
    for _ in range(50):
        if got:
            break
        reader()
    reader()
    assert got == [b"FIRST ONE", b"CLOSE NOW"] and reader.fd == -1


def test_an_ipv6_destination_may_name_its_zone() -> None:
    try:
        ours, peer = bound(socket.AF_INET6), bound(socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    peer.settimeout(2)
    port = peer.getsockname()[1]
    index = socket.if_nametoindex("lo")
    for host in ("::1%lo", f"::1%{index}"):
        assert _udp.send(ours.fileno(), socket.AF_INET6, host.encode(), (host, port)) == 0
        assert peer.recv(100) == host.encode()
    for bad in ("fe80::1%no-such-interface", "::1%", "::1%0", "::1%lo%lo"):
        with pytest.raises(ValueError, match="DNS lookup"):
            _udp.send(ours.fileno(), socket.AF_INET6, b"x", (bad, port))
    ours.close()
    peer.close()


def test_what_waits_stays_in_the_kernels_queue_until_its_turn(pair: tuple[socket.socket, socket.socket]) -> None:
    """The overload guard measures how long work has waited by the oldest datagram in the
    socket's queue (proxy/overload.py QueueProbe): while one datagram is delivered, the ones
    behind it are still there, not read ahead out of its sight."""
    import array
    import fcntl
    import termios

    ours, peer = pair
    waiting: list[int] = []

    def deliver(data: bytes, addr: tuple[str, int]) -> None:
        size = array.array("i", [0])
        fcntl.ioctl(ours.fileno(), termios.FIONREAD, size)    # the next datagram's size, 0: none
        waiting.append(size[0])

    reader = _udp.Reader(ours.fileno(), ours.family, deliver, lambda exc: None)
    for n in range(3):
        peer.sendto(b"INVITE %d ..." % n, ours.getsockname())
    for _ in range(50):
        if len(waiting) == 3:
            break
        reader()
    assert waiting == [len(b"INVITE 1 ..."), len(b"INVITE 2 ..."), 0]
