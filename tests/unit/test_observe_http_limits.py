"""The admin HTTP listener holds the edge, over a real loopback socket: the token, method and
path are judged before any body is read, connections are capped, slow heads are cut off, and
every bad query parameter or notice field is a 400 naming it, never a 500."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.clock import ManualClock
from sipguard.errors import SipguardError
from sipguard.observe.admin import notice_routes
from sipguard.observe.http import HttpServer
from sipguard.observe.http_wire import LINGER_BYTES, MAX_HEAD, HttpLimits
from sipguard.records.record import TracebackConfig
from sipguard.records.writer import open_records
from sipguard.store.base import Notice
from sipguard.store.memory import MemoryStore
from tests.records_fixtures import BASE_TIME, make_record

# The supervisor serves HTTP on uvloop, tests and `serve --workers 1` may run plain asyncio:
# the protocol must behave the same on both (uvloop's transports differ in small ways).
LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}
TOKEN = "s3cret-0123456789abcdef"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"
MIB = 1 << 20


async def exchange(port: int, raw: bytes, body: bytes = b"") -> bytes:
    """Send ``raw`` (and as much of ``body`` as the socket takes without waiting), then read
    the answer. A plain socket: its recv hands over the answer even when a reset follows it."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, raw)
        sent = 0
        while sent < len(body):
            try:
                sent += sock.send(body[sent:sent + 65536])
            except (BlockingIOError, OSError):
                break
        data = b""
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


async def wait_until(predicate: Any) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server did not get there")


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def json_of(data: bytes) -> Any:
    return json.loads(data.partition(b"\r\n\r\n")[2])


