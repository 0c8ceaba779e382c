"""The operator console's pure parts: HTML escaping, the session cookie, form and
parameter bounds, who may reach what (HttpServer.admit), the live numbers and the what-if
(issue 20). The browser test is tests/integration/test_console_browser.py."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from sipguard.console import app
from sipguard.console import session as sess
from sipguard.console.html import Markup, page, tag
from sipguard.console.live import WANTED, Live, snapshot
from sipguard.observe.admin import list_routes, notice_routes
from sipguard.observe.http import HttpServer
from sipguard.observe.http_wire import Head, parse_head, response
from sipguard.observe.metrics import Metrics
from sipguard.observe.metrics import families as metrics_families
from sipguard.policy.loader import load_policy
from sipguard.policy.model import Redress
from sipguard.records import query
from sipguard.records.measures import UpstreamsConfig
from sipguard.records.record import TracebackConfig
from sipguard.store.memory import MemoryStore
from tests.records_fixtures import make_record

TOKEN = "console-unit-token-0123456789"
NOW = 1_800_000_000.0


# -- escaping ---------------------------------------------------------------------------------
@given(st.text())
def test_any_text_round_trips_escaped_in_text_and_attributes(text: str) -> None:
    out = tag("p", {"title": text}, text)
    match = re.fullmatch(r'<p title="([^"<>]*)">([^<>]*)</p>', out, re.S)
    assert match, out
    assert html.unescape(match.group(1)) == text
    assert html.unescape(match.group(2)) == text


@given(st.lists(st.text(max_size=20), max_size=5))
def test_nested_children_are_escaped_and_markup_is_not(parts: list[str]) -> None:
    out = tag("div", None, [tag("span", None, p) for p in parts], Markup("<br>"))
    assert out.count("<span>") == len(parts) and out.endswith("<br></div>")
    assert [html.unescape(s) for s in re.findall(r"<span>([^<>]*)</span>", out)] == parts


def test_page_has_no_inline_script_and_escapes_the_title() -> None:
    body = page("<b>x</b>", "now", "<script>alert(1)</script>", csrf='a"b', who="<i>")
    text = body.decode()
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>x" not in text and 'content="a&quot;b"' in text
    assert re.findall(r"<script[^>]*>", text) == ['<script src="/console/static/console.js" defer>']


def test_tag_names_are_ours() -> None:
    with pytest.raises(AssertionError):
        tag("p onclick", None)
    with pytest.raises(AssertionError):
        tag("p", {'x"y': "1"})


# -- sessions ---------------------------------------------------------------------------------
def test_a_session_round_trips_and_expires() -> None:
    sessions = sess.Sessions(TOKEN)
    value, issued = sessions.issue("Alice", now=NOW)
    header = f"other=1; {sess.COOKIE}={value}"
    assert sessions.read(header, now=NOW + 10) == issued
    assert issued.name == "Alice" and issued.expires == NOW + sess.LIFETIME
    assert sessions.read(header, now=NOW + sess.LIFETIME) is None          # expired
    assert sess.Sessions("another-token-0123456789").read(header, now=NOW) is None
    assert sessions.who(issued) == f"Alice ({sess.fingerprint(TOKEN)})"
    assert TOKEN not in sessions.who(issued) and TOKEN not in value


@given(st.text(max_size=100))
def test_any_name_is_kept_printable_and_bounded(name: str) -> None:
    sessions = sess.Sessions(TOKEN)
    value, issued = sessions.issue(name, now=NOW)
    back = sessions.read(f"{sess.COOKIE}={value}", now=NOW)
    assert back == issued and back.name == sess.clean_name(name)
    assert len(back.name) <= sess.MAX_NAME and all(c.isprintable() for c in back.name)
    assert ";" not in value and " " not in value and "," not in value


@given(st.integers(min_value=0), st.characters(codec="ascii"))
def test_any_altered_cookie_is_no_session(position: int, char: str) -> None:
    sessions = sess.Sessions(TOKEN)
    value, _ = sessions.issue("Bob", now=NOW)
    i = position % len(value)
    altered = value[:i] + char + value[i + 1:]
    if altered != value:
        assert sessions.read(f"{sess.COOKIE}={altered}", now=NOW) is None


def test_cookie_edge_cases() -> None:
    sessions = sess.Sessions(TOKEN)
    value, _ = sessions.issue("", now=NOW)
    assert sessions.read(f"{sess.COOKIE}={value}; {sess.COOKIE}={value}", now=NOW) is None   # twice
    assert sessions.read(f"{sess.COOKIE}={value}" + "A" * sess.MAX_COOKIE, now=NOW) is None
    assert sessions.read("", now=NOW) is None and sessions.read("garbage", now=NOW) is None
    cookie = sess.set_cookie(value)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert "Secure" in sess.set_cookie(value, secure=True) and "Max-Age=0" in sess.clear_cookie()


def test_csrf_is_per_session_and_per_token() -> None:
    sessions = sess.Sessions(TOKEN)
    _, a = sessions.issue("a", now=NOW)
    _, b = sessions.issue("b", now=NOW)
    assert sessions.csrf(a) != sessions.csrf(b)
    assert sessions.csrf_ok(a, sessions.csrf(a)) and not sessions.csrf_ok(a, sessions.csrf(b))
    assert not sessions.csrf_ok(a, "") and sess.Sessions("x" * 20).csrf(a) != sessions.csrf(a)
    assert not sessions.check_token(TOKEN + "x") and sessions.check_token(TOKEN)
    assert not sess.Sessions(None).needs_login and not sess.Sessions(None).check_token("")


# -- forms and parameters -----------------------------------------------------------------------
def test_forms_are_bounded() -> None:
    assert app.parse_form(b"a=1&b=%3Cx%3E") == {"a": "1", "b": "<x>"}
    for bad in (b"a=1&a=2", b"a=" + b"x" * (app.MAX_FIELD + 1), b"\xff=1",
                b"&".join(b"f%d=1" % i for i in range(app.MAX_FIELDS + 1))):
        with pytest.raises(app.FormError):
            app.parse_form(bad)
    assert len(app.parse_form(b"candidate=" + b"x" * 5000, big=("candidate",))["candidate"]) == 5000


@given(st.text(max_size=300))
def test_after_login_only_console_paths(target: str) -> None:
    out = app.safe_next(target)
    assert out.startswith("/console") and "//" not in out and "\\" not in out and len(out) <= app.MAX_FIELD


def test_local_times_take_the_zone_of_the_form() -> None:
    assert app.local_time("2026-12-06T09:30", "America/New_York") == "2026-12-06T09:30:00-05:00"
    assert app.local_time("2026-07-06T09:30", "America/New_York") == "2026-07-06T09:30:00-04:00"
    assert app.local_time("2026-12-06T09:30", "-05:00") == "2026-12-06T09:30:00-05:00"
    assert app.local_time("2026-12-06T09:30Z", "America/New_York") == "2026-12-06T09:30:00+00:00"
    assert app.local_time("1765000000", "UTC") == "1765000000" and app.local_time("", "UTC") == ""
    for zone in ("Mars/Olympus", "+99:00", "../../etc/passwd"):
        with pytest.raises(query.BadParameter) as caught:
            app.local_time("2026-12-06T09:30", zone)
        assert caught.value.name == "zone"


# -- who may reach what ---------------------------------------------------------------------------
def server(token: str | None = TOKEN, store: Any = None, secure_cookie: bool = False) -> HttpServer:
    store = store or MemoryStore()
    routes = {**notice_routes(store), **list_routes(store)}
    srv = HttpServer("memory", TracebackConfig(), routes=routes, token=token)
    config = SimpleNamespace(store="memory", traceback=TracebackConfig(), policy=None, redress=None, path=None,
                             trunks=[], signing=None, upstreams=UpstreamsConfig())
    srv.console = app.Console(config, srv.sessions, srv.dispatch, srv.audit, lambda: [], lambda: list(srv.changes),
                              lambda: 1, secure_cookie)
    return srv


def head(method: str, target: str, **headers: str) -> Head:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1:9090"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return parse_head("\r\n".join(lines).encode())


def test_without_a_session_pages_go_to_login_and_data_is_refused() -> None:
    srv = server()
    refused = srv.admit(head("GET", "/console/find?caller=1"))
    assert refused is not None and refused[0] == 303
    assert dict(refused[3])["Location"] == "/console/login?next=%2Fconsole%2Ffind%3Fcaller%3D1"  # type: ignore[misc]
    for method, path in (("GET", "/console/api/now"), ("GET", "/traceback"), ("POST", "/admin/notices"),
                         ("POST", "/console/notices/add")):
        reply = srv.admit(head(method, path))
        assert reply is not None and reply[0] in (401, 303), path
    assert srv.admit(head("GET", "/console/login")) is None
    assert srv.admit(head("GET", "/console/static/console.js")) is None
    assert srv.admit(head("GET", "/console/static/../../etc/passwd"))[0] == 404  # type: ignore[index]
    assert srv.admit(head("GET", "/metrics")) is None


def test_a_session_reads_and_changes_only_with_its_csrf_token() -> None:
    srv = server()
    value, session = srv.sessions.issue("Carol")
    cookie = f"{sess.COOKIE}={value}"
    assert srv.admit(head("GET", "/console/now", Cookie=cookie)) is None
    assert srv.admit(head("GET", "/traceback", Cookie=cookie)) is None
    refused = srv.admit(head("POST", "/admin/notices", Cookie=cookie))
    assert refused is not None and refused[0] == 403
    assert srv.admit(head("POST", "/admin/notices", Cookie=cookie, X_Sipguard_CSRF=srv.sessions.csrf(session))) is None
    assert srv.admit(head("GET", "/traceback", Authorization=f"Bearer {TOKEN}")) is None


def test_a_browser_post_from_another_origin_is_refused_even_without_a_token() -> None:
    for srv in (server(), server(token=None)):
        reply = srv.admit(head("POST", "/admin/notices", Origin="http://evil.example", Authorization=f"Bearer {TOKEN}"))
        assert reply is not None and reply[0] == 403
        assert srv.admit(head("DELETE", "/admin/notices?ref=x", Origin="null", Authorization=f"Bearer {TOKEN}"))[0] == 403  # type: ignore[index]
        assert srv.admit(head("POST", "/admin/notices", Origin="http://127.0.0.1:9090",
                              Authorization=f"Bearer {TOKEN}")) is None


@pytest.mark.parametrize(("host", "ok"), [("127.0.0.1:9090", True), ("localhost:9090", True), ("[::1]:9090", True),
                                          ("127.0.0.2", True), ("evil.example:9090", False), ("10.0.0.1:9090", False),
                                          ("[2001:db8::1]:9090", False)])
def test_without_a_token_only_loopback_names_reach_the_listener(host: str, ok: bool) -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 is same-origin with itself."""
    srv = server(token=None)
    h = parse_head(f"GET /traceback HTTP/1.1\r\nHost: {host}".encode())
    assert (srv.admit(h) is None) is ok
    assert srv.admit(parse_head(f"GET /metrics HTTP/1.1\r\nHost: {host}".encode())) is None


