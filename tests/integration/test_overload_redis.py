"""Overload with the Redis store (issue "Hold the edge", item 3), with real sockets and a real
redis-server: a worker whose decisions wait on the store sheds new INVITEs with 503 +
Retry-After before the calls it let in run out of ``store_timeout``, and those are decided
with Redis's answers, not degraded. Redis is delayed with SIGSTOP (its connections stay open,
nothing answers), as a worker too far behind to read the replies in time would see it. No
timing assertions: a long ``store_timeout`` and each effect awaited with a generous bound."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import base_config
from sipclient import MiniUas, Msg, UdpClient, free_port, invite

from tests.redis_fixtures import REDIS_SERVER, RedisProcess, start_redis

pytestmark = pytest.mark.integration
BOUND = 15.0       # seconds any effect may take on a loaded machine
TIMEOUT = 8.0      # store_timeout: a lookup waits this long; shedding starts at half of it


def metric(http_port: int, name: str, labels: str | None = None) -> float:
    """One series of ``name`` (``labels`` as written in it), or the sum of all (None)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5).read().decode()
    if labels is None:
        return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", body, re.M))
    m = re.search(rf"^{name}(?:\{{{labels}\}})? ([0-9.e+]+)$", body, re.M)
    return float(m.group(1)) if m else 0.0


def wait_for(what: Any, bound: float = BOUND) -> Any:
    end = time.monotonic() + bound
    while time.monotonic() < end:
        found = what()
        if found:
            return found
        time.sleep(0.1)
    return what()


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test's own: it is stopped and continued."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    redis = start_redis()
    yield redis
    if redis.proc is not None:
        redis.proc.send_signal(signal.SIGCONT)
    redis.stop()


def test_decisions_waiting_on_redis_shed_new_invites_and_the_calls_let_in_are_not_degraded(
        sipguard: Any, own_redis: RedisProcess) -> None:
    uas = MiniUas()
    http = free_port()
    sg = sipguard(base_config(uas.port, store=own_redis.url, store_timeout=TIMEOUT,
                              traceback={"store": "sqlite", "path": "var/traceback.db"},
                              http={"listen": f"127.0.0.1:{http}"}))
    client = UdpClient()
    seen: dict[str, list[Msg]] = {}

    def read(until: float) -> None:
        while time.monotonic() < until:
            msg = client.recv(0.05)
            if msg is not None:
                seen.setdefault(msg.header("Call-ID") or "", []).append(msg)

    def final(call_id: str) -> Msg | None:
        return next((m for m in seen.get(call_id, []) if (m.status or 0) >= 200), None)

    try:
        answered, _ = client.call(sg.addr)            # Redis answers: the store's floor is its own time
        assert answered is not None and answered.status == 200, sg.logs()
        assert own_redis.proc is not None
        own_redis.proc.send_signal(signal.SIGSTOP)    # from now on every lookup waits
        stopped = True
        try:
            client.send(invite(sg.addr, client.addr, call_id="let-in"), sg.addr)
            sent = ["let-in"]
            end = time.monotonic() + BOUND
            shed = None
            while shed is None and time.monotonic() < end:
                call_id = f"new-{len(sent)}"
                client.send(invite(sg.addr, client.addr, call_id=call_id), sg.addr)
                sent.append(call_id)
                read(time.monotonic() + 0.25)
                shed = next((c for c in sent if (f := final(c)) is not None and f.status == 503), None)
            assert shed is not None, (seen, sg.logs()[-3000:])
            # the one shed was answered by the overload guard, from its lines, at once
            answer = final(shed)
            assert answer is not None and answer.header("Retry-After") == "5"
            assert "tag=sgx" in (answer.header("To") or "")
            assert final("let-in") is None            # ... while the call let in still waits
            own_redis.proc.send_signal(signal.SIGCONT)
            stopped = False
        finally:
            if stopped:
                own_redis.proc.send_signal(signal.SIGCONT)
        # Redis answers again: every call let in is decided with its answer and completes
        let_in = [c for c in sent if (f := final(c)) is None or f.status != 503]
        end = time.monotonic() + BOUND
        while time.monotonic() < end and any(final(c) is None for c in let_in):
            read(time.monotonic() + 0.2)
        assert "let-in" in let_in
        assert all((f := final(c)) is not None and f.status == 200 for c in let_in), (seen, sg.logs()[-3000:])
        # the counters (exported every 0.5 s) once they count every lookup made: none degraded
        lookups = 1 + len(let_in)
        assert wait_for(lambda: metric(http, "sipguard_store_requests_total", 'result="lookup"') >= lookups
                        and metric(http, "sipguard_sip_events_total", 'event="shed_503"') >= 1), sg.logs()[-3000:]
        assert metric(http, "sipguard_store_requests_total", 'result="degraded"') == 0.0
        # nothing waits any more: shedding ends and new calls are decided again
        assert wait_for(lambda: metric(http, "sipguard_overload_shedding", "") == 0.0)
        again, _ = client.call(sg.addr)
        assert again is not None and again.status == 200, sg.logs()[-3000:]
    finally:
        client.close()
        uas.close()
