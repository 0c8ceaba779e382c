"""Metrics: counts after decisions, deltas from component stats, multiprocess aggregation,
and the Grafana dashboard only uses metric names that exist."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


# -- the per-call series: counted in plain ints, folded into the values (observe/decisions.py) --

DECISION_SERIES = ("sipguard_invites", "sipguard_invite_reasons", "sipguard_rule_hits", "sipguard_rate_limit_hits",
                   "sipguard_detector_hits", "sipguard_signed", "sipguard_decision_seconds")


def values_of(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The per-call series' samples as the registry holds them now (no fold: render would fold)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in registry.collect()
            if family.name in DECISION_SERIES for s in family.samples if s.value}


def per_call(m: dict[str, Any], record: Any, latency: float, limited: tuple[str, ...], facts: Any) -> None:
    """What every call did to the Prometheus values before the counts were folded: the
    definition the folded values must equal, to the last bit of the histogram's sum."""
    m["sipguard_invites"].labels(record.action, "" if record.status is None else str(record.status),
                                 record.verstat, record.attest or "", record.trunk or "").inc()
    m["sipguard_decision_seconds"].observe(latency)
    for reason in record.reasons:
        m["sipguard_invite_reasons"].labels(reason).inc()
    if record.rule is not None:
        m["sipguard_rule_hits"].labels(record.rule, record.rule_class or "").inc()
    if record.signed:
        m["sipguard_signed"].inc()
    for name in limited:
        m["sipguard_rate_limit_hits"].labels(name).inc()
    for fact, field in (("campaign.fanout", "campaign_fanout"), ("campaign.burst", "campaign_burst"),
                        ("spoof.neighbor", "spoof_neighbor"), ("spoof.same", "spoof_same"),
                        ("spoof.us_cid_foreign_trunk", "spoof_us_cid_foreign_trunk"),
                        ("spoof.a_on_bad_number", "spoof_a_on_bad_number")):
        if getattr(facts, field) is True:
            m["sipguard_detector_hits"].labels(fact, "").inc()
    for fact, source in (("trunk.threat", facts.trunk_threat), ("signer.threat", facts.signer_threat)):
        if source is not None:
            m["sipguard_detector_hits"].labels(fact, source).inc()


WORDS = st.sampled_from(["a", "b", "", "x y", "caf\u00e9"])
MAYBE = st.none() | WORDS
LATENCY = st.sampled_from([*metrics.LATENCY_BUCKETS, 0.0, 1e-9, 3.0]) | st.floats(0, 5, allow_nan=False)
CALL = st.tuples(
    st.fixed_dictionaries({"action": st.sampled_from(["forward", "reject", "redirect"]),
                           "status": st.none() | st.sampled_from([302, 603]), "verstat": WORDS, "attest": MAYBE,
                           "trunk": MAYBE, "reasons": st.lists(WORDS, max_size=2).map(tuple), "rule": MAYBE,
                           "rule_class": MAYBE, "signed": st.booleans()}),
    LATENCY, st.lists(WORDS, max_size=2).map(tuple),
    st.fixed_dictionaries({"campaign_fanout": st.none() | st.booleans(), "campaign_burst": st.none() | st.booleans(),
                           "spoof_neighbor": st.booleans(), "spoof_same": st.booleans(),
                           "spoof_us_cid_foreign_trunk": st.booleans(),
                           "spoof_a_on_bad_number": st.none() | st.booleans(), "trunk_threat": MAYBE,
                           "signer_threat": MAYBE}),
    st.sampled_from(["none", "none", "fold", "export"]))


@settings(max_examples=150, deadline=None)
@given(calls=st.lists(CALL, max_size=40))
def test_folded_counts_are_the_values_per_call_increments_made(calls: list[Any]) -> None:
    """Calls counted by the decision sink's DecisionCounts reach the Prometheus values at the
    next fold (each housekeeping tick's export, a render) with the values per-call increments
    gave: nothing lost, nothing later than the fold, the histogram's sum the same float."""
    from prometheus_client import CollectorRegistry

    from sipguard.policy.facts import Facts

    m = Metrics()
    reference = {spec.name: metrics._make(spec, CollectorRegistry()) for spec in SPECS
                 if spec.name in DECISION_SERIES}
    for fields, latency, limited, facts_fields, then in calls:
        record, facts = make_record(**fields), Facts(**facts_fields)
        m.decisions.count(record, latency, limited, facts)
        per_call(reference, record, latency, limited, facts)
        if then == "fold":
            m.fold()
        elif then == "export":                      # a housekeeping tick
            m.export()
        if then != "none":
            assert values_of(m.registry) == {k: v for r in reference.values() for k, v in values_of_metric(r).items()}
    samples(m.render()[0])                        # a render folds what is left
    assert values_of(m.registry) == {k: v for r in reference.values() for k, v in values_of_metric(r).items()}


def values_of_metric(metric: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in metric.collect()
            for s in family.samples if s.value}