def test_every_answer_carries_the_security_headers_and_no_split_header() -> None:
    raw = response((303, "text/html", b"", (("Location", "/x\r\nSet-Cookie: evil=1"), ("Set-Cookie", "a=1"))))
    text = raw.decode()
    assert "Content-Security-Policy: default-src 'self'" in text and "X-Frame-Options: DENY" in text
    assert "evil" not in text and "Set-Cookie: a=1\r\n" in text


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_login_logout_and_a_notice_through_the_confirmation() -> None:
    store = MemoryStore()
    srv = server(store=store)

    async def go() -> None:
        body = urlencode({"token": "wrong-token-0123456789", "next": "/console/notices"}).encode()
        assert (await srv.handle(head("POST", "/console/login"), body))[0] == 401
        assert (await srv.handle(head("POST", "/console/login"), body))[0] == 401
        assert srv.console is not None and srv.console.failed_logins == 2
        body = urlencode({"token": TOKEN, "name": "Dan <admin>", "next": "https://evil.example/"}).encode()
        reply = await srv.handle(head("POST", "/console/login"), body)
        headers = dict(reply[3])  # type: ignore[misc]
        assert reply[0] == 303 and headers["Location"] == "/console/now"
        cookie = headers["Set-Cookie"].split(";")[0]
        session = srv.sessions.read(cookie)
        assert session is not None and session.name == "Dan <admin>"
        csrf = srv.sessions.csrf(session)
        form = {"ref": "<img src=x onerror=alert(1)>", "caller_prefix": "1202555"}
        # without the CSRF field: refused, nothing added
        reply = await srv.handle(head("POST", "/console/notices/add", Cookie=cookie), urlencode(form).encode())
        assert reply[0] == 403 and await store.notice_list() == []
        # first step: a confirmation page, nothing added yet
        reply = await srv.handle(head("POST", "/console/notices/add", Cookie=cookie),
                                 urlencode({**form, "csrf": csrf}).encode())
        assert reply[0] == 200 and b"Add this notice rule?" in reply[2] and await store.notice_list() == []
        assert b"<img" not in reply[2] and b"&lt;img src=x" in reply[2]
        reply = await srv.handle(head("POST", "/console/notices/add", Cookie=cookie),
                                 urlencode({**form, "csrf": csrf, "confirm": "yes"}).encode())
        assert reply[0] == 200 and [n.ref for n in await store.notice_list()] == [form["ref"]]
        assert b"<img" not in reply[2] and b"Dan &lt;admin&gt;" in reply[2]
        assert "Dan <admin> (sha256:" in srv.changes[0] and "notice add" in srv.changes[0]
        # a bad field is the API's 400, named, and nothing is asked to confirm
        reply = await srv.handle(head("POST", "/console/notices/add", Cookie=cookie),
                                 urlencode({"ref": "x", "caller_prefix": "12ab", "csrf": csrf}).encode())
        assert reply[0] == 400 and b"caller_prefix" in reply[2]
        reply = await srv.handle(head("POST", "/console/notices/remove", Cookie=cookie),
                                 urlencode({"ref": form["ref"], "csrf": csrf, "confirm": "yes"}).encode())
        assert reply[0] == 200 and await store.notice_list() == []
        reply = await srv.handle(head("POST", "/console/logout", Cookie=cookie), urlencode({"csrf": csrf}).encode())
        assert reply[0] == 303 and "Max-Age=0" in dict(reply[3])["Set-Cookie"]  # type: ignore[misc]

    run(go())


