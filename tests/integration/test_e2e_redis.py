"""End to end with Redis (issues 5 and 6): a running sipguard on `store: redis://...`, the admin
CLI run as a subprocess against the same Redis, two instances sharing one limit, and the
store killed and restarted under traffic.

Each test gets a redis-server of its own (tests/redis_fixtures.py: free loopback port, nothing
on disk), so RMD snapshots and buckets never leak between tests.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SipguardProcess, base_config
from sipclient import MiniUas, UdpClient, invite

from tests.e2e_helpers import CALLEE, ROOT, call_through, cli, wait_for, write_policy
from tests.redis_fixtures import (
    REDIS_CLI,
    REDIS_SERVER,
    RedisProcess,
    start_cluster,
    start_redis,
    start_sentinel,
)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")]

DNO_CALLER = "+12027621401"
BURST = 4
LIMIT = {"per_caller": {"key": "caller", "rate": "1/min", "burst": BURST}}
BASE_RULES: list[dict[str, Any]] = [
    {"name": "commission-notice", "when": {"notice": {"not": None}}, "action": "reject", "class": "notice"},
    {"name": "do-not-originate", "when": {"caller.dno": True}, "action": "reject", "class": "deterministic"},
    {"name": "caller-burst", "when": {"limited": ["per_caller"]}, "action": "reject", "status": 486},
    {"name": "degraded", "when": {"store.degraded": True}, "action": "forward",
     "tag": {"headers": {"X-Call-Screen": "store-degraded"}}},
]
RMD_RULE = {"name": "upstream-not-in-rmd", "when": {"trunk.role": "foreign", "caller.us": True,
                                                    "trunk.rmd": ["absent", "removed"]},
            "action": "reject", "class": "deterministic", "reason": "upstream provider not in RMD"}


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    proc = start_redis()
    yield proc
    proc.stop()


class Instance:
    def __init__(self, sg: SipguardProcess, uas: MiniUas) -> None:
        self.sg, self.uas = sg, uas

    def call(self, caller: str, callee: str = CALLEE, **kw: Any) -> tuple[Any, Any]:
        """One INVITE; returns (final response, the INVITE the UAS got or None)."""
        return call_through(self.sg, self.uas, caller, callee, **kw)

    def status(self, caller: str, **kw: Any) -> int | None:
        final, _ = self.call(caller, **kw)
        return final.status if final is not None else None

    def sipguard(self, *argv: str) -> str:
        """Run ``sipguard ARGV -c <this instance's config>``; the command must succeed."""
        done = cli(*argv, "-c", str(self.sg.path))
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture
def instance(tmp_path: Path, redis: RedisProcess) -> Iterator[Any]:
    """Factory: ``instance(rules=..., **config)`` starts a sipguard on the test's Redis."""
    uas = MiniUas()
    made: list[SipguardProcess] = []

    def make(rules: list[dict[str, Any]] | None = None, **extra: Any) -> Instance:
        directory = tmp_path / f"sg{len(made)}"
        directory.mkdir()
        policy = write_policy(directory / "policy.yaml", BASE_RULES if rules is None else rules)
        config = base_config(uas.port, store=redis.url, policy=policy, limits=LIMIT,
                             traceback={"path": str(directory / "tb.db"), "spool": str(directory / "spool"),
                                        "retention_days": 7},
                             **extra)
        sg = SipguardProcess(config, directory)
        made.append(sg)
        return Instance(sg.start(), uas)

    yield make
    for sg in made:
        sg.stop()
    uas.close()


def _rmd_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """An RMD export with the published header (from the demo file) and the given
    (number, frn, business_name) rows."""
    header = (ROOT / "config" / "demo" / "rmd.csv").read_text().splitlines()[0].split(",")
    out = io.StringIO()
    writer = csv.DictWriter(out, header)
    writer.writeheader()
    for number, frn, name in rows:
        writer.writerow({"number": number, "frn": frn, "business_name": name, "foreign_voice_provider": "Yes",
                         "country": "United Kingdom",
                         "implementation": "Complete STIR/SHAKEN Implementation",
                         "voice_service_provider_choice": "Yes", "gateway_provider_choice": "No",
                         "intermediate_provider_choice": "No", "last_updated": "2026-11-01"})
    path.write_text(out.getvalue())
    return path