def test_a_stopping_worker_folds_what_it_counted_since_the_last_tick(tmp_path: Path) -> None:
    """SIGTERM: Worker.stop exports once more after the drain, so the calls decided since the
    last housekeeping tick are in the values (with several workers, in the worker's file)."""
    import asyncio

    from sipguard.policy.facts import Facts
    from sipguard.proxy.worker import Worker
    from tests.unit.test_pipeline import make_config

    worker = Worker(make_config(tmp_path))
    worker.metrics = m = Metrics()
    for i in range(3):
        m.decisions.count(make_record(i), 0.002, ("per_caller",), Facts(spoof_same=True))
    assert values_of(m.registry) == {}
    asyncio.run(worker.stop())
    got = values_of(m.registry)
    assert got[("sipguard_decision_seconds_count", ())] == 3
    assert got[("sipguard_rate_limit_hits_total", (("limiter", "per_caller"),))] == 3
    assert got[("sipguard_detector_hits_total", (("fact", "spoof.same"), ("source", "")))] == 3
    assert sum(v for (name, _), v in got.items() if name == "sipguard_invites_total") == 3


def test_export_reads_each_components_counters_as_deltas(tmp_path: Path) -> None:
    """The real components, their counters moved as their hot paths move them: /metrics shows
    every declared field under its metric and label, and a later export adds only the delta."""
    from sipguard.clock import ManualClock
    from sipguard.proxy.connlimits import ConnectionLimits, ConnectionSettings
    from sipguard.proxy.overload import OverloadGuard
    from sipguard.proxy.steer import Steering
    from sipguard.records.writer import open_records
    from sipguard.shaken.config import ShakenConfig
    from sipguard.shaken.verify import Verifier
    from sipguard.store.memory import MemoryStore

    class Core:                       # the two things export reads of a ProxyCore
        def __init__(self) -> None:
            from sipguard.proxy.messages import Counters

            self.counters, self.pending = Counters(), 12

    class Transports:
        def __init__(self) -> None:
            from sipguard.proxy.transport import TransportCounters

            self.counters = TransportCounters()
            self.limits = ConnectionLimits(ConnectionSettings())

        def open_connections(self) -> dict[str, int]:
            return {"tcp": 3, "tls": 1}

    class Pipeline:
        def __init__(self) -> None:
            self.verifier = Verifier(ShakenConfig(), fetcher=None)  # type: ignore[arg-type]
            self.store = MemoryStore()
            self.clock = ManualClock(0.0)

    m = Metrics()
    core, transports, pipeline = Core(), Transports(), Pipeline()
    guard = OverloadGuard(0.02, 5, 65535, lambda *a: None)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    steering = Steering(0, [a], b)
    from sipguard.records.record import TracebackConfig

    records = open_records("memory", TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "sp")))
    core.counters.invites, core.counters.overload_503 = 9, 1
    transports.counters.unsupported_transport = 2
    transports.limits.counters.per_source = 4
    guard.counters.shed_503 = 5
    guard.measure(0.5)
    steering.counters.steered_out = 6
    verifier = pipeline.verifier
    verifier.counters.x5u_fetch_failures, verifier.counters.l2_hits = 1, 2
    verifier.creds.certs.counters.hits, verifier.creds.certs.counters.misses = 5, 2
    for _ in range(verifier.creds.breaker.threshold):
        verifier.creds.breaker.failure("certs.bad.example", 0.0)
    pipeline.store.counters.lookups = 10
    pipeline.store.counters.passport_replays = 3
    pipeline.store.healthy = False
    kw: Any = dict(core=core, transports=transports, guard=guard, steering=steering, pipeline=pipeline,
                   records=records)
    m.export(**kw)
    core.counters.invites, core.pending = 11, 4
    verifier.creds.certs.counters.hits = 8
    guard.state.share = 0.25          # the controller moved the share since: the gauge follows
    m.export(**kw)
    got = samples(m.render()[0])
    a.close()
    b.close()
    events = {labels[0][1]: v for (name, labels), v in got.items() if name == "sipguard_sip_events_total"}
    assert events["invites"] == 11 and events["overload_503"] == 1 and events["received"] == 0
    assert events["unsupported_transport"] == 2 and events["shed_503"] == 5 and events["overload_episodes"] == 1
    assert events["steered_out"] == 6 and events["steer_dropped"] == 0
    assert got[("sipguard_pending_decisions", ())] == 4
    assert got[("sipguard_records_queue", ())] == 0
    assert got[("sipguard_connections", (("transport", "tcp"),))] == 3
    assert got[("sipguard_connection_limits_total", (("limit", "per_source"),))] == 4
    assert got[("sipguard_connection_limits_total", (("limit", "idle_timeout"),))] == 0
    assert got[("sipguard_overload_shedding", ())] == 1
    assert got[("sipguard_overload_shed_share", ())] == 0.25
    assert got[("sipguard_x5u_cache_total", (("result", "hit"),))] == 8
    assert got[("sipguard_x5u_cache_total", (("result", "miss"),))] == 2
    assert got[("sipguard_x5u_cache_total", (("result", "l2_hit"),))] == 2
    assert got[("sipguard_x5u_fetches_total", (("outcome", "failed"),))] == 1
    assert got[("sipguard_cert_cache_entries", ())] == 0
    assert got[("sipguard_x5u_breaker_state", (("host", "certs.bad.example"),))] == 2
    assert got[("sipguard_store_healthy", ())] == 0
    assert got[("sipguard_store_requests_total", (("result", "lookup"),))] == 10
    assert got[("sipguard_passport_replays_total", ())] == 3


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
class Core:
    def __init__(self):
        from sipguard.proxy.messages import Counters
        self.counters, self.pending = Counters(), float(sys.argv[1])