def test_a_list_entry_through_the_confirmation_and_the_api_checks() -> None:
    store = MemoryStore()
    srv = server(store=store)
    value, session = srv.sessions.issue("Eve")
    cookie = f"{sess.COOKIE}={value}"
    csrf = srv.sessions.csrf(session)

    async def go() -> None:
        form = {"list": "block", "kind": "number", "value": "+1 (202) 555-0199", "note": "ticket <42>", "csrf": csrf}
        reply = await srv.handle(head("POST", "/console/lists/add", Cookie=cookie), urlencode(form).encode())
        assert reply[0] == 200 and b"Put number 12025550199 on the block list?" in reply[2]
        assert await store.list_show() == []
        reply = await srv.handle(head("POST", "/console/lists/add", Cookie=cookie),
                                 urlencode({**form, "confirm": "yes"}).encode())
        assert reply[0] == 200 and b"ticket &lt;42&gt;" in reply[2]
        assert [(e.list_name, e.kind, e.value) for e in await store.list_show()] == [("block", "number", "12025550199")]
        assert srv.changes[0].endswith("list add block number 12025550199 (ticket <42>)")
        bad = await srv.handle(head("POST", "/console/lists/add", Cookie=cookie),
                               urlencode({**form, "kind": "colour"}).encode())
        assert bad[0] == 400 and b"kind" in bad[2]
        reply = await srv.handle(head("POST", "/console/lists/remove", Cookie=cookie),
                                 urlencode({"kind": "number", "value": "12025550199", "csrf": csrf,
                                            "confirm": "yes"}).encode())
        assert reply[0] == 200 and await store.list_show() == []

    run(go())