def test_rmd_import_changes_the_upstream_decision(instance: Any, tmp_path: Path) -> None:
    sg = instance(rules=[RMD_RULE, *BASE_RULES])
    caller = "+12127363100"
    # nothing imported yet: the trunk's provider (RMD0001234) is absent
    final, _ = sg.call(caller)
    assert final is not None and final.first == "SIP/2.0 603 Decline"
    assert 'text="upstream provider not in RMD"' in (final.header("Reason") or "")

    listed = _rmd_csv(tmp_path / "rmd1.csv", [("RMD0001234", "0012345678", "Carrier A Ltd"),
                                              ("RMD0005678", "0023456789", "Carrier B SA")])
    sg.sipguard("rmd", "import", str(listed), "--snapshot", "2026-11-01")
    assert wait_for(lambda: sg.status("+12127363101") == 200, timeout=3)

    dropped = _rmd_csv(tmp_path / "rmd2.csv", [("RMD0005678", "0023456789", "Carrier B SA")])
    # a provider leaving the RMD is a fall of 50 % in this two-row file: refused without --force
    out = sg.sipguard("rmd", "import", str(dropped), "--snapshot", "2026-11-15", "--force")
    assert "carrier-a" in out      # the import warns that a configured upstream is now removed
    assert wait_for(lambda: sg.status("+12127363102") == 603, timeout=3)


def test_dno_import_rejects_the_caller(instance: Any, tmp_path: Path) -> None:
    sg = instance()
    assert sg.status(DNO_CALLER) == 200
    dno = tmp_path / "dno.txt"
    dno.write_text(f"# DNO\n{DNO_CALLER}\n8005551\n")
    sg.sipguard("dno", "import", str(dno))
    final, fwd = sg.call(DNO_CALLER)
    assert final is not None and final.status == 603 and fwd is None
    assert (final.header("Reason") or "").startswith("Q.850;cause=21")
    assert sg.status("+12127363103") == 200


def test_notice_added_with_the_cli_takes_effect_on_a_running_instance(instance: Any) -> None:
    sg = instance()
    caller = "+13122345600"
    assert sg.status(caller) == 200
    sg.sipguard("notice", "add", "--ref", "DA-26-101", "--caller-prefix", "1312234")
    start = time.monotonic()
    assert wait_for(lambda: sg.status(caller) == 603, timeout=3, step=0.1)
    assert time.monotonic() - start < 3
    assert sg.status("+12127363104") == 200            # the notice names only that prefix
    sg.sipguard("notice", "remove", "DA-26-101")
    assert wait_for(lambda: sg.status(caller) == 200, timeout=3, step=0.1)


def test_two_instances_share_one_limit(instance: Any) -> None:
    first, second = instance(), instance()
    caller = "+13036237777"
    statuses = [(first if n % 2 == 0 else second).status(caller) for n in range(10)]
    assert statuses.count(200) == BURST, statuses
    assert statuses.count(486) == 10 - BURST, statuses
    assert statuses[:BURST] == [200] * BURST                   # the first `burst` pass, whichever instance


def _traffic(sg: Instance, answers: list[tuple[int | None, str | None]],
             stop: threading.Event) -> threading.Thread:
    """Calls one after the other until stopped, each from a caller of its own (so the
    per-caller limit stays out of the way); records (status, X-Call-Screen of the forward)."""
    def run() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            final, fwd = sg.call(f"+1212736{2000 + n % 8000:04d}")
            answers.append((final.status if final is not None else None,
                            fwd.header("X-Call-Screen") if fwd is not None else None))
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_redis_killed_and_restarted_fail_open(instance: Any, redis: RedisProcess, tmp_path: Path) -> None:
    sg = instance(store_failure="fail-open")
    dno = tmp_path / "dno.txt"
    dno.write_text(f"{DNO_CALLER}\n")
    sg.sipguard("dno", "import", str(dno))
    assert sg.status(DNO_CALLER) == 603
    answers: list[tuple[int | None, str | None]] = []
    stop = threading.Event()
    thread = _traffic(sg, answers, stop)
    try:
        time.sleep(0.3)
        redis.stop()                                     # SIGKILL mid-traffic
        outage_start = len(answers)
        # while Redis is gone: every call answered, forwarded and tagged as degraded
        assert wait_for(lambda: len(answers) >= outage_start + 5, timeout=10)
        degraded = sg.call(DNO_CALLER)
        redis.start()                                    # same port, empty (no persistence)
        sg.sipguard("dno", "import", str(dno))
        assert wait_for(lambda: sg.status(DNO_CALLER) == 603, timeout=5, step=0.1), sg.sg.logs()[-2000:]
    finally:
        stop.set()
        thread.join(30)
    assert answers and all(status == 200 for status, _ in answers), answers
    assert ("200", "store-degraded") in {(str(s), tag) for s, tag in answers}
    final, fwd = degraded
    assert final is not None and final.status == 200      # fail-open: the DNO lookup was not possible
    assert fwd is not None and fwd.header("X-Call-Screen") == "store-degraded"
    # recovered: calls are no longer degraded
    final, fwd = sg.call("+12127363106")
    assert final is not None and final.status == 200 and fwd.header("X-Call-Screen") is None


