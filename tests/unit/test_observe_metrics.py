"""Metrics: counts after decisions, deltas from component stats, multiprocess aggregation,
and the Grafana dashboard only uses metric names that exist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipguard.observe import metrics
from sipguard.observe.metrics import SPECS, Metrics, exposed_names
from tests.records_fixtures import make_record

ROOT = Path(__file__).resolve().parents[2]


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_observe_decision_counts_by_labels() -> None:
    m = Metrics()
    for _ in range(3):
        m.observe_decision(make_record(), 0.002)
    m.observe_decision(make_record(action="reject", status=603, rule="dno", rule_class="deterministic",
                                   verstat="TN-Validation-Failed", attest="A",
                                   reasons=("stale-iat", "bad-signature")), 0.004)
    m.observe_decision(make_record(signed=True), 0.001)
    got = samples(m.render()[0])
    fwd = (("action", "forward"), ("attest", ""), ("status", ""), ("trunk", "carrier-a"),
           ("verstat", "No-TN-Validation"))
    assert got[("sipguard_invites_total", fwd)] == 4
    rej = (("action", "reject"), ("attest", "A"), ("status", "603"), ("trunk", "carrier-a"),
           ("verstat", "TN-Validation-Failed"))
    assert got[("sipguard_invites_total", rej)] == 1
    assert got[("sipguard_invite_reasons_total", (("reason", "no-identity"),))] == 4
    assert got[("sipguard_invite_reasons_total", (("reason", "stale-iat"),))] == 1
    assert got[("sipguard_rule_hits_total", (("rule", "dno"), ("rule_class", "deterministic")))] == 1
    assert got[("sipguard_signed_total", ())] == 1
    assert got[("sipguard_decision_seconds_count", ())] == 5
    assert got[("sipguard_decision_seconds_bucket", (("le", "0.0025"),))] == 4


class FakeVerifier:
    def __init__(self) -> None:
        self.s = {"cert_cache_hits": 0.0, "cert_cache_misses": 0.0, "x5u_fetch_failures": 0.0,
                  "cert_cache_size": 0.0}

    def stats(self) -> dict[str, float]:
        return dict(self.s)

    def breaker_states(self, now: float) -> dict[str, str]:
        return {"certs.bad.example": "open", "certs.ok.example": "closed"}


class FakeStore:
    healthy = False

    def stats(self) -> dict[str, float]:
        return {"lookups": 10.0, "degraded": 4.0, "errors": 2.0}


class FakePipeline:
    def __init__(self) -> None:
        self.verifier = FakeVerifier()
        self.store = FakeStore()


class FakeWriter:
    pending = 7


def test_set_gauges_exports_deltas_of_cumulative_stats() -> None:
    m = Metrics()
    pipeline = FakePipeline()
    pipeline.verifier.s.update(cert_cache_hits=5, cert_cache_misses=2, cert_cache_size=3)
    m.set_gauges({"pending": 12, "invites": 9, "overload_503": 1}, pipeline, FakeWriter(), now=0.0)
    pipeline.verifier.s.update(cert_cache_hits=8, x5u_fetch_failures=1)
    m.set_gauges({"pending": 4, "invites": 11, "overload_503": 1}, pipeline, FakeWriter(), now=0.0)
    got = samples(m.render()[0])
    assert got[("sipguard_pending_decisions", ())] == 4
    assert got[("sipguard_records_queue", ())] == 7
    assert got[("sipguard_sip_events_total", (("event", "invites"),))] == 11
    assert got[("sipguard_sip_events_total", (("event", "overload_503"),))] == 1
    assert got[("sipguard_x5u_cache_total", (("result", "hit"),))] == 8
    assert got[("sipguard_x5u_cache_total", (("result", "miss"),))] == 2
    assert got[("sipguard_x5u_fetches_total", (("outcome", "failed"),))] == 1
    assert got[("sipguard_cert_cache_entries", ())] == 3
    assert got[("sipguard_x5u_breaker_state", (("host", "certs.bad.example"),))] == 2
    assert got[("sipguard_x5u_breaker_state", (("host", "certs.ok.example"),))] == 0
    assert got[("sipguard_store_healthy", ())] == 0
    assert got[("sipguard_store_requests_total", (("result", "degraded"),))] == 4


def test_hooks_for_fetch_store_limits_and_records() -> None:
    m = Metrics()
    m.observe_x5u_fetch(0.2)
    m.observe_store("lookup", 0.003, error=True)
    m.rate_limited("per_caller")
    m.records_written(500, 0.01)
    m.records_spooled(20)
    m.records_write_failed()
    got = samples(m.render()[0])
    assert got[("sipguard_x5u_fetch_seconds_count", ())] == 1
    assert got[("sipguard_x5u_fetches_total", (("outcome", "ok"),))] == 1
    assert got[("sipguard_store_errors_total", (("op", "lookup"),))] == 1
    assert got[("sipguard_store_seconds_count", (("op", "lookup"),))] == 1
    assert got[("sipguard_rate_limit_hits_total", (("limiter", "per_caller"),))] == 1
    assert got[("sipguard_records_written_total", ())] == 500
    assert got[("sipguard_records_spooled_total", ())] == 20
    assert got[("sipguard_records_errors_total", ())] == 1


def test_detector_facts_are_counted() -> None:
    from sipguard.policy.facts import Facts

    m = Metrics()
    m.detectors_hit(Facts(campaign_fanout=True, spoof_same=True, spoof_a_on_bad_number=None, trunk_threat="c-cist"))
    m.detectors_hit(Facts(campaign_fanout=True, campaign_burst=False))
    got = samples(m.render()[0])
    assert got[("sipguard_detector_hits_total", (("fact", "campaign.fanout"), ("source", "")))] == 2
    assert got[("sipguard_detector_hits_total", (("fact", "spoof.same"), ("source", "")))] == 1
    assert got[("sipguard_detector_hits_total", (("fact", "trunk.threat"), ("source", "c-cist")))] == 1
    assert not [k for k in got if k[0] == "sipguard_detector_hits_total"
                and dict(k[1])["fact"] in ("campaign.burst", "spoof.a_on_bad_number", "signer.threat")]


def test_every_spec_is_exposed_under_its_name() -> None:
    m = Metrics()
    text = m.render()[0].decode()
    for spec in SPECS:
        shown = spec.name + "_total" if spec.kind == "counter" else spec.name
        assert f"# TYPE {shown} {spec.kind}" in text
    assert len({s.name for s in SPECS}) == len(SPECS)


def test_dashboard_uses_only_existing_metrics() -> None:
    dash = json.loads((ROOT / "config/grafana/sipguard.json").read_text())
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in dash["templating"]["list"])
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bsipguard_[a-z0-9_]+", e)}
    assert used and used <= exposed_names(), used - exposed_names()
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("action", "verification", "attestation", "reasons", "latency", "x5u cache", "breaker",
                  "store", "queue"):
        assert topic in titles
    assert any("histogram_quantile" in e for e in exprs)


CHILD = """
import sys
from sipguard.observe import metrics
from prometheus_client import values
values.ValueClass = values.get_value_class()
from tests.records_fixtures import make_record
m = metrics.Metrics()
for _ in range(int(sys.argv[1])):
    m.observe_decision(make_record(), 0.001)
