"""The admin HTTP listener (``http.listen``): /metrics, /healthz, /readyz, /traceback,
/traceback/answer (the ITG answer for our hop, JSON or ``format=text``), admin API.

A deliberately small HTTP/1.1 server on ``asyncio.start_server`` (no new dependency):
one request per connection (``Connection: close``), request head at most
``MAX_HEAD`` bytes, body at most ``MAX_BODY``, a read deadline, GET for the built-in
endpoints. Other modules plug in their own endpoints (the notice admin API ...)
through ``routes``: ``{(method, path): async handler(query, body) -> (status,
content_type, bytes)}``.

With several workers only the supervisor runs this server: /metrics then aggregates
every worker (prometheus_client multiprocess mode, see observe/metrics.py) and
/traceback reads the shared store, so no worker needs a port of its own.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sipguard.observe import health, metrics
from sipguard.records import answer, query
from sipguard.records.record import TracebackConfig

log = logging.getLogger("sipguard.http")

MAX_HEAD = 8192
MAX_BODY = 1 << 20
READ_TIMEOUT = 5.0
JSON = "application/json"
Handler = Callable[[dict[str, str], bytes], Awaitable[tuple[int, str, bytes]]]
Routes = dict[tuple[str, str], Handler]
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}
TRACEBACK_PARAMS = ("caller", "callee", "at", "window", "since", "until", "call_id", "limit", "top", "n")
ANSWER_PARAMS = ("caller", "callee", "at", "window", "since", "until", "call_id", "limit", "format")
TEXT = "text/plain; charset=utf-8"
OPEN = frozenset(("/metrics", "/healthz", "/readyz"))   # for scrapers and load balancers: no token


class HttpServer:
    def __init__(self, store_url: str, traceback: TracebackConfig, ready: health.ReadyFn | None = None,
                 routes: Routes | None = None, registry: Any = None,
                 answer_context: answer.Context = ({}, None), token: str | None = None) -> None:
        self.store_url = store_url
        self.token = token  # when set: /admin and /traceback need "Authorization: Bearer <token>"
        self.traceback = traceback
        self.answer_context = answer_context
        self.ready = ready
        self.routes: Routes = dict(routes or {})
        self.registry = registry
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._client, host, port, limit=MAX_HEAD + 2)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    # -- one connection, one request ------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body = await asyncio.wait_for(self._request(reader), READ_TIMEOUT)
        except TimeoutError:
            status, ctype, body = 400, JSON, _error("request not received in time")
        except Exception:
            log.exception("HTTP handler failed")
            status, ctype, body = 500, JSON, _error("internal error")
        challenge = 'WWW-Authenticate: Bearer realm="sipguard"\r\n' if status == 401 else ""
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: {ctype}\r\n"
                f"{challenge}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        try:
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _request(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return 431, JSON, _error(f"request head over {MAX_HEAD} bytes")
        except asyncio.IncompleteReadError:
            return 400, JSON, _error("incomplete request")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, JSON, _error("malformed request line")
        method, target = parts[0], parts[1]
        length = 0
        bearer = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                if not value.strip().isdigit():
                    return 400, JSON, _error("bad Content-Length")
                length = int(value.strip())
            elif name == "authorization" and value.strip()[:7].lower() == "bearer ":
                bearer = value.strip()[7:].strip()
        if length > MAX_BODY:
            return 413, JSON, _error(f"body over {MAX_BODY} bytes")
        body = await reader.readexactly(length) if length else b""
        url = urlsplit(target)
        if self.token is not None and url.path not in OPEN \
                and not hmac.compare_digest(bearer.encode(), self.token.encode()):
            return 401, JSON, _error("this endpoint needs Authorization: Bearer <the token of http.token_file>")
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        return await self.dispatch(method, url.path, params, body)

    async def dispatch(self, method: str, path: str, params: dict[str, str],
                       body: bytes = b"") -> tuple[int, str, bytes]:
        handler = self.routes.get((method, path))
        if handler is not None:
            return await handler(params, body)
        builtin = {"/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz,
                   "/traceback": self._traceback, "/traceback/answer": self._answer}.get(path)
        if builtin is None:
            if any(p == path for _, p in self.routes):
                return 405, JSON, _error(f"{method} not allowed on {path}")
            return 404, JSON, _error(f"no such endpoint: {path}")
        if method not in ("GET", "HEAD"):
            return 405, JSON, _error(f"{path} answers GET only")
        return await builtin(params)

    async def _metrics(self, params: dict[str, str]) -> tuple[int, str, bytes]:
        body, ctype = metrics.render(self.registry)
        return 200, ctype, body

    async def _healthz(self, params: dict[str, str]) -> tuple[int, str, bytes]:
        status, body = health.healthz()
        return status, JSON, body

    async def _readyz(self, params: dict[str, str]) -> tuple[int, str, bytes]:
        status, body = health.readyz(self.ready)
        return status, JSON, body

    async def _traceback(self, params: dict[str, str]) -> tuple[int, str, bytes]:
        unknown = sorted(set(params) - set(TRACEBACK_PARAMS))
        if unknown:
            return 400, JSON, _error(f"unknown parameter(s) {', '.join(unknown)}; expected "
                                     + ", ".join(TRACEBACK_PARAMS))
        try:
            return 200, JSON, await traceback_json(self.store_url, self.traceback, params)
        except (query.QueryError, ValueError) as exc:
            return _query_failure(exc)


    async def _answer(self, params: dict[str, str]) -> tuple[int, str, bytes]:
        """The ITG answer for our hop (records.answer): 200 with "found" or "not found"."""
        unknown = sorted(set(params) - set(ANSWER_PARAMS))
        if unknown or params.get("format", "json") not in ("json", "text"):
            return 400, JSON, _error(f"expected parameters {', '.join(ANSWER_PARAMS)} (format: json | text)")
        try:
            since, until, at, window = _times(params)
            records = await _find(self.store_url, self.traceback, params, since, until, at, window)
        except (query.QueryError, ValueError) as exc:
            return _query_failure(exc)
        low, high = query.time_range(since, until, at, window)
        request = answer.Request(params.get("caller") or None, params.get("callee") or None,
                                 params.get("at") or None, at, params.get("call_id") or None, low, high)
        doc = answer.build(request, records, self.answer_context, time.time())
        if params.get("format") == "text":
            return 200, TEXT, answer.render(doc).encode()
        return 200, JSON, json.dumps(doc).encode()


def _query_failure(exc: query.QueryError | ValueError) -> tuple[int, str, bytes]:
    """A bad parameter is the client's (400); a store that cannot answer is ours (503)."""
    text = str(exc)
    unavailable = isinstance(exc, query.QueryError) and "time" not in text and "--top" not in text
    return 503 if unavailable else 400, JSON, _error(text)