@pytest.mark.parametrize(("method", "target", "body", "status", "parameter"), [
    ("POST", "/admin/lists", b'{"kind": "number", "list": "block", "value": "12ab"}', 400, "value"),
    ("POST", "/admin/lists", b'{"kind": "number", "list": "grey", "value": "1202"}', 400, "list"),
    ("POST", "/admin/lists", b'{"kind": "number", "list": "block", "value": "1202", "x": 1}', 400, "x"),
    ("POST", "/admin/lists", b'[1]', 400, "body"),
    ("POST", "/admin/lists", b'{"kind": "trunk", "list": "allow", "value": "a\\u0000b"}', 400, "value"),
    ("GET", "/admin/lists?kind=colour", b"", 400, "kind"),
    ("DELETE", "/admin/lists?kind=number", b"", 400, "value"),
    ("DELETE", "/admin/lists?kind=number&value=1999", b"", 404, None),
])
def test_list_api_refuses_what_it_cannot_use(method: str, target: str, body: bytes, status: int,
                                              parameter: str | None) -> None:
    srv = server()
    reply = run(srv.handle(head(method, target, Authorization=f"Bearer {TOKEN}"), body))
    assert reply[0] == status, reply
    if parameter is not None:
        assert __import__("json").loads(reply[2])["parameter"] == parameter