def test_redis_killed_fail_closed_answers_503_retry_after(instance: Any, redis: RedisProcess) -> None:
    sg = instance(store_failure="fail-closed", proxy={"retry_after": 7})
    assert sg.status("+12127363107") == 200
    redis.stop()
    final, fwd = sg.call("+12127363107")
    assert final is not None and final.status == 503 and fwd is None
    assert final.header("Retry-After") == "7"
    # an emergency call is never refused, store or not
    ruri = f"sip:911@{sg.sg.addr[0]}:{sg.sg.addr[1]};user=phone"
    final, fwd = sg.call("+12127363107", callee="911", ruri=ruri)
    assert final is not None and final.status == 200 and fwd is not None
    redis.start()
    assert wait_for(lambda: sg.status("+12127363108") == 200, timeout=5, step=0.1), sg.sg.logs()[-2000:]


def test_retransmissions_do_not_count_twice_against_a_limit(instance: Any) -> None:
    sg = instance()
    caller = "+13036238888"
    client = UdpClient()
    try:
        # the first call's INVITE arrives three times (same branch): one decision, one token
        data = invite(sg.sg.addr, client.addr, caller=caller, callee=CALLEE)
        for _ in range(3):
            client.send(data, sg.sg.addr)
        final, _ = client.final()
        assert final is not None and final.status == 200
    finally:
        client.close()
    time.sleep(0.3)   # let any late retransmission land before the next calls
    assert [sg.status(caller) for _ in range(BURST)] == [200] * (BURST - 1) + [486]


def test_redis_cluster_store_end_to_end(sipguard: Any, tmp_path: Path) -> None:
    """The same duties on a 3-node Redis Cluster: DNO imported with the CLI, one shared limit."""
    if REDIS_CLI is None:
        pytest.skip("redis-cli is not installed")
    cluster = start_cluster()
    uas = MiniUas()
    try:
        policy = write_policy(tmp_path / "policy.yaml", BASE_RULES)
        config = base_config(uas.port, store=cluster.url, policy=policy, limits=LIMIT, store_timeout=0.5,
                             traceback={"path": str(tmp_path / "tb.db"), "retention_days": 7})
        first = Instance(sipguard(dict(config)), uas)
        second = Instance(sipguard(dict(config)), uas)
        dno = tmp_path / "dno.txt"
        dno.write_text(f"{DNO_CALLER}\n")
        first.sipguard("dno", "import", str(dno))
        assert second.status(DNO_CALLER) == 603
        caller = "+13036236666"
        statuses = [(first if n % 2 == 0 else second).status(caller) for n in range(BURST + 3)]
        assert statuses == [200] * BURST + [486] * 3, statuses
    finally:
        uas.close()
        cluster.stop()


def test_redis_sentinel_store_end_to_end(sipguard: Any, tmp_path: Path, redis: RedisProcess) -> None:
    sentinel = start_sentinel(redis)
    uas = MiniUas()
    try:
        policy = write_policy(tmp_path / "policy.yaml", BASE_RULES)
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"
        sg = Instance(sipguard(base_config(uas.port, store=url, policy=policy, limits=LIMIT,
                                           traceback={"path": str(tmp_path / "tb.db"), "retention_days": 7})), uas)
        dno = tmp_path / "dno.txt"
        dno.write_text(f"{DNO_CALLER}\n")
        sg.sipguard("dno", "import", str(dno))
        assert sg.status(DNO_CALLER) == 603
        assert sg.status("+12127363109") == 200
    finally:
        uas.close()
        sentinel.stop()


def test_store_round_trips_reach_the_running_instances_metrics(instance: Any) -> None:
    """The worker hands its metrics to the store: /metrics shows the lookups' round trips."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    from sipclient import free_port

    port = free_port()
    sg = instance(http={"listen": f"127.0.0.1:{port}"})
    assert all(sg.status(f"+1212736320{n}") is not None for n in range(3))

    def lookups() -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        return sum(s.value for family in text_string_to_metric_families(body) for s in family.samples
                   if s.name == "sipguard_store_seconds_count" and s.labels.get("op") == "lookup")

    assert wait_for(lambda: lookups() >= 3, timeout=3)