m.export(core=Core())
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


def test_known_label_values_start_at_zero() -> None:
    """A panel over a labelled counter shows a line from the first scrape, not 'no data'."""
    from sipguard.proxy.connlimits import LIMITS

    assert metrics.KNOWN_LABELS["sipguard_connection_limits"] == LIMITS
    got = samples(Metrics().render()[0])
    for name, values in metrics.KNOWN_LABELS.items():
        spec = next(s for s in SPECS if s.name == name)
        for value in values:
            assert got[(name + "_total", ((spec.labels[0], value),))] == 0, (name, value)


def test_dashboard_is_valid_for_grafana_import() -> None:
    """What Grafana's import needs (dashboard JSON model): a title, a stable uid, a schemaVersion,
    the datasource as a variable that every panel and target uses, and panels that have an id,
    a known type, a grid position inside the 24 columns and targets with distinct refIds."""
    dash = json.loads((ROOT / "config/grafana/sipguard.json").read_text())
    assert isinstance(dash["title"], str) and dash["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"])
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert "id" not in dash or dash["id"] is None      # an id would overwrite another dashboard
    assert {"from", "to"} <= set(dash["time"])
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for panel in dash["panels"]:
        assert panel["type"] in {"timeseries", "piechart", "bargauge", "stat", "gauge", "table"}, panel["title"]
        assert panel["title"] and panel["datasource"] == source, panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "xywh") and grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"] and target.get("datasource", source) == source, panel["title"]
    # panels do not overlap on the grid
    cells = [(x, y) for p in dash["panels"] for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
             for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])]
    assert len(cells) == len(set(cells))


class _Measure:
    def __init__(self, calls: int, shares: dict[str, float]) -> None:
        self.calls, self._shares = calls, shares

    def shares(self) -> dict[str, float]:
        return self._shares


def test_multiprocess_upstream_table_replaces_the_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several workers: a trunk gone from the score window (or whose score is now absent) goes
    from the sipguard_upstream_* series, and no warning is printed (prometheus_client's
    ``clear`` only warns in multiprocess mode and leaves the old series in the sample file)."""
    import warnings

    folder = tmp_path / "prom"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    m = Metrics()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.set_upstreams({"a": _Measure(40, {"unsigned": 0.25}), "b": _Measure(3, {"unsigned": 1.0})}, {"a": 70})
        got = samples(metrics.render()[0])
        assert got[("sipguard_upstream_score", (("trunk", "a"),))] == 70
        assert got[("sipguard_upstream_calls", (("trunk", "b"),))] == 3
        assert got[("sipguard_upstream_share", (("measure", "unsigned"), ("trunk", "a")))] == 0.25
        m.set_upstreams({"b": _Measure(5, {"unsigned": 0.5})}, {})
        got = samples(metrics.render()[0])
    upstream = {k: v for k, v in got.items() if k[0].startswith("sipguard_upstream_")}
    assert upstream == {("sipguard_upstream_calls", (("trunk", "b"),)): 5,
                        ("sipguard_upstream_share", (("measure", "unsigned"), ("trunk", "b"))): 0.5}


def test_multiprocess_upstream_tables_of_dead_or_broken_files_are_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "prom"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    Metrics().set_upstreams({"a": _Measure(40, {})}, {"a": 60})
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True).stdout.strip()
    dead = folder / f"upstreams_{child}.json"
    dead.write_text('[["ghost", 9, {}, 99]]')                       # a worker that is gone
    (folder / "upstreams_1.json").write_text('[["x", "many", {"m": []}, {}]] trailing')  # pid 1: live, not a table
    (folder / f"upstreams_{os.getppid()}.json").write_text("[" * 100_000 + "]" * 100_000)  # live, too deep
    live_init = folder / "upstreams_2.json"
    if os.path.exists("/proc/2"):
        live_init.write_text('[["huge", 1, {}, 1]]' + " " * (5 << 20))     # live, oversized
    got = samples(metrics.render()[0])
    upstream = {k: v for k, v in got.items() if k[0].startswith("sipguard_upstream_")}
    assert upstream == {("sipguard_upstream_calls", (("trunk", "a"),)): 40,
                        ("sipguard_upstream_score", (("trunk", "a"),)): 60}
    metrics.mark_process_dead(int(child))
    assert not dead.exists()