def test_the_bearer_token_opens_the_console_too() -> None:
    srv = server()
    reply = run(srv.handle(head("GET", "/console/api/now", Authorization=f"Bearer {TOKEN}"), b""))
    assert reply[0] == 200 and b'"workers": 1' in reply[2]
    reply = run(srv.handle(head("GET", "/console/api/now", Authorization="Bearer not-the-token-0123456789"), b""))
    assert reply[0] == 303


def test_api_changes_with_the_bearer_token_are_audited() -> None:
    srv = server()
    reply = run(srv.handle(head("POST", "/admin/notices", Authorization=f"Bearer {TOKEN}"),
                           b'{"ref": "N1", "caller_prefix": "1202"}'))
    assert reply[0] == 201
    assert srv.changes[0].endswith(f'{sess.fingerprint(TOKEN)}: POST /admin/notices {{"ref": "N1", "caller_prefix": "1202"}}')


# -- live numbers and what-if -----------------------------------------------------------------------
def test_live_numbers_come_from_the_metrics() -> None:
    metrics = Metrics()
    for i in range(4):
        metrics.observe_decision(make_record(i, action="reject", status=603, rule="robocall", attest="C"), 0.001)
    metrics.observe_decision(make_record(9), 0.001)
    live = Live()
    first = live.now(metrics_families(metrics.registry), workers=1, at=NOW)
    assert first["totals"]["action"] == {"reject": 4.0, "forward": 1.0} and first["series"] == []
    assert first["rules"] == [["robocall", 4.0]] and first["rejects_by_trunk"] == [["carrier-a", 4.0]]
    assert first["totals"]["attest"] == {"C": 4.0, "none": 1.0}
    metrics.observe_decision(make_record(10, action="reject", status=603, rule="robocall"), 0.001)
    live.sample(metrics_families(metrics.registry), at=NOW + 0.5)      # too soon after the last: not kept
    second = live.now(metrics_families(metrics.registry), workers=1, at=NOW + 2)
    assert second["series"][-1]["action"] == {"reject": 0.5, "forward": 0.0} and len(live.samples) == 2
    assert snapshot([])["by"] == {}
    # what the page reads is what /metrics exports
    exported = snapshot(text_string_to_metric_families(metrics.render()[0].decode()))
    assert exported["by"] == snapshot(metrics_families(metrics.registry))["by"]
    restricted = snapshot(metrics_families(metrics.registry, WANTED))     # only the series it reads
    assert restricted["by"] == exported["by"] and restricted["gauges"]["memory_bytes"] > 0