m.set_gauges({"pending": float(sys.argv[1])})
"""


def test_multiprocess_two_workers_one_scrape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "prom"
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder), PYTHONPATH=str(ROOT))
    os.makedirs(folder)
    for count in ("3", "4"):
        subprocess.run([sys.executable, "-c", CHILD, count], env=env, check=True, cwd=ROOT, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    got: dict[Any, float] = samples(metrics.render()[0])
    fwd = (("action", "forward"), ("attest", ""), ("status", ""), ("trunk", "carrier-a"),
           ("verstat", "No-TN-Validation"))
    assert got[("sipguard_invites_total", fwd)] == 7
    assert got[("sipguard_decision_seconds_count", ())] == 7
    # livesum gauges count live processes only: both children have exited, so after marking
    # them dead their pending counts disappear
    pids = {int(m.group(1)) for f in os.listdir(folder) if (m := re.search(r"_(\d+)\.db$", f))}
    for pid in pids:
        metrics.mark_process_dead(pid)
    after = samples(metrics.render()[0])
    assert ("sipguard_pending_decisions", ()) not in after or after[("sipguard_pending_decisions", ())] == 0


def test_prepare_multiprocess_empties_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    try:
        metrics.prepare_multiprocess(str(folder))
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder) and os.listdir(folder) == []
    finally:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
        from prometheus_client import values

        values.ValueClass = values.get_value_class()


def test_the_cached_process_id_follows_a_fork() -> None:
    """prometheus_client's multiprocess files are named by it: each worker must get its own."""
    import os

    from sipguard.observe.metrics import process_id

    assert process_id() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports and exits
        os.write(write, f"{process_id()} {os.getpid()}".encode())
        os._exit(0)
    os.waitpid(child, 0)
    seen, real = os.read(read, 64).decode().split()
    assert seen == real == str(child)


def test_build_info_process_series_and_no_created_series() -> None:
    from sipguard import __version__, native

    text = Metrics().render()[0].decode()
    got = samples(text.encode())
    hot_path = "compiled" if native.compiled() else "python"
    info = [k for k in got if k[0] == "sipguard_build_info"]
    assert info == [("sipguard_build_info", (("hot_path", hot_path), ("python", sys.version.split()[0]),
                                             ("version", __version__)))]
    assert got[info[0]] == 1
    for name in metrics.PROCESS_SERIES:
        assert (name, ()) in got, name
    assert got[("process_resident_memory_bytes", ())] > 1e6 and got[("process_open_fds", ())] >= 3
    assert "_created" not in text


def test_process_series_sum_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several workers: their memory, CPU and descriptors count in the one scrape."""
    worker = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline() == "up\n"   # a Python running
        folder = tmp_path / "prom"
        folder.mkdir()
        (folder / f"counter_{worker.pid}.db").write_bytes(b"")
        (folder / "counter_999999999.db").write_bytes(b"")     # a worker long gone: not counted
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
        own = {f.samples[0].name: f.samples[0].value for f in metrics.AllProcesses().collect()}
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
        total = {f.samples[0].name: f.samples[0].value for f in metrics.AllProcesses().collect()}
        assert total["process_resident_memory_bytes"] > own["process_resident_memory_bytes"] + 1e6
        assert total["process_open_fds"] >= own["process_open_fds"] + 3
        assert total["process_max_fds"] == own["process_max_fds"]
    finally:
        worker.kill()
        worker.wait()


def test_process_series_need_only_proc_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The units set ProcSubset=pid: /proc/stat and /proc/uptime are not there."""
    import builtins

    real_open = builtins.open

    def hidden(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path) in ("/proc/stat", "/proc/uptime"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", hidden)
    got = {f.samples[0].name: f.samples[0].value for f in metrics.AllProcesses().collect()}
    assert set(got) == set(metrics.PROCESS_SERIES)
    import time

    assert abs(got["process_start_time_seconds"] - time.time()) < 24 * 3600 * 365
