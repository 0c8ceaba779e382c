"""The admin HTTP listener over a real loopback socket: endpoints, errors, routes; JSON logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest

from sipguard.clock import ManualClock
from sipguard.observe import logs
from sipguard.observe.http import HttpServer
from sipguard.observe.metrics import Metrics
from sipguard.records.record import TracebackConfig
from sipguard.records.writer import open_records
from tests.records_fixtures import BASE_TIME, make_record


async def request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def test_endpoints(tmp_path: Path) -> None:
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))
    state = {"ok": True}

    async def notices(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        return 201 if body else 400, "application/json", json.dumps({"got": body.decode()}).encode()

    async def scenario() -> None:
        w = open_records("memory", cfg, clock=ManualClock(BASE_TIME))
        await w.start()
        for i in range(5):
            w.submit(make_record(i * 100, caller=f"1202555000{i}"))
        await w.aclose()
        m = Metrics()
        m.observe_decision(make_record(), 0.01)
        server = HttpServer("memory", cfg, ready=lambda: (state["ok"], {"store_reachable": state["ok"]}),
                            routes={("POST", "/admin/notices"): notices}, registry=m.registry,
                            answer_context=({"carrier-a": "noc@carrier-a.example"}, None))
        await server.start("127.0.0.1", 0)
        port = server.port
        try:
            status, headers, body = await request(port, get(port, "/healthz"))
            assert status == 200 and json.loads(body)["status"] == "alive"
            assert headers["connection"] == "close"
            status, _, body = await request(port, get(port, "/readyz"))
            assert status == 200 and json.loads(body) == {"ready": True, "store_reachable": True}
            state["ok"] = False
            status, _, body = await request(port, get(port, "/readyz"))
            assert status == 503 and json.loads(body)["ready"] is False
            status, headers, body = await request(port, get(port, "/metrics"))
            assert status == 200 and headers["content-type"].startswith("text/plain")
            assert b'sipguard_invites_total{action="forward"' in body
            status, _, body = await request(port, get(port, f"/traceback?caller=%2B12025550003&at={BASE_TIME + 250}"))
            answer = json.loads(body)
            assert status == 200 and answer["count"] == 1 and answer["query"]["timezone"] == "UTC"
            assert answer["records"][0]["provider_frn"] == "0012345678"
            assert answer["records"][0]["time_utc"] == "2023-11-14T22:18:20.000Z"
            status, _, body = await request(port, get(port, "/traceback?since=2023-11-14T22:13:20Z&until="
                                                      + str(BASE_TIME + 150)))
            assert json.loads(body)["count"] == 2
            status, _, body = await request(port, get(port, "/traceback/answer?caller=%2B12025550003&at="
                                                      "2023-11-14T17:18:20-05:00"))
            doc = json.loads(body)
            assert status == 200 and doc["answer"] == "found" and doc["request"]["zone"] == "UTC-05:00"
            assert doc["calls"][0]["received_from"]["contact"] == "noc@carrier-a.example"
            status, headers, body = await request(port, get(port, "/traceback/answer?caller=%2B12025559999"
                                                               f"&at={BASE_TIME}&format=text"))
            assert status == 200 and headers["content-type"].startswith("text/plain")
            assert b"Result: NOT FOUND" in body
            for path in ("/traceback/answer?top=callers", "/traceback/answer?format=pdf",
                         "/traceback/answer?at=whenever"):
                status, _, body = await request(port, get(port, path))
                assert status == 400 and "error" in json.loads(body), path
            status, _, body = await request(port, get(port, "/traceback?top=callers&since=0"))
            assert status == 200 and json.loads(body)["rows"] == []
            for path, code in (("/traceback?at=whenever", 400), ("/traceback?colour=red", 400),
                               ("/traceback?top=planets", 400), ("/nowhere", 404)):
                status, _, body = await request(port, get(port, path))
                assert status == code and "error" in json.loads(body), path
            status, _, _ = await request(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            assert status == 405
            status, _, body = await request(port, b"POST /admin/notices HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            assert status == 201 and json.loads(body) == {"got": "hello"}
            status, _, _ = await request(port, b"GET /admin/notices HTTP/1.1\r\n\r\n")
            assert status == 405
            status, _, _ = await request(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
            assert status == 431
            status, _, _ = await request(port, b"BLAH\r\n\r\n")
            assert status == 400
            status, _, _ = await request(port, b"POST /admin/notices HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
            assert status == 413
        finally:
            await server.aclose()

    asyncio.run(scenario())


def test_decision_logs_are_json_with_call_id_and_can_be_switched_off() -> None:
    out = io.StringIO()
    try:
        logs.setup_logging("info", json=True, decisions="info", stream=out)
        logs.log_decision(make_record(7, action="reject", status=603))
        logging.getLogger("sipguard.test").warning("hello %s", "there")
        line, other = [json.loads(x) for x in out.getvalue().splitlines()]
        assert line["call_id"] == "call-7@198.51.100.7" and line["action"] == "reject" and line["status"] == 603
        assert line["level"] == "info" and line["logger"] == "sipguard.decisions" and line["ts"].endswith("Z")
        assert other["msg"] == "hello there"
        for setting in ("off", "debug"):                   # debug lines under an info root: dropped
            out.truncate(0)
            out.seek(0)
            logs.setup_logging("info", decisions=setting, stream=out)
            logs.log_decision(make_record())
            assert out.getvalue() == ""
        logs.setup_logging("debug", decisions="debug", stream=out)
        logs.log_decision(make_record())
        assert json.loads(out.getvalue().splitlines()[-1])["level"] == "debug"
    finally:
        root = logging.getLogger()
        for h in list(root.handlers):
            if getattr(h, "_sipguard", False):
                root.removeHandler(h)
        root.setLevel(logging.WARNING)


def test_decision_lines_written_directly_are_the_lines_logging_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """With only sipguard's handler on the way, a decision line skips the logging module: the
    same bytes at the same instant; another handler or a filter (a log capture) gets the line
    through logging again."""
    records = [make_record(3, action="reject", status=603),
               make_record(4)._replace(call_id="caf\u00e9\"x\\y", reasons=("a", "b"),
                                   signed=True, caller=None)]
    monkeypatch.setattr(logs.time, "time", lambda: 1765000000.0429)
    out = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # pytest's own capture handlers, back after the test
    try:
        for level in ("info", "debug"):
            logs.setup_logging(level, json=True, decisions=level, stream=out)
            with monkeypatch.context() as m:  # prove the direct path: logging is not called
                m.setattr(logs._decisions, "log", lambda *a, **k: pytest.fail("went through logging"))
                for r in records:
                    logs.log_decision(r)
            direct = out.getvalue()
            out.truncate(0)
            out.seek(0)
            for extra in (logging.Filter(), None):
                if extra is not None:
                    root.addFilter(extra)
                else:
                    other = logging.NullHandler()
                    root.addHandler(other)
                for r in records:
                    logs.log_decision(r)
                assert out.getvalue() == direct and direct.count("\n") == 2, (out.getvalue(), direct)
                out.truncate(0)
                out.seek(0)
                if extra is not None:
                    root.removeFilter(extra)
                else:
                    root.removeHandler(other)
        line = json.loads(direct.splitlines()[1])
        assert line["ts"] == "2025-12-06T05:46:40.042Z" and line["level"] == "debug"
        assert line["msg"] == "forward caf\u00e9\"x\\y" and line["reasons"] == ["a", "b"]
    finally:
        for h in list(root.handlers):
            if getattr(h, "_sipguard", False):
                root.removeHandler(h)
        root.setLevel(logging.WARNING)


@pytest.mark.parametrize("decisions", ["info", "off"])
def test_log_decision_never_raises(decisions: str) -> None:
    logs.set_decisions(decisions)
    logs.log_decision(make_record())
    logs.set_decisions("info")


def test_a_token_guards_records_and_admin_not_metrics(tmp_path: Path) -> None:
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))
    token = "s3cret-0123456789abcdef"

    async def notices(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        return 201, "application/json", b"{}"

    async def scenario() -> None:
        w = open_records("memory", cfg, clock=ManualClock(BASE_TIME))
        await w.start()
        w.submit(make_record(0))
        await w.aclose()
        server = HttpServer("memory", cfg, routes={("POST", "/admin/notices"): notices},
                            registry=Metrics().registry, token=token)
        await server.start("127.0.0.1", 0)
        port = server.port

        def with_auth(path: str, value: str) -> bytes:
            return f"GET {path} HTTP/1.1\r\nAuthorization: {value}\r\n\r\n".encode()

        try:
            for path in ("/metrics", "/healthz", "/readyz"):
                status, _, _ = await request(port, get(port, path))
                assert status in (200, 503), path              # open: scrapers, load balancers
            for raw in (get(port, "/traceback?call_id=x"), get(port, "/traceback/answer?call_id=x"),
                        with_auth("/traceback?call_id=x", "Bearer wrong-0123456789abcdef"),
                        with_auth("/traceback?call_id=x", f"Basic {token}"),
                        b"POST /admin/notices HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"):
                status, headers, body = await request(port, raw)
                assert status == 401 and headers["www-authenticate"].startswith("Bearer"), raw
                assert "Authorization: Bearer" in json.loads(body)["error"]
            status, _, body = await request(port, with_auth("/traceback?call_id=call-0@198.51.100.7",
                                                            f"bearer {token}"))
            assert status == 200 and json.loads(body)["count"] == 1
            status, _, _ = await request(port, b"POST /admin/notices HTTP/1.1\r\nAuthorization: Bearer "
                                         + token.encode() + b"\r\nContent-Length: 2\r\n\r\n{}")
            assert status == 201
        finally:
            await server.aclose()

    asyncio.run(scenario())