def test_whatif_shows_the_calls_a_candidate_decides_otherwise(tmp_path: Path) -> None:
    """The console's what-if is records/whatif.py, the function of ``sipguard policy whatif``."""
    from sipguard.records import whatif

    redress = Redress(url="https://example.net/redress")
    current = tmp_path / "current.yaml"
    current.write_text("version: 1\ndefault: {action: forward}\nrules: []\n")
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("version: 1\ndefault: {action: forward}\nrules:\n"
                         "  - name: no-202\n    when: {caller: {prefix: '1202'}}\n    action: reject\n"
                         "    class: deterministic\n")
    facts = {"caller_dno": False, "list": None, "limited": []}
    records = [make_record(0, facts=facts),
               make_record(1, caller_raw="sip:+13125550100@x", caller="13125550100", facts=facts)]
    report = whatif.whatif(records, load_policy(str(current), redress), load_policy(str(candidate), redress))
    assert (report.records, report.redecided, report.changed) == (2, 2, 1)
    assert dict(report.transitions) == {"forward [default] -> reject 603 [no-202]": 1}
    assert [s.call_id for s in report.samples["forward [default] -> reject 603 [no-202]"]] == ["call-0@198.51.100.7"]


@pytest.mark.parametrize(("target", "status"), [
    ("/console/api/upstreams?window=1y", 400), ("/console/api/upstreams?window=24h&x=1", 400),
    ("/console/upstreams?trunk=" + "x" * 300, 400), ("/console/upstreams?trunk=a%0Ab", 400),
])
def test_upstream_pages_refuse_what_they_cannot_use(target: str, status: int) -> None:
    srv = server()
    reply = run(srv.handle(head("GET", target, Authorization=f"Bearer {TOKEN}"), b""))
    assert reply[0] == status, reply[:2]


def test_upstream_series_is_computed_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each series answer is one measure query per bucket: a second page within the minute
    reuses the first answer."""
    from sipguard.records import upstreams

    asked: list[tuple[int, float]] = []

    async def fake_series(store: str, cfg: object, until: float, buckets: int, width: float,
                          min_calls: int) -> dict[str, object]:
        asked.append((buckets, width))
        return {"starts": [], "width": width, "until": "", "trunks": {}}

    monkeypatch.setattr(upstreams, "series", fake_series)
    srv = server()
    for _ in range(3):
        reply = run(srv.handle(head("GET", "/console/api/upstreams?window=7d", Authorization=f"Bearer {TOKEN}"), b""))
        assert reply[0] == 200, reply[:2]
    assert asked == [(28, 6 * 3600.0)]


@pytest.mark.parametrize("secure", [False, True])
def test_the_login_cookie_is_secure_as_http_secure_cookie_says(secure: bool) -> None:
    srv = server(secure_cookie=secure)

    async def go() -> tuple[str, str]:
        body = urlencode({"token": TOKEN, "name": "ops"}).encode()
        login = dict((await srv.handle(head("POST", "/console/login"), body))[3])  # type: ignore[misc]
        cookie = login["Set-Cookie"].split(";")[0]
        session = srv.sessions.read(cookie)
        assert session is not None
        form = urlencode({"csrf": srv.sessions.csrf(session)}).encode()
        logout = dict((await srv.handle(head("POST", "/console/logout", Cookie=cookie), form))[3])  # type: ignore[misc]
        return login["Set-Cookie"], logout["Set-Cookie"]

    set_cookie, clear_cookie = run(go())
    assert set_cookie.endswith("; Secure") is secure and clear_cookie.endswith("; Secure") is secure
    assert "Max-Age=0" in clear_cookie


def test_http_secure_cookie_is_read_from_the_config(tmp_path: Path) -> None:
    from sipguard.config import load_config
    from sipguard.errors import ConfigError

    (tmp_path / "token").write_text("t" * 32)
    path = tmp_path / "sipguard.yaml"
    path.write_text("next_hop: sip:127.0.0.1:5080\nhttp: {listen: '127.0.0.1:9090', token_file: token, secure_cookie: true}\n")
    assert load_config(str(path)).http_secure_cookie is True
    path.write_text("next_hop: sip:127.0.0.1:5080\nhttp: {listen: '127.0.0.1:9090'}\n")
    assert load_config(str(path)).http_secure_cookie is False
    path.write_text("next_hop: sip:127.0.0.1:5080\nhttp: {listen: '127.0.0.1:9090', secure_cookie: 'yes please'}\n")
    with pytest.raises(ConfigError, match=r":2: http.secure_cookie: expected true or false, got 'yes please'"):
        load_config(str(path))