def records_cfg(tmp_path: Path) -> TracebackConfig:
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))

    async def fill() -> None:
        w = open_records("memory", cfg, clock=ManualClock(BASE_TIME))
        await w.start()
        for i in range(3):
            w.submit(make_record(i * 100, caller=f"1202555000{i}"))
        await w.aclose()

    asyncio.run(fill())
    return cfg


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_refused_request_is_answered_before_its_body_is_read(tmp_path: Path, loop: str) -> None:
    """300 unauthenticated 1 MiB POSTs took a worker from 52 to 288 MB: now each is a 401 sent
    as soon as its head is in, and what the server read stays within the head limit."""
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))
    calls: list[bytes] = []

    async def notices(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        calls.append(body)
        return 201, "application/json", b"{}"

    async def scenario() -> None:
        server = HttpServer("memory", cfg, routes={("POST", "/admin/notices"): notices}, token=TOKEN,
                            limits=HttpLimits(max_connections=128, read_timeout=30))
        await server.start("127.0.0.1", 0)
        port = server.port
        try:
            # announced, never sent: the answer comes without waiting for the body
            head = f"POST /admin/notices HTTP/1.1\r\nContent-Length: {MIB}\r\n\r\n".encode()
            answers = await asyncio.gather(*(exchange(port, head) for _ in range(100)))
            assert [status_of(a) for a in answers] == [401] * 100
            assert server.listener.bytes_read <= 100 * len(head)
            # sent eagerly: the server still takes at most the head and a bounded drop
            before = server.listener.bytes_read
            answers = await asyncio.gather(*(exchange(port, head, b"x" * MIB) for _ in range(30)))
            assert [status_of(a) for a in answers] == [401] * 30
            await wait_until(lambda: not server.listener.connections)    # done dropping
            assert server.listener.bytes_read - before <= 30 * (MAX_HEAD + LINGER_BYTES + 4096)
            # with the token: a body over http.max_body and a body where none is taken are 413,
            # unread too; GET /traceback with a body is refused the same way
            before = server.listener.bytes_read
            for raw in (f"POST /admin/notices HTTP/1.1\r\n{AUTH}Content-Length: {MIB}\r\n\r\n",
                        f"GET /traceback HTTP/1.1\r\n{AUTH}Content-Length: {MIB}\r\n\r\n",
                        "GET /healthz HTTP/1.1\r\nContent-Length: 10\r\n\r\n"):
                data = await exchange(port, raw.encode())
                assert status_of(data) == 413 and "error" in json_of(data), raw
            await wait_until(lambda: not server.listener.connections)
            assert server.listener.bytes_read - before <= 3 * MAX_HEAD
            assert calls == []
            # the token, a body in its limit, and Expect: 100-continue answered before it is sent
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"POST /admin/notices HTTP/1.1\r\n{AUTH}Content-Length: 2\r\n"
                         "Expect: 100-continue\r\n\r\n".encode())
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"{}")
            assert (await reader.read()).startswith(b"HTTP/1.1 201 ")
            writer.close()
            assert calls == [b"{}"]
        finally:
            await server.aclose()

    LOOPS[loop](scenario())


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_connections_beyond_the_cap_get_503_and_slow_heads_are_cut_off(tmp_path: Path, loop: str) -> None:
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))

    async def scenario() -> None:
        server = HttpServer("memory", cfg, limits=HttpLimits(max_connections=3, read_timeout=60))
        await server.start("127.0.0.1", 0)
        port = server.port
        idle = []
        try:
            for _ in range(3):            # three clients that never send: they hold every slot
                idle.append(await asyncio.open_connection("127.0.0.1", port))
            await wait_until(lambda: len(server.listener.connections) == 3)
            for _ in range(5):
                data = await exchange(port, b"")
                assert status_of(data) == 503 and "too many connections" in json_of(data)["error"]
            assert server.listener.refused == 5
            for _, writer in idle:
                writer.close()
            await wait_until(lambda: not server.listener.connections)
            data = await exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")
            assert status_of(data) == 200
        finally:
            await server.aclose()
        # a head that never ends, a body that never comes: 408 at http.read_timeout, slot freed
        server = HttpServer("memory", cfg, routes={("POST", "/admin/x"): _echo},
                            limits=HttpLimits(max_connections=3, read_timeout=0.3))
        await server.start("127.0.0.1", 0)
        try:
            for raw in (b"GET /healthz HTTP/1.1\r\nHost: x", b"POST /admin/x HTTP/1.1\r\nContent-Length: 9\r\n\r\n{"):
                data = await exchange(server.port, raw)
                assert status_of(data) == 408 and "http.read_timeout" in json_of(data)["error"]
            await wait_until(lambda: not server.listener.connections)
        finally:
            await server.aclose()

    LOOPS[loop](scenario())


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_an_idle_connection_is_closed_without_a_word(tmp_path: Path, loop: str) -> None:
    """Issue 20: a connection that sends nothing gets no stale 408 (a browser would read it as the
    answer to the request it sends next); the one request of a connection gets exactly its
    answer, and nothing is written after it however long the client waits."""
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))

    async def scenario() -> None:
        server = HttpServer("memory", cfg, limits=HttpLimits(read_timeout=0.2))
        await server.start("127.0.0.1", 0)
        loop_ = asyncio.get_running_loop()
        try:
            answered = socket.create_connection(("127.0.0.1", server.port))
            idle = socket.create_connection(("127.0.0.1", server.port))
            for sock in (answered, idle):
                sock.setblocking(False)
            await loop_.sock_sendall(answered, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := await loop_.sock_recv(answered, 65536):   # read until the server's EOF
                data += chunk
            assert status_of(data) == 200 and data.count(b"HTTP/1.1 ") == 1
            # past read_timeout (the server's timer decides; the recv waits for it)
            assert await asyncio.wait_for(loop_.sock_recv(idle, 65536), 30) == b""
            await wait_until(lambda: not server.listener.connections)
            answered.close()
            idle.close()
            # a client that connects and half-closes without a byte gets no "incomplete request"
            leaving = socket.create_connection(("127.0.0.1", server.port))
            leaving.setblocking(False)
            leaving.shutdown(socket.SHUT_WR)
            assert await asyncio.wait_for(loop_.sock_recv(leaving, 65536), 30) == b""
            leaving.close()
        finally:
            await server.aclose()

    LOOPS[loop](scenario())


async def _echo(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
    return 200, "application/json", body


@pytest.mark.parametrize("raw, status", [
    (b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
    (b"GET //[ HTTP/1.1\r\n\r\n", 404),
    (b"GET http://x/healthz HTTP/1.1\r\n\r\n", 400),
    (b"GET /healthz HTTP/2.0\r\n\r\n", 400),
    (b"\r\n\r\n", 400),
    (b"GET /" + b"a" * MAX_HEAD + b" HTTP/1.1\r\n\r\n", 431),
    (b"DELETE /healthz HTTP/1.1\r\n\r\n", 405),
    (b"HEAD /healthz HTTP/1.1\r\n\r\n", 200),
])
@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_malformed_heads_are_refused_clearly(tmp_path: Path, raw: bytes, status: int, loop: str) -> None:
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))

    async def scenario() -> None:
        server = HttpServer("memory", cfg)
        await server.start("127.0.0.1", 0)
        try:
            data = await exchange(server.port, raw)
            assert status_of(data) == status, data
            head, _, body = data.partition(b"\r\n\r\n")
            if raw.startswith(b"HEAD"):
                assert body == b"" and b"Content-Length: 0" not in head
            else:
                assert "error" in json.loads(body) or status == 200
        finally:
            await server.aclose()

    LOOPS[loop](scenario())


BAD_PARAMETERS = [
    ("/traceback?window=inf&at=1700000000", "window"),
    ("/traceback?window=nan&at=1700000000", "window"),
    ("/traceback?window=-1", "window"),
    ("/traceback?window=1e400", "window"),
    ("/traceback?window=2678401", "window"),
    ("/traceback?limit=1e30", "limit"),
    ("/traceback?limit=-1", "limit"),
    ("/traceback?limit=0", "limit"),
    ("/traceback?limit=10001", "limit"),
    ("/traceback?limit=99999999999999999999999", "limit"),
    ("/traceback?limit=%C2%B2", "limit"),             # a superscript two: a digit to str.isdigit
    ("/traceback?at=9999-12-31", "at"),
    ("/traceback?at=nan", "at"),
    ("/traceback?at=inf", "at"),
    ("/traceback?at=-1", "at"),
    ("/traceback?at=1e400", "at"),
    ("/traceback?at=whenever", "at"),
    ("/traceback?since=0001-01-01", "since"),
    ("/traceback?until=2100-01-02", "until"),
    ("/traceback?since=2024-01-01&until=2023-01-01", "until"),
    ("/traceback?top=planets", "top"),
    ("/traceback?top=callers&n=0", "n"),
    ("/traceback?top=callers&n=1e3", "n"),
    ("/traceback?caller=1&caller=2", "caller"),
    ("/traceback?colour=red", "colour"),
    ("/traceback?call_id=" + "x" * 300, "call_id"),
    ("/traceback/answer?format=pdf", "format"),
    ("/traceback/answer?top=callers", "top"),
    ("/traceback/answer?at=9999-12-31", "at"),
    ("/traceback/answer?at=1700000000&window=inf", "window"),
    ("/traceback/answer?limit=-1", "limit"),
]
BAD_NOTICES = [
    (b'{"ref": "n", "caller": "1202", "start": NaN}', "start"),
    (b'{"ref": "n", "caller": "1202", "start": Infinity}', "start"),
    (b'{"ref": "n", "caller": "1202", "start": -Infinity}', "start"),
    (b'{"ref": "n", "caller": "1202", "start": 1e999}', "start"),
    (b'{"ref": "n", "caller": "1202", "start": 1' + b"0" * 400 + b"}", "start"),
    (b'{"ref": "n", "caller": "1202", "start": -1}', "start"),
    (b'{"ref": "n", "caller": "1202", "start": 253402214400}', "start"),
    (b'{"ref": "n", "caller": "1202", "start": "2025-01-01"}', "start"),
    (b'{"ref": "n", "caller": "1202", "start": true}', "start"),
    (b'{"ref": "n", "caller": "1202", "end": NaN}', "end"),
    (b'{"ref": "n", "caller": "1202", "start": 1700000000, "end": 1600000000}', "end"),
    (b'{"ref": "n", "frn": "12345678901"}', "frn"),
    (b'{"ref": "n", "caller": "12a"}', "caller"),
    (b'{"ref": "n", "caller": "\xc2\xb2"}', "caller"),
    (b'{"ref": "n", "trunk": "' + b"t" * 300 + b'"}', "trunk"),
    (b'{"ref": "", "caller": "1202"}', "ref"),
    (b'{"ref": 5, "caller": "1202"}', "ref"),
    (b'{"ref": "n", "colour": "red"}', "colour"),
    (b'{"ref": "n"}', "body"),
    (b"[]", "body"),
    (b"{not json", "body"),
    (b"[" * 30000 + b"]" * 30000, "body"),
]
BAD_ADMIN = [
    ("DELETE", "/admin/notices", "ref"),
    ("DELETE", "/admin/notices?ref=", "ref"),
    ("DELETE", "/admin/notices?ref=a&ref=b", "ref"),
    ("DELETE", "/admin/notices?ref=a&x=1", "x"),
    ("GET", "/admin/notices?x=1", "x"),
    ("POST", "/admin/notices?x=1", "x"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A server with the real notice routes on a memory store, records in SQLite; its loop
    runs in a thread so plain blocking clients (and hypothesis) can talk to it."""
    cfg = records_cfg(tmp_path_factory.mktemp("records"))
    loop = asyncio.new_event_loop()
    server = HttpServer("memory", cfg, routes=notice_routes(MemoryStore()), token=TOKEN)
    loop.run_until_complete(server.start("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.port
    asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def ask(port: int, method: str, target: str, body: bytes = b"") -> tuple[int, Any]:
    raw = (f"{method} {target} HTTP/1.1\r\n{AUTH}Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = status_of(data)
    payload = data.partition(b"\r\n\r\n")[2]
    return status, json.loads(payload) if payload.startswith((b"{", b"[")) else payload


@pytest.mark.parametrize("target, parameter", BAD_PARAMETERS)
def test_a_bad_query_parameter_is_a_400_naming_it(live: int, target: str, parameter: str) -> None:
    status, doc = ask(live, "GET", target)
    assert status == 400 and doc["parameter"] == parameter and parameter in doc["error"], doc


@pytest.mark.parametrize("body, field", BAD_NOTICES)
def test_a_bad_notice_field_is_a_400_naming_it(live: int, body: bytes, field: str) -> None:
    status, doc = ask(live, "POST", "/admin/notices", body)
    assert status == 400 and doc["parameter"] == field, doc
    status, doc = ask(live, "GET", "/admin/notices")
    assert status == 200 and doc == []              # nothing stored


@pytest.mark.parametrize("method, target, parameter", BAD_ADMIN)
def test_a_bad_admin_parameter_is_a_400_naming_it(live: int, method: str, target: str, parameter: str) -> None:
    status, doc = ask(live, method, target, b'{"ref": "n", "caller": "1202"}' if method == "POST" else b"")
    assert status == 400 and doc["parameter"] == parameter, doc


def test_good_parameters_still_answer(live: int) -> None:
    status, doc = ask(live, "GET", f"/traceback?at={BASE_TIME + 100}&window=0&limit=1")
    assert status == 200 and doc["count"] == 1
    status, doc = ask(live, "GET", "/traceback?since=2023-11-14T22:13:20Z&until=2099-12-31&limit=10000")
    assert status == 200 and doc["count"] == 3
    status, doc = ask(live, "GET", "/traceback?top=callers&since=0&n=1000")
    assert status == 200 and doc["rows"] == []
    status, text = ask(live, "GET", f"/traceback/answer?call_id=call-1@198.51.100.7&at={BASE_TIME}"
                                    "&window=2678400&format=text")
    assert status == 200 and b"FOUND" in text
    status, doc = ask(live, "POST", "/admin/notices", b'{"ref": "ok", "caller": "+1202", "start": 0, '
                                                      b'"end": 4102444800}')
    assert status == 201 and doc["end"] == 4102444800
    assert ask(live, "DELETE", "/admin/notices?ref=ok")[0] == 200


VALUES = st.one_of(
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e30", "1e400", "-1", "0", "1", "10001", "1700000000",
                     "9999-12-31", "0001-01-01", "2023-11-14T22:13:20Z", "2023-11-14 17:13-05:00", "callers",
                     "trunks", "text", "json", "+12025550001", "%", "%zz", "\x00", "\u00b2"]),
    st.text(max_size=30),
    st.floats().map(repr),
    st.integers().map(str),
)
NAMES = st.one_of(st.sampled_from(["caller", "callee", "at", "window", "since", "until", "call_id", "limit",
                                   "top", "n", "format", "ref", ""]), st.text(max_size=8))
QUERY = st.lists(st.tuples(NAMES, VALUES), max_size=6).map(
    lambda pairs: "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs))
RAW_QUERY = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/traceback", "/traceback/answer", "/admin/notices"]),
       method=st.sampled_from(["GET", "DELETE"]), query=st.one_of(QUERY, RAW_QUERY))
def test_no_query_string_makes_a_500(live: int, path: str, method: str, query: str) -> None:
    status, doc = ask(live, method, f"{path}?{query}")
    assert status in (200, 400, 404, 405), (status, doc)
    if status == 400:
        assert doc["error"]


NOTICE = st.dictionaries(
    st.sampled_from(["ref", "caller", "caller_prefix", "callee", "callee_prefix", "trunk", "frn", "spc",
                     "start", "end", "x"]),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
              st.sampled_from(["n", "1202", "+12025550001", "0012345678", "ABCD"]),
              st.lists(st.integers(), max_size=2)), max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(notice=NOTICE)
def test_no_notice_body_makes_a_500(live: int, notice: dict[str, Any]) -> None:
    status, doc = ask(live, "POST", "/admin/notices", json.dumps(notice).encode())
    assert status in (201, 400), (status, doc)
    if status == 201:           # what was stored is a usable rule: times finite, 1970 to 2100
        assert all(t is None or (math.isfinite(t) and 0 <= t <= 4102444800) for t in (doc["start"], doc["end"]))
        assert ask(live, "DELETE", f"/admin/notices?ref={quote(doc['ref'], safe='')}")[0] == 200


@pytest.mark.parametrize("start, end", [(math.nan, None), (None, math.nan), (math.inf, None), (None, -math.inf),
                                        (-1.0, None), (None, 253402214400.0)])
def test_the_store_refuses_a_notice_time_that_is_not_one(start: float | None, end: float | None) -> None:
    """The CLI (`sipguard notice add --start nan`) reaches the store without the HTTP checks:
    normalise_notice, shared by the memory and Redis stores, refuses the same times."""
    store = MemoryStore()
    with pytest.raises(SipguardError, match="not a time from 1970 to 2100"):
        asyncio.run(store.notice_add(Notice("n", caller="1202", start=start, end=end)))
    assert asyncio.run(store.notice_list()) == []
