"""The operator console on the admin HTTP listener: /console/*.

Pages are rendered here (console/html.py escapes every value); console/static/console.js
only polls /console/api/now for the live view, draws its charts as SVG, renders the
/upstreams table and copies the ITG answer. Changes (notices) take two steps, a form
and a confirmation page, and go through the admin API's own handlers (observe/admin.py),
so the console can do nothing the API cannot; each change is an audit line.

Every form value and query parameter is bounded here before use; the traceback search
goes through records/query.py ``question`` like /traceback, so its limits apply.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prometheus_client.core import Metric

from sipguard.console import session as sess
from sipguard.console.html import Markup, field, number, page, table, tag
from sipguard.console.live import SAMPLE_EVERY, Live, snapshot
from sipguard.errors import ConfigError, SipguardError
from sipguard.observe.http_wire import Head, Reply
from sipguard.records import answer, query, upstreams, whatif
from sipguard.records.record import CallRecord
from sipguard.store.base import LIST_KINDS, LIST_NAMES

log = logging.getLogger("sipguard.console")
HTML = "text/html; charset=utf-8"
JSONT = "application/json"
MAX_FIELD = 256
MAX_FIELDS = 32
WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "1d": 86400, "7d": 7 * 86400}
WHATIF_LIMIT = 10_000          # records a what-if reads at most (query.MAX_LIMIT)
WHATIF_SAMPLES = 10            # example calls shown per kind of change
SERIES = {"24h": (24, 3600.0), "7d": (28, 6 * 3600.0)}   # plots over time: buckets x width
SERIES_TTL = 60.0              # seconds a series answer is reused (one measure query per bucket)
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
PAGES_GET = frozenset(("/console", "/console/now", "/console/find", "/console/call", "/console/policy",
                       "/console/notices", "/console/upstreams", "/console/api/now", "/console/api/upstreams",
                       "/console/login"))
PAGES_POST = frozenset(("/console/login", "/console/logout", "/console/policy", "/console/notices/add",
                        "/console/notices/remove", "/console/lists/add", "/console/lists/remove"))
NOTICE_FIELDS = (("ref", "Reference", "FCC notice number or your ticket"),
                 ("caller_prefix", "Caller prefix", "E.164 digits, e.g. 1202555"),
                 ("caller", "Caller", "one number"), ("callee_prefix", "Callee prefix", ""),
                 ("callee", "Callee", ""), ("trunk", "Trunk", "trunk id of the config"),
                 ("frn", "FRN", "provider's FCC Registration Number"), ("spc", "Signer SPC", ""))
Dispatch = Callable[[str, str, dict[str, str], bytes], Awaitable[tuple[int, str, bytes]]]
Audit = Callable[[str, str], None]


class FormError(ValueError):
    pass


def is_public(path: str) -> bool:
    """What the console serves without a session: the login form and its static files."""
    return path == "/console/login" or path.startswith("/console/static/")


def allowed(path: str) -> frozenset[str] | None:
    """Methods a console path takes; None when it is not one of ours."""
    if path.startswith("/console/static/"):
        return frozenset(("GET", "HEAD")) if path[16:] in STATIC else None
    methods = (frozenset(("GET", "HEAD")) if path in PAGES_GET else frozenset()) | (
        frozenset(("POST",)) if path in PAGES_POST else frozenset())
    return methods or None


def parse_form(body: bytes, big: tuple[str, ...] = ()) -> dict[str, str]:
    """An application/x-www-form-urlencoded body: at most ``MAX_FIELDS`` fields, each at most
    ``MAX_FIELD`` characters but the ``big`` ones (bounded by http.max_body), none twice."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS,
                          strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise FormError(f"the form must be UTF-8 with at most {MAX_FIELDS} fields") from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise FormError(f"field {name[:40]!r} given twice")
        if name not in big and len(value) > MAX_FIELD:
            raise FormError(f"field {name[:40]!r} is over {MAX_FIELD} characters")
        out[name] = value
    return out


def safe_next(target: str) -> str:
    """Where to go after login: a console path of ours, never another site."""
    if target.startswith("/console") and all(c.isalnum() or c in "/_-?=&%.+:" for c in target) \
            and "//" not in target and len(target) <= MAX_FIELD:
        return target
    return "/console/now"