def _times(params: dict[str, str]) -> tuple[float | None, float | None, float | None, float]:
    def when(key: str) -> float | None:
        return query.parse_time(params[key]) if params.get(key) else None

    return when("since"), when("until"), when("at"), float(params.get("window") or query.DEFAULT_WINDOW)


async def _find(store_url: str, cfg: TracebackConfig, params: dict[str, str], since: float | None,
                until: float | None, at: float | None, window: float) -> list[Any]:
    return await query.find(store_url, cfg, caller=params.get("caller") or None,
                            callee=params.get("callee") or None, since=since, until=until,
                            call_id=params.get("call_id") or None, at=at, window=window,
                            limit=int(params.get("limit") or 1000))


async def traceback_json(store_url: str, cfg: TracebackConfig, params: dict[str, str]) -> bytes:
    """The answer of /traceback: records (or the campaign view with ``top=``), in UTC."""
    since, until, at, window = _times(params)
    if params.get("top"):
        rows = await query.top(store_url, cfg, params["top"], since, until, int(params.get("n") or 20))
        return json.dumps({"top": params["top"], "since": query.iso_utc(since), "until": query.iso_utc(until),
                           "rows": [{"key": k, "rejected": r, "attest_c": c} for k, r, c in rows]}).encode()
    records = await _find(store_url, cfg, params, since, until, at, window)
    low, high = query.time_range(since, until, at, window)
    out = {"query": {"caller": params.get("caller"), "callee": params.get("callee"),
                     "call_id": params.get("call_id"), "from": query.iso_utc(low), "to": query.iso_utc(high),
                     "timezone": "UTC"},
           "count": len(records),
           "records": [{"time_utc": query.iso_utc(r.time), **r.to_dict()} for r in records]}
    return json.dumps(out).encode()


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


async def start_http(config: Any, ready: health.ReadyFn | None = None, store: Any = None,
                     routes: Routes | None = None, registry: Any = None) -> HttpServer | None:
    """Serve ``config.http_listen`` ("host:port"); None when the config has no http section.
    ``store`` is accepted for the caller's convenience; records are read through the URL."""
    listen = getattr(config, "http_listen", None)
    if not listen:
        return None
    from sipguard.config import split_hostport

    host, port = split_hostport(listen)
    server = HttpServer(config.store, config.traceback, ready, routes, registry,
                        answer.context_of(config), config.http_token)
    await server.start(host, port or 9090)
    log.info("admin HTTP on %s:%d", host, server.port)
    return server
