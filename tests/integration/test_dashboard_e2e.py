"""Every Grafana panel has data (issue 20): a running sipguard (two workers, Redis store, x5u
downloads from a loopback repository) takes real calls, and its /metrics has samples for every
metric the dashboard (config/grafana/sipguard.json) queries, and for every metric declared.

The calls: a signed call (one x5u download, timed), a signed call whose x5u host refuses
connections (a breaker entry), and unsigned calls from one caller past its limit (a rule hit
and a rate-limit hit). Multiprocess mode, as in production: a metric no worker ever touched
has no samples at all there, so a panel over it would say "no data".
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SipguardProcess, base_config
from prometheus_client.parser import text_string_to_metric_families
from sipclient import MiniUas, free_port

from sipguard.observe.metrics import SPECS, Spec
from tests.e2e_helpers import CALLEE, CALLER, ROOT, E2eShaken, call_through, wait_for, write_policy
from tests.redis_fixtures import REDIS_SERVER, RedisProcess, start_redis

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")]


def dashboard_metrics() -> set[str]:
    """The series names the dashboard's queries (panels and variables) read."""
    dash = json.loads((ROOT / "config/grafana/sipguard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return {name for e in exprs for name in re.findall(r"\bsipguard_[a-z0-9_]+", e)}


def exposed(spec: Spec) -> str:
    """The series name that has samples once the metric is fed."""
    return spec.name + {"counter": "_total", "histogram": "_count"}.get(spec.kind, "")


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


@pytest.fixture
def redis() -> Iterator[RedisProcess]:
    proc = start_redis()
    yield proc
    proc.stop()


def test_every_dashboard_metric_has_samples_after_real_calls(tmp_path: Path, redis: RedisProcess) -> None:
    uas = MiniUas()
    http_port = free_port()
    dead_x5u = f"http://127.0.0.1:{free_port()}/gone.pem"     # nothing listens there
    with E2eShaken(tmp_path / "pki") as shaken:
        policy = write_policy(tmp_path / "policy.yaml", [
            {"name": "caller-burst", "when": {"limited": ["per_caller"]}, "action": "reject", "status": 486},
        ])
        (tmp_path / "sg").mkdir()
        config = base_config(uas.port, store=redis.url, policy=policy, shaken=shaken.section(),
                             limits={"per_caller": {"key": "caller", "rate": "1/min", "burst": 1}},
                             http={"listen": f"127.0.0.1:{http_port}"},
                             traceback={"path": str(tmp_path / "tb.db"), "spool": str(tmp_path / "spool"),
                                        "retention_days": 7},
                             upstreams={"score_interval": 1, "score_min_calls": 1})   # the per-trunk gauges
        sg = SipguardProcess(config, tmp_path / "sg", workers=2).start()
        try:
            final, _ = call_through(sg, uas, CALLER, identity=[shaken.identity()])
            assert final is not None and final.status == 200
            final, _ = call_through(sg, uas, "+12127363300", identity=[shaken.identity(x5u=dead_x5u)])
            assert final is not None
            statuses = [call_through(sg, uas, "+12127363301")[0] for _ in range(3)]
            assert 486 in [f.status for f in statuses if f is not None]   # the limit's rule hit

            # every metric the dashboard queries, and every metric sipguard declares (fed, or
            # not declared at all: a metric nothing feeds is a panel that never shows data)
            wanted = dashboard_metrics() | {exposed(spec) for spec in SPECS}

            def missing() -> set[str]:
                got = scrape(http_port)
                return {name for name in wanted if name not in got}

            assert wait_for(lambda: not missing(), timeout=10), f"no samples for {sorted(missing())}"
            got = scrape(http_port)
            # the download was timed, not only counted (issue 17: this stayed 0 after real downloads)
            assert sum(v for _, v in got["sipguard_x5u_fetch_seconds_count"]) >= 1
            assert any(labels.get("outcome") == "ok" and v >= 1 for labels, v in got["sipguard_x5u_fetches_total"])
            assert any(labels.get("host") == "127.0.0.1" for labels, _ in got["sipguard_x5u_breaker_state"])
            assert sum(v for labels, v in got["sipguard_store_seconds_count"] if labels["op"] == "lookup") >= 5
            assert sum(v for _, v in got["sipguard_rate_limit_hits_total"]) >= 1
            assert sum(v for _, v in got["sipguard_records_written_total"]) >= 1
            info = got["sipguard_build_info"]
            assert len(info) == 1 and info[0][1] == 1 and set(info[0][0]) == {"version", "python", "hot_path"}
        finally:
            sg.stop()
            uas.close()
    assert CALLEE