def local_time(text: str, zone: str) -> str:
    """A time typed in the form (``2026-12-06T09:30`` as a datetime-local gives it) and a
    zone (``America/New_York``, ``UTC``, ``-05:00``) as ISO 8601 with its offset, which is
    what the traceback query takes; a time that already has a zone keeps it."""
    text = text.strip()
    if not text:
        return ""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return text                     # epoch seconds or a form query.parse_time explains
    if when.tzinfo is not None or not zone.strip():
        return when.isoformat()
    zone = zone.strip()
    try:
        if zone[0] in "+-":
            offset = datetime.datetime.strptime(zone, "%z").utcoffset() if ":" not in zone else \
                datetime.datetime.fromisoformat("2000-01-01T00:00:00" + zone).utcoffset()
            assert offset is not None
            tz: datetime.tzinfo = datetime.timezone(offset)
        else:
            tz = ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError, AssertionError, IndexError):
        raise query.BadParameter("zone", f"{zone[:40]!r}: expected a zone such as America/New_York, UTC "
                                         "or -05:00") from None
    return when.replace(tzinfo=tz).isoformat()


class Console:
    def __init__(self, config: Any, sessions: sess.Sessions, dispatch: Dispatch, audit: Audit,
                 metrics: Callable[[], Iterable[Metric]], changes: Callable[[], list[str]],
                 workers: Callable[[], int], secure_cookie: bool = False) -> None:
        self.config = config
        # behind a TLS proxy: the browser sends the cookie over HTTPS only (http.secure_cookie)
        self.secure_cookie = secure_cookie
        self.sessions = sessions
        self.dispatch = dispatch
        self.audit = audit
        self.metrics = metrics
        self.changes = changes
        self.workers = workers
        self.live = Live()
        self.busy = asyncio.Lock()      # one what-if at a time
        self.series_lock = asyncio.Lock()
        self.series_cache: dict[str, tuple[float, bytes]] = {}
        self.failed_logins = 0
        self.warned = -1e9
        self.static = {name: resources.files("sipguard.console").joinpath("static", name).read_bytes()
                       for name in STATIC}

    async def sample_forever(self) -> None:
        """The live view's history while no page polls (started with the listener)."""
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            try:
                self.live.sample(self.metrics())
            except Exception:           # a metric family we cannot read must not end the sampler
                log.exception("console: cannot read the metrics")

    # -- who ----------------------------------------------------------------------------------
    def session_of(self, head: Head) -> sess.Session | None:
        return self.sessions.read(head.cookie) if head.cookie else None

    async def handle(self, head: Head, params: dict[str, str], body: bytes) -> Reply:
        path = head.path
        if path.startswith("/console/static/"):
            return 200, STATIC[path[16:]], self.static[path[16:]]
        if path == "/console/login":
            return await self.login(head, params, body)
        session = self.session_of(head)
        bearer = bool(head.bearer) and self.sessions.check_token(head.bearer)   # a script, not a browser
        if self.sessions.needs_login and session is None and not bearer:     # the gate let only these by
            return 303, HTML, b"", (("Location", "/console/login"),)
        csrf = self.sessions.csrf(session)
        who = self.sessions.who(session)
        if head.method == "POST":
            try:
                form = parse_form(body, big=("candidate",))
            except FormError as exc:
                return 400, HTML, page("Bad request", "", tag("p", {"class": "error"}, str(exc)), csrf=csrf, who=who)
            if not (bearer or self.sessions.csrf_ok(session, form.get("csrf", ""))
                    or self.sessions.csrf_ok(session, head.csrf)):
                return 403, HTML, page("Forbidden", "", tag("p", {"class": "error"},
                                                            "This form is stale or from elsewhere (CSRF token); "
                                                            "reload the page and try again."), csrf=csrf, who=who)
            if path == "/console/logout":
                self.audit(who, "console logout")
                return 303, HTML, b"", (("Location", "/console/login"), ("Set-Cookie", sess.clear_cookie(self.secure_cookie)))
            if path == "/console/policy":
                return 200, HTML, await self.policy_page(csrf, who, form)
            change = {"/console/notices/add": self.notice_add, "/console/notices/remove": self.notice_remove,
                      "/console/lists/add": self.list_add}.get(path, self.list_remove)
            return await change(csrf, who, form)
        if path == "/console":
            return 303, HTML, b"", (("Location", "/console/now"),)
        if path == "/console/api/now":
            doc = self.live.now(self.metrics(), self.workers())
            return 200, JSONT, json.dumps(doc).encode()
        if path == "/console/api/upstreams":
            return await self.upstream_series(params)
        render = {"/console/now": self.now_page, "/console/find": self.find_page, "/console/call": self.call_page,
                  "/console/notices": self.notices_page, "/console/upstreams": self.upstreams_page}.get(path)
        if render is not None:
            return await render(csrf, who, params)
        return 200, HTML, await self.policy_page(csrf, who, None)

    async def login(self, head: Head, params: dict[str, str], body: bytes) -> Reply:
        target = safe_next(params.get("next", ""))
        message = ""
        status = 200
        if not self.sessions.needs_login:
            return 303, HTML, b"", (("Location", target),)
        if head.method == "POST":
            try:
                form = parse_form(body)
            except FormError as exc:
                form, message, status = {}, str(exc), 400
            target = safe_next(form.get("next", target))
            if form and self.sessions.check_token(form.get("token", "").strip()):
                value, session = self.sessions.issue(form.get("name", ""))
                self.audit(self.sessions.who(session), "console login")
                return 303, HTML, b"", (("Location", target), ("Set-Cookie", sess.set_cookie(value, self.secure_cookie)))
            if form:
                self.failed_logins += 1
                if time.monotonic() - self.warned > 60:     # a flood of guesses must not flood the log
                    self.warned = time.monotonic()
                    log.warning("console: a login with a wrong token (%d since start)", self.failed_logins)
                message, status = "That is not the token of http.token_file.", 401
        body_html = tag("form", {"method": "post", "action": "/console/login", "class": "login"},
                        tag("p", None, "Paste the admin token (the content of http.token_file). The console "
                                       "keeps a signed session cookie for 8 hours."),
                        tag("p", {"class": "error"}, message) if message else None,
                        field("Token", "token", kind="password", required=True),
                        field("Your name", "name", placeholder="for the audit log (optional)"),
                        tag("input", {"type": "hidden", "name": "next", "value": target}),
                        tag("button", {"type": "submit"}, "Log in"))
        return status, HTML, page("Log in", "login", body_html, script=False, logged_in=False)

    # -- Now ----------------------------------------------------------------------------------
    async def now_page(self, csrf: str, who: str, params: dict[str, str]) -> Reply:
        def card(title: str, ident: str, hint: str = "") -> Markup:
            return tag("section", {"class": "card"}, tag("h2", None, title),
                       tag("div", {"id": ident, "class": "live"}, tag("p", {"class": "muted"}, "waiting for data")),
                       tag("small", None, hint) if hint else None)
        body = tag("div", {"class": "grid"},
                   tag("section", {"class": "card wide"}, tag("h2", None, "Calls per second by action"),
                       tag("div", {"id": "chart-action", "class": "chart"})),
                   tag("section", {"class": "card wide"}, tag("h2", None, "Calls per second by verstat"),
                       tag("div", {"id": "chart-verstat", "class": "chart"})),
                   card("Totals since start", "totals"), card("Attestation mix", "attest"),
                   card("Top rules hit", "rules"), card("Top upstreams by rejects", "rejects"),
                   card("Store", "store"), card("Certificates (x5u)", "x5u"), card("Service", "service"),
                   tag("p", {"id": "updated", "class": "muted"}, ""))
        return 200, HTML, page("Now", "now", body, csrf=csrf, who=who)

    # -- Find a call --------------------------------------------------------------------------
    async def find_page(self, csrf: str, who: str, params: dict[str, str]) -> Reply:
        given = {k: params.get(k, "")[:MAX_FIELD] for k in ("caller", "callee", "at", "zone", "window", "call_id")}
        form = tag("form", {"method": "get", "action": "/console/find", "class": "search"},
                   field("Caller", "caller", given["caller"], "+1 202 555 0123"),
                   field("Callee", "callee", given["callee"]),
                   field("Time", "at", given["at"], "2026-12-06T09:30", kind="datetime-local"),
                   field("Zone", "zone", given["zone"] or "UTC", "America/New_York, UTC, -05:00",
                         hint="the zone of the time, as the traceback request gives it"),
                   field("Window (s)", "window", given["window"], "300", hint="either side of the time"),
                   field("Call-ID", "call_id", given["call_id"]),
                   tag("button", {"type": "submit"}, "Search"))
        results: Any = None
        status = 200
        if any(given[k] for k in ("caller", "callee", "at", "call_id")):
            try:
                results = await self._search(given)
            except query.QueryError as exc:
                status = 400 if isinstance(exc, query.BadParameter) else 503
                results = tag("p", {"class": "error"}, str(exc))
        return status, HTML, page("Find a call", "find", [form, results], csrf=csrf, who=who)

    async def _search(self, given: dict[str, str]) -> Markup:
        params = {k: given[k] for k in ("caller", "callee", "window", "call_id") if given[k]}
        if given["at"]:
            params["at"] = local_time(given["at"], given["zone"])
        q = query.question(params, query.PARAMS)
        cfg = self.config
        records = await query.find(cfg.store, cfg.traceback, caller=q.caller, callee=q.callee, since=q.since,
                                   until=q.until, call_id=q.call_id, at=q.at, window=q.window, limit=q.limit)
        low, high = q.range()
        request = answer.Request(q.caller, q.callee, q.at_text, q.at, q.call_id, low, high)
        text = answer.render(answer.build(request, records, answer.context_of(cfg), time.time()))
        rows = [[tag("a", {"href": "/console/call?" + urlencode({"call_id": r.call_id, "t": f"{r.time:.3f}"})},
                     query.iso_utc(r.time)), r.caller or r.caller_raw, r.callee or r.callee_raw, r.trunk,
                 r.verstat, r.attest, r.rule, r.action if r.status is None else f"{r.action} {r.status}"]
                for r in records]
        return tag("div", None,
                   tag("h2", None, f"{len(records)} call(s)"),
                   table(["Time (UTC)", "Caller", "Callee", "Trunk", "Verstat", "Attest", "Rule", "Action"], rows)
                   if records else tag("p", {"class": "muted"}, "No record matches."),
                   tag("h2", None, "ITG answer"),
                   tag("pre", {"id": "itg-answer", "class": "answer"}, text),
                   tag("button", {"type": "button", "class": "copy", "data-copy": "itg-answer"}, "Copy"))

    async def call_page(self, csrf: str, who: str, params: dict[str, str]) -> Reply:
        call_id = params.get("call_id", "")[:query.MAX_TEXT]
        asked = {"call_id": call_id, "window": "5"}
        if params.get("t"):
            asked["at"] = params["t"][:40]
        try:
            q = query.question(asked, query.PARAMS)
            cfg = self.config
            records = await query.find(cfg.store, cfg.traceback, call_id=q.call_id, at=q.at, window=q.window,
                                       limit=20) if q.call_id else []
        except query.QueryError as exc:
            return 400, HTML, page("Call", "find", tag("p", {"class": "error"}, str(exc)), csrf=csrf, who=who)
        if not records:
            return 404, HTML, page("Call", "find", tag("p", None, f"No record of Call-ID {call_id!r}."),
                                   csrf=csrf, who=who)
        return 200, HTML, page(f"Call {call_id}", "find", [record_view(r) for r in records], csrf=csrf, who=who)

    # -- Policy -------------------------------------------------------------------------------
    async def policy_page(self, csrf: str, who: str, form: dict[str, str] | None) -> bytes:
        cfg = self.config
        path = cfg.policy
        hits = _rule_hits(self.metrics())
        parts: list[Any] = []
        if path is None:
            parts.append(tag("p", None, "No policy file (config key policy): the built-in default decides."))
        else:
            from sipguard.policy.loader import load_policy
            try:
                current = load_policy(path, cfg.redress)
                rows = [[r.name, r.action, r.rule_class, r.line, number(hits.get(r.name, 0))] for r in current.rules]
                parts += [tag("p", None, "In force: ", tag("code", None, path),
                              " (mode shadow)" if current.shadow else ""),
                          table(["Rule", "Action", "Class", "Line", "Hits since start"], rows)]
            except (ConfigError, OSError) as exc:
                parts.append(tag("p", {"class": "error"}, f"The policy file does not load now: {exc}"))
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read(1 << 20)
                parts.append(tag("details", None, tag("summary", None, "Policy file"), tag("pre", None, text)))
            except (OSError, UnicodeDecodeError) as exc:
                parts.append(tag("p", {"class": "error"}, f"cannot read {path}: {exc}"))
        candidate = (form or {}).get("candidate", "")
        window = (form or {}).get("window", "1d")
        result: Any = None
        if form is not None:
            result = await self._try_candidate(candidate, form.get("action", "check"), window, who)
        parts.append(tag("form", {"method": "post", "action": "/console/policy", "class": "candidate"},
                         tag("h2", None, "Try a candidate policy"),
                         tag("input", {"type": "hidden", "name": "csrf", "value": csrf}),
                         tag("textarea", {"name": "candidate", "rows": "16", "spellcheck": "false",
                                          "placeholder": "paste a policy (YAML)"}, candidate),
                         tag("label", None, tag("span", None, "Over the calls of the last"),
                             tag("select", {"name": "window"},
                                 [tag("option", {"value": k, "selected": k == window}, k) for k in WINDOWS])),
                         tag("button", {"type": "submit", "name": "action", "value": "check"}, "Check"),
                         tag("button", {"type": "submit", "name": "action", "value": "whatif"}, "What if")))
        parts.append(result)
        return page("Policy", "policy", parts, csrf=csrf, who=who)

    async def _try_candidate(self, candidate: str, action: str, window: str, who: str) -> Markup:
        from sipguard.policy.loader import check_policy, load_policy

        cfg = self.config
        if not candidate.strip():
            return tag("p", {"class": "error"}, "Paste a policy first.")
        if window not in WINDOWS:
            return tag("p", {"class": "error"}, f"window: one of {', '.join(WINDOWS)}")
        with tempfile.TemporaryDirectory(prefix="sipguard-candidate-") as folder:
            file = os.path.join(folder, "candidate.yaml")
            with open(file, "w", encoding="utf-8") as fh:
                fh.write(candidate)
            try:
                problems = check_policy(file, cfg.redress)
                if not problems and cfg.path:
                    from sipguard.policy.names import check_names, config_names
                    problems = check_names(file, *config_names(cfg.path))
            except (ConfigError, OSError) as exc:
                problems = [exc]   # type: ignore[list-item]
            shown = [str(p).replace(file, "candidate") for p in problems]
            if shown:
                return tag("div", {"id": "check-result"}, tag("h2", None, f"{len(shown)} problem(s)"),
                           tag("ul", {"class": "problems"}, [tag("li", None, s) for s in shown]))
            if action != "whatif":
                return tag("div", {"id": "check-result"}, tag("p", {"class": "ok"}, "ok: the candidate is valid"))
            if cfg.policy is None:
                return tag("p", {"class": "error"}, "No policy in force to compare with (config key policy).")
            try:
                cand = load_policy(file, cfg.redress)
                current = load_policy(cfg.policy, cfg.redress)
            except (ConfigError, OSError) as exc:
                return tag("p", {"class": "error"}, str(exc).replace(file, "candidate"))
        until = time.time()
        try:
            records = await query.find(cfg.store, cfg.traceback, since=until - WINDOWS[window], until=until,
                                       limit=WHATIF_LIMIT)
        except SipguardError as exc:
            return tag("p", {"class": "error"}, f"records: {exc}")
        if self.busy.locked():
            return tag("p", {"class": "error"}, "Another what-if is running; try again in a moment.")
        async with self.busy:   # about 0.7 s of CPU per 10,000 calls: in a thread, one at a time,
            report = await asyncio.to_thread(whatif.whatif, records, current, cand, WHATIF_SAMPLES)  # SIP goes on
        log.info("console: what-if over %s (%d calls) by %s", window, report.records, who)
        notes = [f"{report.redecided} of {report.records} call(s) re-decided on the facts they had."]
        notes += [note + "." for note in report.notes()]
        if len(records) >= WHATIF_LIMIT:
            notes.append(f"Only the latest {WHATIF_LIMIT} calls were read.")
        rules = sorted(set(report.current_rules) | set(report.candidate_rules),
                       key=lambda r: -(report.current_rules[r] + report.candidate_rules[r]))
        samples = [s for name, _ in report.transitions.most_common() for s in report.samples.get(name, [])]
        return tag("div", {"id": "whatif-result"},
                   tag("h2", None, f"What if: {report.changed} of {report.records} call(s) of the last {window} "
                                   "decided otherwise"),
                   tag("p", {"class": "muted"}, " ".join(notes)),
                   table(["In force -> candidate", "Calls"],
                         [[name, number(n)] for name, n in report.transitions.most_common()])
                   if report.transitions else tag("p", None, "No call would be decided otherwise."),
                   table(["Rule", "In force", "Candidate"],
                         [[r, number(report.current_rules[r]), number(report.candidate_rules[r])] for r in rules])
                   if rules else None,
                   tag("h2", None, f"Examples ({len(samples)})") if samples else None,
                   table(["Time (UTC)", "Caller", "Callee", "Trunk", "In force", "Candidate"],
                         [[tag("a", {"href": "/console/call?" + urlencode({"call_id": c.call_id,
                                                                          "t": f"{c.time:.3f}"})},
                               query.iso_utc(c.time)), c.caller, c.callee, c.trunk,
                           c.current, c.candidate] for c in samples]) if samples else None)

    # -- Notices ------------------------------------------------------------------------------
    async def notices_page(self, csrf: str, who: str, params: dict[str, str], note: Any = None,
                           status: int = 200) -> Reply:
        code, _, raw = await self.dispatch("GET", "/admin/notices", {}, b"")
        if code == 200:
            notices = json.loads(raw)
            rows = [[n["ref"], _conditions(n), _when(n.get("start")), _when(n.get("end")),
                     _post_form("/console/notices/remove", csrf, {"ref": n["ref"]}, "Remove…")] for n in notices]
            listing: Any = table(["Reference", "Conditions", "From", "Until", ""], rows) if rows else \
                tag("p", {"class": "muted"}, "No notice rules.")
        elif code == 404:
            listing = tag("p", {"class": "muted"}, "Notices need a shared store (several workers on memory stores).")
        else:
            listing = tag("p", {"class": "error"}, _error_text(raw))
        add = tag("form", {"method": "post", "action": "/console/notices/add", "class": "notice"},
                  tag("h2", None, "Add a notice rule"),
                  tag("input", {"type": "hidden", "name": "csrf", "value": csrf}),
                  [field(label, name, hint=hint, required=name == "ref") for name, label, hint in NOTICE_FIELDS],
                  field("From (UTC)", "start", kind="datetime-local"), field("Until (UTC)", "end", kind="datetime-local"),
                  tag("button", {"type": "submit"}, "Review…"))
        code, _, raw = await self.dispatch("GET", "/admin/lists", {}, b"")
        if code == 200:
            entries = [[e["list"], e["kind"], e["value"], e.get("note") or "",
                        _post_form("/console/lists/remove", csrf, {"kind": e["kind"], "value": e["value"]}, "Remove…")]
                       for e in json.loads(raw)]
            lists: Any = table(["List", "Kind", "Value", "Note", ""], entries) if entries else \
                tag("p", {"class": "muted"}, "No list entries.")
        else:
            lists = tag("p", {"class": "muted"}, "Lists need a shared store (several workers on memory stores).") \
                if code == 404 else tag("p", {"class": "error"}, _error_text(raw))
        add_entry = tag("form", {"method": "post", "action": "/console/lists/add", "class": "notice list-entry"},
                        tag("h2", None, "Add a list entry"),
                        tag("input", {"type": "hidden", "name": "csrf", "value": csrf}),
                        _select("List", "list", LIST_NAMES), _select("Kind", "kind", LIST_KINDS),
                        field("Value", "value", placeholder="+12025550123, 1202555, a trunk id or an SPC",
                              required=True),
                        field("Note", "note", placeholder="who, why, ticket"),
                        tag("button", {"type": "submit"}, "Review…"))
        recent = self.changes()
        body = [note, tag("h2", None, "Notice rules in force"), listing, add,
                tag("h2", None, "Allow and block lists"), lists, add_entry,
                tag("h2", None, "Recent changes (this process)"),
                tag("ul", {"class": "audit"}, [tag("li", None, line) for line in recent]) if recent else
                tag("p", {"class": "muted"}, "none since start")]
        return status, HTML, page("Notices and lists", "notices", body, csrf=csrf, who=who)

    async def notice_add(self, csrf: str, who: str, form: dict[str, str]) -> Reply:
        doc: dict[str, Any] = {name: form[name].strip() for name, _, _ in NOTICE_FIELDS if form.get(name, "").strip()}
        try:
            for key in ("start", "end"):
                if form.get(key, "").strip():
                    doc[key] = query.parse_time(form[key], key)
        except query.BadParameter as exc:
            return await self.notices_page(csrf, who, {}, tag("p", {"class": "error"}, str(exc)), 400)
        body = json.dumps(doc).encode()
        if form.get("confirm") != "yes":
            from sipguard.observe.admin import FieldError, notice_from_json
            try:
                notice_from_json(body)          # the API's checks, before asking to confirm
            except FieldError as exc:
                return await self.notices_page(csrf, who, {}, tag("p", {"class": "error"}, str(exc)), 400)
            hidden = {k: form.get(k, "") for k in [n for n, _, _ in NOTICE_FIELDS] + ["start", "end"]}
            return _confirm("Add this notice rule?", tag("p", None, "Calls matching every condition will be "
                                                                    "rejected from now on: ",
                                                         tag("strong", None, _conditions(doc)),
                                                         f" (reference {doc.get('ref', '')})"),
                            "/console/notices/add", csrf, who, hidden, "Confirm: add")
        code, _, raw = await self.dispatch("POST", "/admin/notices", {}, body)
        if code == 201:
            self.audit(who, f"notice add {_short(doc)}")
            return await self.notices_page(csrf, who, {}, tag("p", {"class": "ok"}, f"Added notice {doc['ref']}."))
        return await self.notices_page(csrf, who, {}, tag("p", {"class": "error"}, _error_text(raw)), code)

    async def notice_remove(self, csrf: str, who: str, form: dict[str, str]) -> Reply:
        ref = form.get("ref", "")
        if not ref:
            return await self.notices_page(csrf, who, {}, tag("p", {"class": "error"}, "which notice? (ref)"), 400)
        if form.get("confirm") != "yes":
            return _confirm(f"Remove notice rule {ref}?", tag("p", None, "Calls it blocks will be decided by the "
                                                                         "policy again."),
                            "/console/notices/remove", csrf, who, {"ref": ref}, "Confirm: remove")
        code, _, raw = await self.dispatch("DELETE", "/admin/notices", {"ref": ref}, b"")
        if code == 200:
            self.audit(who, f"notice remove {ref!r}")
            return await self.notices_page(csrf, who, {}, tag("p", {"class": "ok"}, f"Removed notice {ref}."))
        return await self.notices_page(csrf, who, {}, tag("p", {"class": "error"}, _error_text(raw)), code)

    async def list_add(self, csrf: str, who: str, form: dict[str, str]) -> Reply:
        from sipguard.observe.admin import FieldError, list_entry_from_json

        doc = {k: form.get(k, "").strip() for k in ("kind", "list", "value", "note")}
        body = json.dumps({k: v for k, v in doc.items() if v or k != "note"}).encode()
        try:
            entry = list_entry_from_json(body)          # the API's checks, before asking to confirm
        except FieldError as exc:
            return await self.notices_page(csrf, who, {}, tag("p", {"class": "error"}, f"{exc.name}: {exc}"), 400)
        if form.get("confirm") != "yes":
            effect = ("Calls it matches will be rejected (block list), whatever else the policy says."
                      if entry.list_name == "block" else "Calls it matches will be forwarded (allow list) "
                                                         "unless a block entry matches too.")
            return _confirm(f"Put {entry.kind} {entry.value} on the {entry.list_name} list?", tag("p", None, effect),
                            "/console/lists/add", csrf, who, doc, "Confirm: add")
        code, _, raw = await self.dispatch("POST", "/admin/lists", {}, body)
        if code == 201:
            self.audit(who, f"list add {entry.list_name} {entry.kind} {entry.value}"
                       + (f" ({entry.note})" if entry.note else ""))
            return await self.notices_page(csrf, who, {}, tag("p", {"class": "ok"},
                                                             f"Added {entry.kind} {entry.value} to the "
                                                             f"{entry.list_name} list."))
        return await self.notices_page(csrf, who, {}, tag("p", {"class": "error"}, _error_text(raw)), code)

    async def list_remove(self, csrf: str, who: str, form: dict[str, str]) -> Reply:
        kind, value = form.get("kind", ""), form.get("value", "")
        if form.get("confirm") != "yes":
            return _confirm(f"Remove {kind} {value} from the lists?", tag("p", None, "Calls it matches will be "
                                                                                      "decided by the policy."),
                            "/console/lists/remove", csrf, who, {"kind": kind, "value": value}, "Confirm: remove")
        code, _, raw = await self.dispatch("DELETE", "/admin/lists", {"kind": kind, "value": value}, b"")
        if code == 200:
            self.audit(who, f"list remove {kind} {value}")
            return await self.notices_page(csrf, who, {}, tag("p", {"class": "ok"}, f"Removed {kind} {value}."))
        return await self.notices_page(csrf, who, {}, tag("p", {"class": "error"}, _error_text(raw)), code)

    # -- Upstreams ----------------------------------------------------------------------------
    async def upstreams_page(self, csrf: str, who: str, params: dict[str, str]) -> Reply:
        trunk = params.get("trunk")
        if trunk is not None:
            return await self.upstream_page(csrf, who, trunk)
        body = [tag("p", {"class": "muted"}, "Per upstream and per signer over the last 7 days, from GET "
                                              "/upstreams?since=7d; the plots: calls and unsigned share per "
                                              "hour over the last 24 hours. A trunk's name opens its page."),
                tag("div", {"id": "upstreams", "data-source": "/upstreams?since=7d",
                            "data-series": "/console/api/upstreams?window=24h"},
                    tag("p", {"class": "muted"}, "loading"))]
        return 200, HTML, page("Upstreams", "upstreams", body, csrf=csrf, who=who)

    async def upstream_page(self, csrf: str, who: str, trunk: str) -> Reply:
        """One upstream: its measures over 7 days and its plots over 24 hours and 7 days."""
        if not trunk or len(trunk) > MAX_FIELD or not trunk.isprintable():
            return 400, HTML, page("Bad request", "upstreams", tag("p", {"class": "error"}, "trunk: not a trunk id"),
                                   csrf=csrf, who=who)
        known = [t for t in self.config.trunks if t.id == trunk]
        about = (f"{known[0].provider.name or '-'} (FRN {known[0].provider.frn or '-'}, RMD "
                 f"{known[0].provider.rmd or '-'}), role {known[0].role}") if known else "not in the config now"
        body = [tag("p", {"class": "muted"}, about),
                tag("p", None, tag("a", {"href": "/console/upstreams"}, "All upstreams")),
                tag("div", {"id": "upstream", "data-trunk": trunk, "data-source": "/upstreams?since=7d&n=1000",
                            "data-series": "/console/api/upstreams?window=24h",
                            "data-series-week": "/console/api/upstreams?window=7d"},
                    tag("p", {"class": "muted"}, "loading"))]
        return 200, HTML, page(f"Upstream {trunk}", "upstreams", body, csrf=csrf, who=who)

    async def upstream_series(self, params: dict[str, str]) -> Reply:
        """``/console/api/upstreams?window=24h|7d``: records/upstreams.series, computed at most
        once a minute per window (each answer is one measure query per bucket) and one at a time."""
        window = params.get("window", "24h")
        if window not in SERIES or set(params) - {"window"}:
            return 400, JSONT, json.dumps({"error": f"window: expected one of {', '.join(SERIES)}"}).encode()
        async with self.series_lock:
            now = time.time()
            cached = self.series_cache.get(window)
            if cached is not None and now - cached[0] < SERIES_TTL:
                return 200, JSONT, cached[1]
            buckets, width = SERIES[window]
            try:
                doc = await upstreams.series(self.config.store, self.config.traceback, now, buckets, width,
                                             self.config.upstreams.score_min_calls)
            except SipguardError as exc:
                return 503, JSONT, json.dumps({"error": str(exc)}).encode()
            raw = json.dumps(doc).encode()
            self.series_cache[window] = (now, raw)
            return 200, JSONT, raw


