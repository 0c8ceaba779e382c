"""The admin HTTP listener (``http.listen``): /metrics, /healthz, /readyz, /traceback,
/traceback/answer (the ITG answer for our hop, JSON or ``format=text``), /upstreams (the
per trunk and per signer measures, records/upstreams.py), admin API, and the operator
console (/console, sipguard/console/).

A deliberately small HTTP/1.1 server (no new dependency): one request per connection
(``Connection: close``), taken by observe/http_wire.py, which bounds connections, head
size and read time and asks ``HttpServer.admit`` about method, path, token and body size
before it reads any body. GET for the built-in endpoints. Other modules plug in their own
endpoints (the notice admin API ...) through ``routes``: ``{(method, path): async
handler(query, body) -> (status, content_type, bytes)}``; POST, PUT and PATCH routes take a
body of at most ``http.max_body`` bytes, the others none.

Who may ask (``_authorize``): /metrics and the health checks are open; everything else
needs the bearer token of ``http.token_file`` or a console session cookie (with its CSRF
token for changes). A browser's POST or DELETE from another origin is refused, and a
token-less listener (loopback only) answers only requests naming a loopback Host. Each
change is an audit line (``sipguard.audit``: when, who, what).

Every query parameter is checked before use (records/query.py ``question``): a bad one is
a 400 whose JSON names it (``{"error": ..., "parameter": ...}``), never a 500.

With several workers only the supervisor runs this server: /metrics then aggregates
every worker (prometheus_client multiprocess mode, see observe/metrics.py) and
/traceback reads the shared store, so no worker needs a port of its own.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from sipguard.console import app as console_app
from sipguard.console import live as console_live
from sipguard.console.session import Sessions
from sipguard.observe import health, metrics
from sipguard.observe.http_wire import JSON, Head, HttpLimits, Listener, Reply, error
from sipguard.records import answer, query, upstreams
from sipguard.records.measures import UpstreamsConfig
from sipguard.records.record import TracebackConfig

log = logging.getLogger("sipguard.http")
audit_log = logging.getLogger("sipguard.audit")

Handler = Callable[[dict[str, str], bytes], Awaitable[tuple[int, str, bytes]]]
Routes = dict[tuple[str, str], Handler]
TRACEBACK_PARAMS = query.PARAMS
ANSWER_PARAMS = ("caller", "callee", "at", "window", "since", "until", "call_id", "limit")
FORMATS = ("json", "text")
TEXT = "text/plain; charset=utf-8"
OPEN = frozenset(("/metrics", "/healthz", "/readyz"))   # for scrapers and load balancers: no token
BUILTIN = frozenset(("/metrics", "/healthz", "/readyz", "/traceback", "/traceback/answer", "/upstreams"))
BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
SAFE_METHODS = frozenset(("GET", "HEAD"))
AUDIT_KEEP = 50        # audit lines the console shows (all of them go to the log)


class HttpServer:
    def __init__(self, store_url: str, traceback: TracebackConfig, ready: health.ReadyFn | None = None,
                 routes: Routes | None = None, registry: Any = None,
                 answer_context: answer.Context = ({}, None), token: str | None = None,
                 limits: HttpLimits | None = None, upstreams: UpstreamsConfig | None = None) -> None:
        self.store_url = store_url
        self.upstreams = upstreams or UpstreamsConfig()
        self.token = token  # when set: /admin and /traceback need "Authorization: Bearer <token>"
        self.traceback = traceback
        self.answer_context = answer_context
        self.ready = ready
        self.routes: Routes = dict(routes or {})
        self.registry = registry
        self.limits = limits or HttpLimits()
        self.listener = Listener(self)
        self.sessions = Sessions(token)
        self.console: console_app.Console | None = None     # set by start_http
        self.changes: deque[str] = deque(maxlen=AUDIT_KEEP)
        self.sampler: asyncio.Task[None] | None = None

    def audit(self, who: str, what: str) -> None:
        """One line per change made through the listener: who (the operator's name and the
        token's fingerprint), when, what; in the log (sipguard.audit) and on the console."""
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {who}: {what}"
        audit_log.info("audit: %s", line)
        self.changes.appendleft(line)

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        await self.listener.start(host, port, sock)
        if self.console is not None:
            self.sampler = asyncio.get_running_loop().create_task(self.console.sample_forever())

    @property
    def port(self) -> int:
        return self.listener.port

    async def aclose(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()
        await self.listener.aclose()

    # -- before the body: who may send what ------------------------------------------------------
    def admit(self, head: Head) -> Reply | None:
        """Token (or console session), method and path, then body size: all known from the
        head alone."""
        refusal = self._authorize(head)
        if refusal is not None:
            return refusal
        methods = {m for m, p in self.routes if p == head.path}
        if head.path in BUILTIN:
            methods |= {"GET", "HEAD"}
        if self.console is not None and head.path.startswith("/console"):
            methods |= console_app.allowed(head.path) or set()
        if not methods:
            return 404, JSON, error(f"no such endpoint: {head.path[:100]}")
        if head.method not in methods:
            return 405, JSON, error(f"{head.method} not allowed on {head.path}; allowed: "
                                    + ", ".join(sorted(methods)))
        allowed = self.limits.max_body if head.method in BODY_METHODS else 0
        if head.length > allowed:
            if not allowed:
                return 413, JSON, error(f"{head.method} {head.path} takes no body")
            return 413, JSON, error(f"body over {allowed} bytes (http.max_body)")
        return None

    def _authorize(self, head: Head) -> Reply | None:
        """Who may ask: /metrics and the health checks are open; the rest needs the bearer
        token, or a console session cookie (console/session.py) whose requests that change
        something carry its CSRF token. A browser's request from another origin that would
        change something is refused even without a token (a page elsewhere posting to a
        loopback listener)."""
        if head.method not in SAFE_METHODS and head.origin and not _same_origin(head.origin, head.host):
            return 403, JSON, error("cross-origin request refused (Origin does not match Host)")
        if head.path in OPEN:
            return None
        if self.token is None:
            if head.host and not _loopback_host(head.host):
                return 403, JSON, error("without http.token_file this listener answers only requests to a "
                                        "loopback name (Host: 127.0.0.1, localhost): a page elsewhere cannot "
                                        "reach it by rebinding its own name")
            return None
        if console_app.is_public(head.path):
            return None
        if hmac.compare_digest(head.bearer.encode(), self.token.encode()):
            return None
        session = self.sessions.read(head.cookie) if head.cookie else None
        if session is None:
            if head.path.startswith("/console") and not head.path.startswith("/console/api/") \
                    and head.method in SAFE_METHODS:
                return console_app.login_redirect(head.path, head.query)
            return 401, JSON, error("this endpoint needs Authorization: Bearer <the token of http.token_file>")
        if head.method not in SAFE_METHODS and not head.path.startswith("/console") \
                and not self.sessions.csrf_ok(session, head.csrf):
            return 403, JSON, error("a console session changing something must send its X-Sipguard-CSRF token")
        return None

    def who(self, head: Head) -> str:
        if self.token is not None and head.bearer and hmac.compare_digest(head.bearer.encode(), self.token.encode()):
            return self.sessions.who_token
        return self.sessions.who(self.sessions.read(head.cookie) if head.cookie else None)

    async def handle(self, head: Head, body: bytes) -> Reply:
        try:
            params = parse_query(head.query)
        except query.BadParameter as exc:
            return 400, JSON, error(str(exc), exc.name)
        if self.console is not None and head.path.startswith("/console"):
            return await self.console.handle(head, params, body)
        reply = await self.dispatch(head.method, head.path, params, body)
        if head.method not in SAFE_METHODS and reply[0] < 300:
            shown = body[:300].decode("utf-8", "replace")
            self.audit(self.who(head), f"{head.method} {head.path}"
                       + (f"?{head.query[:200]}" if head.query else "") + (f" {shown}" if shown else ""))
        return reply

    async def dispatch(self, method: str, path: str, params: dict[str, str],
                       body: bytes = b"") -> tuple[int, str, bytes]:
        handler = self.routes.get((method, path))
        if handler is not None:
            return await handler(params, body)
        builtin = {"/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz,
                   "/traceback": self._traceback, "/traceback/answer": self._answer,
                   "/upstreams": self._upstreams}.get(path)
        if builtin is None:
            if any(p == path for _, p in self.routes):
                return 405, JSON, error(f"{method} not allowed on {path}")
            return 404, JSON, error(f"no such endpoint: {path}")
        if method not in ("GET", "HEAD"):
            return 405, JSON, error(f"{path} answers GET only")
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
        try:
            q = query.question(params, TRACEBACK_PARAMS)
            return 200, JSON, await traceback_json(self.store_url, self.traceback, q)
        except query.QueryError as exc:
            return _query_failure(exc)

    async def _upstreams(self, params: dict[str, str]) -> tuple[int, str, bytes]:
        """``GET /upstreams?since=7d&until=...&n=100``: measures per trunk and per signer."""
        try:
            win = upstreams.window(params, time.time(), self.traceback.retention_days)
            doc = await upstreams.report(self.store_url, self.traceback, win, self.upstreams.score_min_calls)
        except query.QueryError as exc:
            return _query_failure(exc)
        return 200, JSON, json.dumps(doc).encode()

    async def _answer(self, params: dict[str, str]) -> tuple[int, str, bytes]:
        """The ITG answer for our hop (records.answer): 200 with "found" or "not found"."""
        fmt = params.pop("format", "") or "json"
        if fmt not in FORMATS:
            return 400, JSON, error(f"format: {fmt[:40]!r}: expected one of {', '.join(FORMATS)}", "format")
        try:
            q = query.question(params, ANSWER_PARAMS + ("format",))
            records = await _find(self.store_url, self.traceback, q)
        except query.QueryError as exc:
            return _query_failure(exc)
        low, high = q.range()
        request = answer.Request(q.caller, q.callee, q.at_text, q.at, q.call_id, low, high)
        doc = answer.build(request, records, self.answer_context, time.time())
        if fmt == "text":
            return 200, TEXT, answer.render(doc).encode()
        return 200, JSON, json.dumps(doc).encode()


def _loopback_host(host: str) -> bool:
    """A Host header naming this machine's loopback: localhost, 127.0.0.0/8, [::1] (any port)."""
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        name = host.partition(":")[0]
    else:
        name = host                      # a bare IPv6 address, or a name without a port
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _same_origin(origin: str, host: str) -> bool:
    """``Origin: http://host:port`` names the listener the request came to (its Host)."""
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and bool(host) and rest.lower() == host.lower()


def parse_query(text: str) -> dict[str, str]:
    """The query string as name -> value; a name given twice is ambiguous, so refused."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name in params:
            raise query.BadParameter(name[:40], "given twice")
        params[name] = value
    return params


def _query_failure(exc: query.QueryError) -> tuple[int, str, bytes]:
    """A bad parameter is the client's (400, naming it); a store that cannot answer is ours (503)."""
    if isinstance(exc, query.BadParameter):
        return 400, JSON, error(str(exc), exc.name)
    return 503, JSON, error(str(exc))


async def _find(store_url: str, cfg: TracebackConfig, q: query.Question) -> list[Any]:
    return await query.find(store_url, cfg, caller=q.caller, callee=q.callee, since=q.since, until=q.until,
                            call_id=q.call_id, at=q.at, window=q.window, limit=q.limit)


async def traceback_json(store_url: str, cfg: TracebackConfig, q: query.Question) -> bytes:
    """The answer of /traceback: records (or the campaign view with ``top=``), in UTC."""
    if q.top:
        rows = await query.top(store_url, cfg, q.top, q.since, q.until, q.n)
        return json.dumps({"top": q.top, "since": query.iso_utc(q.since), "until": query.iso_utc(q.until),
                           "rows": [{"key": k, "rejected": r, "attest_c": c} for k, r, c in rows]}).encode()
    records = await _find(store_url, cfg, q)
    low, high = q.range()
    out = {"query": {"caller": q.caller, "callee": q.callee,
                     "call_id": q.call_id, "from": query.iso_utc(low), "to": query.iso_utc(high),
                     "timezone": "UTC"},
           "count": len(records),
           "records": [{"time_utc": query.iso_utc(r.time), **r.to_dict()} for r in records]}
    return json.dumps(out).encode()


def bind_http(config: Any) -> socket.socket | None:
    """A listening socket for ``config.http_listen``, bound now (None without an http section).
    The supervisor of several workers binds it before it forks them, so /healthz and /metrics
    accept connections from the moment any worker answers SIP; those that arrive before its
    event loop turns wait in the backlog. A port already taken fails here, before any fork."""
    listen = getattr(config, "http_listen", None)
    if not listen:
        return None
    from sipguard.addresses import split_hostport

    host, port = split_hostport(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port or 9090), family=family, backlog=128)


async def start_http(config: Any, ready: health.ReadyFn | None = None, store: Any = None,
                     routes: Routes | None = None, registry: Any = None,
                     sock: socket.socket | None = None) -> HttpServer | None:
    """Serve ``config.http_listen`` ("host:port"), or ``sock`` already bound to it
    (``bind_http``); None when the config has no http section. ``store`` is accepted for the
    caller's convenience; records are read through the URL."""
    listen = getattr(config, "http_listen", None)
    if not listen:
        return None
    from sipguard.addresses import split_hostport

    host, port = split_hostport(listen)
    server = HttpServer(config.store, config.traceback, ready, routes, registry,
                        answer.context_of(config), config.http_token, config.http_limits, config.upstreams)
    server.console = console_app.Console(
        config, server.sessions, server.dispatch, server.audit,
        lambda: metrics.families(registry, console_live.WANTED), lambda: list(server.changes),
        lambda: len(metrics._worker_pids() - {os.getpid()}) or 1, config.http_secure_cookie)
    await server.start(host, port or 9090, sock)
    log.info("admin HTTP on %s:%d", host, server.port)
    return server