# -- pieces ---------------------------------------------------------------------------------------
RECORD_GROUPS = (
    ("Received", ("time", "call_id", "source_ip", "source_port", "transport", "trunk", "trunk_role",
                  "provider_name", "provider_frn", "provider_rmd", "provider_country", "caller_raw", "callee_raw")),
    ("Identity", ("verstat", "attest", "origid", "x5u", "spc", "reasons")),
    ("Facts", ("caller", "callee", "rmd_snapshot", "notice")),
    ("Decision", ("rule", "rule_class", "action", "status", "shadow_action")),
    ("Sent", ("next_hop", "signed", "signed_attest", "signed_origid", "signed_rule", "identity_dropped", "instance")),
)


def record_view(record: CallRecord) -> Markup:
    """One record as the page shows it: what came in, the Identity result, the facts it
    keeps, the decision and what went out."""
    data = record.to_dict()
    data["time"] = f"{query.iso_utc(record.time)} ({record.time:.3f})"
    shown: set[str] = set()
    sections = []
    for title, keys in RECORD_GROUPS:
        rows = []
        for key in keys:
            shown.add(key)
            value = data.get(key)
            if isinstance(value, list | tuple):
                value = ", ".join(str(v) for v in value) or "(none)"
            rows.append(tag("tr", None, tag("th", None, key), tag("td", None, "" if value is None else str(value))))
        sections.append(tag("section", {"class": "card"}, tag("h2", None, title),
                            tag("table", {"class": "record"}, tag("tbody", None, rows))))
    rest = [tag("tr", None, tag("th", None, k), tag("td", None, str(v))) for k, v in data.items() if k not in shown]
    if rest:
        sections.append(tag("section", {"class": "card"}, tag("h2", None, "Other"),
                            tag("table", {"class": "record"}, tag("tbody", None, rest))))
    return tag("div", {"class": "grid record-view"}, sections)


def _confirm(title: str, text: Markup, action: str, csrf: str, who: str, values: dict[str, str],
             label: str) -> Reply:
    """The second step of a change: what it will do, a button that does it, a way out."""
    section = tag("section", {"class": "confirm"}, tag("h2", None, title), text,
                  _post_form(action, csrf, {**values, "confirm": "yes"}, label),
                  tag("a", {"href": "/console/notices"}, "Cancel"))
    return 200, HTML, page("Notices and lists", "notices", section, csrf=csrf, who=who)


def _select(label: str, name: str, options: tuple[str, ...]) -> Markup:
    return tag("label", None, tag("span", None, label),
               tag("select", {"name": name}, [tag("option", {"value": o}, o) for o in options]))


def _post_form(action: str, csrf: str, values: dict[str, str], label: str) -> Markup:
    return tag("form", {"method": "post", "action": action, "class": "inline"},
               tag("input", {"type": "hidden", "name": "csrf", "value": csrf}),
               [tag("input", {"type": "hidden", "name": k, "value": v}) for k, v in values.items()],
               tag("button", {"type": "submit"}, label))


def _conditions(n: dict[str, Any]) -> str:
    return ", ".join(f"{k} {n[k]}" for k, _, _ in NOTICE_FIELDS if k != "ref" and n.get(k)) or "(none)"


def _when(value: Any) -> str:
    return (query.iso_utc(float(value)) or "") if isinstance(value, int | float) else ""


def _short(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True)[:300]


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", raw[:200].decode("utf-8", "replace")))
    except (ValueError, AttributeError):
        return raw[:200].decode("utf-8", "replace")


def _rule_hits(families: Iterable[Metric]) -> dict[str, float]:
    return dict(snapshot(families)["by"].get("rules", {}))


def login_redirect(path: str, query_text: str) -> Reply:
    target = path + ("?" + query_text if query_text else "")
    return 303, HTML, b"", (("Location", "/console/login?next=" + quote(safe_next(target), safe="")),)


