"""Every Prometheus metric sipguard exports, defined once (their names are user-facing).

``SPECS`` is the one source of truth: the code, the Grafana dashboard
(config/grafana/sipguard.json, checked by a test) and the docs use these names.

Several workers: the supervisor calls ``prepare_multiprocess(dir)`` before it forks,
so every process writes its samples to memory-mapped files in ``dir``
(prometheus_client multiprocess mode) and the one HTTP endpoint, served by the
supervisor, aggregates them (counters and histograms summed; gauges summed over live
processes, or the max for breaker states). The per-trunk upstream gauges, replaced whole at
each score refresh, are a small JSON table per worker in the same folder instead
(``UpstreamSeries``): a sample file cannot drop a series. When a worker dies the supervisor
calls ``mark_process_dead(pid)``. One process: plain in-memory metrics, no folder needed.

Hot path: nothing here runs per call. The per-call series (sipguard_invites,
_invite_reasons, _rule_hits, _rate_limit_hits, _detector_hits, _signed, _decision_seconds) are
counted in plain ints by compiled code (``observe/decisions.DecisionCounts``, fed by the
decision sink) and added to the Prometheus values by ``fold``: on every housekeeping tick
(``export``, 0.5 s), before this process renders /metrics (``render``, ``families``) and when
the worker stops (``Worker.stop``, on SIGTERM). So a scrape of the supervisor sees a worker's
calls at most one tick late, and a worker killed outright (SIGKILL, OOM) loses the counts of
its last tick at most, as it loses those its components count; the values, names and labels
are those per-call increments made.

Components never import this module. Each counts in one shape, a slotted dataclass of
cumulative ints named ``counters`` (proxy core, transports, connection limits, overload
guard, steering, verifier and its caches, store, records writer, collector pacing: it sums
its full passes' seconds there too, as they happen on the tick), incremented in place on the
hot path; ``export`` reads them by their declared fields every half second. What else needs
a duration comes through ``observe/hooks.MetricHooks``, injected with a do-nothing default.

Conventions: ``sipguard_build_info`` (always 1) carries the version, the Python version and
which hot path runs (compiled or python) as labels; the standard ``process_*`` series
(CPU seconds, resident memory, open and max file descriptors, start time) cover every
worker (summed, in multiprocess mode); the ``_created`` series prometheus_client adds to
each counter and histogram are not exported (a third of the exposition, read by no one).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sipguard.observe.decisions import DecisionCounts
from sipguard.observe.procmem import resident_bytes
from sipguard.policy.facts import Facts
from sipguard.records.record import CallRecord
from sipguard.store.base import RMD_CHANGES

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from sipguard.pipeline import Pipeline
    from sipguard.proxy.core import ProxyCore
    from sipguard.proxy.gcpacing import GcPacer
    from sipguard.proxy.overload import OverloadGuard
    from sipguard.proxy.steer import Steering
    from sipguard.proxy.transport import Transports
    from sipguard.records.writer import RecordWriter
    from sipguard.shaken.verify import Verifier
    from sipguard.store.base import Store

disable_created_metrics()   # process-wide: no <name>_created series

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
BREAKER_VALUE = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
# Label values known in advance: their series start at 0 with the process, so a panel shows a
# flat line (not "no data") until the first event, and rate() sees the first one.
KNOWN_LABELS: dict[str, tuple[str, ...]] = {
    "sipguard_x5u_cache": ("hit", "miss", "l2_hit", "stale", "negative"),
    "sipguard_x5u_fetches": ("ok", "failed", "refused", "breaker_skip", "not_found", "budget_skip"),
    "sipguard_store_requests": ("lookup", "degraded", "error", "rmd_remembered"),
    "sipguard_store_errors": ("lookup", "cert_get", "cert_put"),
    "sipguard_connection_limits": ("unknown_source", "per_source", "total", "head_timeout", "idle_timeout"),
    "sipguard_rmd_changes": RMD_CHANGES,
}


@dataclass(frozen=True, slots=True)
class Spec:
    name: str              # as exposed, without the _total/_bucket suffixes prometheus_client adds
    kind: str              # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()
    mode: str = "livesum"  # gauges in multiprocess mode: how to combine the workers
    buckets: tuple[float, ...] = ()


SPECS: tuple[Spec, ...] = (
    Spec("sipguard_build_info", "gauge", "Always 1; the labels say the version, the Python version and "
         "which hot path runs (compiled or python)", ("version", "python", "hot_path"), mode="max"),
    Spec("sipguard_invites", "counter", "INVITE decisions", ("action", "status", "verstat", "attest", "trunk")),
    Spec("sipguard_invite_reasons", "counter", "Verification reason codes seen on INVITEs", ("reason",)),
    Spec("sipguard_rule_hits", "counter", "Policy rules that decided a call", ("rule", "rule_class")),
    Spec("sipguard_rate_limit_hits", "counter", "Calls over a configured limit", ("limiter",)),
    Spec("sipguard_detector_hits", "counter", "Calls on which a detector fact held (campaign.*, spoof.*; "
         "trunk.threat and signer.threat with their source)", ("fact", "source")),
    Spec("sipguard_signed", "counter", "Calls sipguard signed (gateway attestation)"),
    Spec("sipguard_decision_seconds", "histogram", "Time from INVITE received to decision sent",
         buckets=LATENCY_BUCKETS),
    Spec("sipguard_x5u_cache", "counter", "Certificate cache lookups", ("result",)),
    Spec("sipguard_x5u_fetches", "counter", "x5u certificate downloads", ("outcome",)),
    Spec("sipguard_x5u_fetch_seconds", "histogram", "x5u download time", buckets=FETCH_BUCKETS),
    Spec("sipguard_x5u_breaker_state", "gauge", "Circuit breaker per x5u host: 0 closed, 1 half-open, 2 open",
         ("host",), mode="max"),
    Spec("sipguard_cert_cache_entries", "gauge", "Certificates held in the in-process cache"),
    Spec("sipguard_store_requests", "counter", "State store lookups", ("result",)),
    Spec("sipguard_store_errors", "counter", "State store operations that failed", ("op",)),
    Spec("sipguard_passport_replays", "counter",
         "Calls whose verified PASSporT the seen-set had on another call (passport.replayed)"),
    Spec("sipguard_store_seconds", "histogram", "State store operation time", ("op",),
         buckets=LATENCY_BUCKETS),
    Spec("sipguard_store_healthy", "gauge", "1 when the state store answers, 0 in its failure mode",
         mode="min"),
    Spec("sipguard_pending_decisions", "gauge", "INVITEs waiting for a decision (admission queue depth)"),
    Spec("sipguard_sip_events", "counter", "SIP messages by what the proxy did with them", ("event",)),
    Spec("sipguard_records_written", "counter", "Traceback records stored"),
    Spec("sipguard_records_spooled", "counter", "Traceback records written to the local spool"),
    Spec("sipguard_records_errors", "counter", "Failed traceback record writes"),
    Spec("sipguard_records_write_seconds", "histogram", "Traceback batch write time",
         buckets=LATENCY_BUCKETS),
    Spec("sipguard_records_queue", "gauge", "Traceback records waiting to be written"),
    Spec("sipguard_overload_shedding", "gauge",
         "1 while new INVITEs get 503 because work waits longer than proxy.shed_delay", mode="max"),
    Spec("sipguard_overload_shed_share", "gauge",
         "Share of new INVITEs answered 503 while shedding (0..1; 0 when not shedding)", mode="max"),
    Spec("sipguard_overload_delay_seconds", "gauge",
         "Longest wait of work (event-loop lag, oldest datagram in a UDP queue) in the last half second",
         mode="max"),
    Spec("sipguard_overload_store_wait", "gauge",
         "Longest wait of a decision on the network store in the last half second, beyond the store's quickest "
         "recent answer, as a share of store_timeout (new INVITEs are shed from 0.5 on; 1: decided degraded)",
         mode="max"),
    Spec("sipguard_gc_full_passes", "counter", "Full passes of the cyclic garbage collector, each a pause of its "
         "worker (run once the worker's resident memory stayed past its bound; summed over workers)"),
    Spec("sipguard_gc_full_pass_seconds", "counter", "Seconds the workers were paused in full collector passes"),
    Spec("sipguard_connections", "gauge", "Open TCP and TLS connections", ("transport",)),
    # every worker computes the same figures from the shared records: max, not sum
    Spec("sipguard_rmd_changes", "counter", "RMD filings whose status or implementation changed at an import "
         "(counted by worker 0)", ("change",)),
    Spec("sipguard_rmd_upstream_changes", "counter", "RMD changes of the filing of a configured trunk's provider",
         ("trunk", "change")),
    Spec("sipguard_upstream_score", "gauge", "trunk.score per trunk (upstreams.score_window; absent: too few calls)",
         ("trunk",), mode="max"),
    Spec("sipguard_upstream_calls", "gauge", "Calls per trunk in the last upstreams.score_window", ("trunk",),
         mode="max"),
    Spec("sipguard_upstream_share", "gauge", "Share (0..1) of a trunk's calls in the last upstreams.score_window "
         "per measure of trunk.score", ("trunk", "measure"), mode="max"),
    Spec("sipguard_connection_limits", "counter",
         "TCP/TLS connections refused at accept or closed by a limit (proxy.tcp)", ("limit",)),
)


def exposed_names() -> set[str]:
    """Every series name as Prometheus shows it (for the dashboard check and docs)."""
    out: set[str] = set()
    for spec in SPECS:
        if spec.kind == "counter":
            out.add(spec.name + "_total")
        elif spec.kind == "histogram":
            out.update(spec.name + s for s in ("_bucket", "_sum", "_count"))
        else:
            out.add(spec.name)
    return out | set(PROCESS_SERIES)


# The standard process series, for this process or (multiprocess mode) summed over the
# supervisor and its workers; max_fds and the start time are the supervisor's.
PROCESS_SERIES = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
                  "process_open_fds", "process_max_fds", "process_start_time_seconds")


class AllProcesses:
    """A collector of the process series over this process and the live workers whose
    sample files are in the multiprocess folder (their file names end in the pid).

    It reads /proc/PID only (the resident memory through ``observe/procmem``, as the
    collector pacing reads it): the systemd units set ProcSubset=pid, which hides /proc/stat,
    where prometheus_client's own ProcessCollector looks for the boot time (and, not
    finding it, reports nothing). The boot time comes from CLOCK_BOOTTIME instead."""

    def describe(self) -> Iterator[Metric]:
        """The names, without reading /proc (so a restricted registry finds this collector)."""
        yield CounterMetricFamily("process_cpu_seconds", "")
        for name in PROCESS_SERIES[1:]:
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[Metric]:
        me = os.getpid()
        totals = {"cpu": 0.0, "rss": 0.0, "vsize": 0.0, "fds": 0.0}
        start = max_fds = None
        for pid in [me, *sorted(_worker_pids() - {me})]:
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    parts = fh.read().rsplit(b")", 1)[-1].split()
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue                # gone, or not ours to read
            totals["cpu"] += (float(parts[11]) + float(parts[12])) / _TICKS
            totals["vsize"] += float(parts[20])
            totals["rss"] += resident_bytes(pid)
            totals["fds"] += fds
            if pid == me:
                boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
                start = boot + float(parts[19]) / _TICKS
                max_fds = float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        yield CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds.",
                                  value=totals["cpu"])
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.",
                                value=totals["rss"])
        yield GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                value=totals["vsize"])
        yield GaugeMetricFamily("process_open_fds", "Number of open file descriptors.", value=totals["fds"])
        if max_fds is not None and start is not None:
            yield GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors.", value=max_fds)
            yield GaugeMetricFamily("process_start_time_seconds",
                                    "Start time of the process since unix epoch in seconds.", value=start)


_TICKS = float(os.sysconf("SC_CLK_TCK"))


UPSTREAM_SERIES = ("sipguard_upstream_score", "sipguard_upstream_calls", "sipguard_upstream_share")
_UPSTREAMS_FILE = "upstreams_{}.json"   # not *.db: prometheus_client's collector reads those only
_UPSTREAMS_MAX = 4 << 20                # bytes read of one; a larger file is skipped


def _write_upstreams(folder: str, rows: list[tuple[str, int, dict[str, float], int | None]]) -> None:
    """This process's latest upstream table, replaced whole (a reader sees the old or the new)."""
    path = os.path.join(folder, _UPSTREAMS_FILE.format(process_id()))
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(rows, fh, separators=(",", ":"))
    os.replace(tmp, path)


class UpstreamSeries:
    """The sipguard_upstream_* gauges in multiprocess mode: the latest table of each live
    worker (``set_upstreams``), the highest value per series across them (the gauges' "max",
    as when they were sample files). A file that does not read as a table is skipped."""

    def describe(self) -> Iterator[Metric]:
        for name in UPSTREAM_SERIES:
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterator[Metric]:
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or ""
        calls: dict[str, float] = {}
        shares: dict[tuple[str, str], float] = {}
        scores: dict[str, float] = {}
        for pid in sorted(_worker_pids()):
            try:
                with open(os.path.join(folder, _UPSTREAMS_FILE.format(pid)), "rb") as fh:
                    text = fh.read(_UPSTREAMS_MAX + 1)
                if len(text) > _UPSTREAMS_MAX:
                    continue            # MAX_UPSTREAM_SERIES rows are far smaller: not a table of ours
                rows = json.loads(text)
                for trunk, n, by_measure, score in rows:
                    calls[trunk] = max(calls.get(trunk, n), n)
                    for measure, share in by_measure.items():
                        shares[trunk, measure] = max(shares.get((trunk, measure), share), share)
                    if score is not None:
                        scores[trunk] = max(scores.get(trunk, score), score)
            except (OSError, ValueError, TypeError, AttributeError, RecursionError):
                continue
        help_of = {spec.name: spec.help for spec in SPECS}
        families = {name: GaugeMetricFamily(name, help_of[name], labels=labels) for name, labels in
                    (("sipguard_upstream_score", ["trunk"]), ("sipguard_upstream_calls", ["trunk"]),
                     ("sipguard_upstream_share", ["trunk", "measure"]))}
        for trunk, value in scores.items():
            families["sipguard_upstream_score"].add_metric([trunk], value)
        for trunk, value in calls.items():
            families["sipguard_upstream_calls"].add_metric([trunk], value)
        for (trunk, measure), value in shares.items():
            families["sipguard_upstream_share"].add_metric([trunk, measure], value)
        yield from families.values()


def _worker_pids() -> set[int]:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder or not os.path.isdir(folder):
        return set()
    out = set()
    for name in os.listdir(folder):
        tail = name.rsplit("_", 1)[-1].split(".", 1)[0]
        if tail.isdigit() and os.path.exists(f"/proc/{tail}"):
            out.add(int(tail))
    return out


# This process's pid, kept here and renewed in each forked child: prometheus_client's
# multiprocess values ask for it on every increment (to notice a fork), and os.getpid() is a
# system call each time (about five per call under load).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def process_id() -> int:
    return _PID[0]


def prepare_multiprocess(directory: str) -> None:
    """Before forking workers: an empty folder for the per-process sample files."""
    if os.path.isdir(directory):
        shutil.rmtree(directory)         # stale files from a previous run would be summed in
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import values

    # the module read the variable at import; distinct per running process, as it requires
    values.ValueClass = values.MultiProcessValue(process_identifier=process_id)


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], _UPSTREAMS_FILE.format(pid)))


_current: CollectorRegistry | None = None   # the registry of this process's latest Metrics()
_alive: weakref.WeakSet[Metrics] = weakref.WeakSet()   # this process's, folded before a render


def render(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The /metrics body: every worker's samples in multiprocess mode, else ``registry``
    (default: the registry of the ``Metrics`` this process made last)."""
    return generate_latest(_exported(registry)), CONTENT_TYPE


def families(registry: CollectorRegistry | None = None, names: Iterable[str] = ()) -> Iterable[Metric]:
    """What ``render`` exports, as metric families, only the samples ``names`` (all when
    empty): the console reads them, with no text made and parsed again, and without the
    histograms it does not show."""
    exported = _exported(registry)
    if not names or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return exported.collect()      # the multiprocess collector names nothing: all of it
    return exported.restricted_registry(names).collect()


def _exported(registry: CollectorRegistry | None) -> CollectorRegistry:
    for made in list(_alive):
        made.fold()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        merged.register(AllProcesses())
        merged.register(UpstreamSeries())
        return merged
    if registry is None:
        from prometheus_client import REGISTRY

        registry = _current or REGISTRY
    return registry


MAX_UPSTREAM_SERIES = 1000    # trunks exported by set_upstreams (labels come from the records)


class Metrics:
    """One process's metrics. Own registry, so tests and replay can make several."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        global _current
        self.registry = registry or CollectorRegistry()
        _current = self.registry
        self.m: dict[str, Any] = {spec.name: _make(spec, self.registry) for spec in SPECS}
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):   # there render() adds every worker's
            self.registry.register(AllProcesses())
        from sipguard import __version__, native

        self.m["sipguard_build_info"].labels(__version__, platform.python_version(),
                                             "compiled" if native.compiled() else "python").set(1)
        self._invites: dict[tuple[str, str, str, str, str], Any] = {}
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._last: dict[str, float] = {}   # previous value of each cumulative stat, for deltas
        self._decision = self.m["sipguard_decision_seconds"]
        self._signed = self.m["sipguard_signed"]
        for name, values in KNOWN_LABELS.items():
            for value in values:
                self.child(name, value)
        # the per-call counts, folded into the values above (the sum goes on from its value:
        # a worker's file in multiprocess mode may hold one of an earlier process of its pid)
        self._latency_sum: float = self._decision._sum.get()
        self.decisions = DecisionCounts((*LATENCY_BUCKETS, float("inf")), self._latency_sum)
        _alive.add(self)

    def child(self, name: str, *labels: str) -> Any:
        key = (name, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = self.m[name].labels(*labels)
        return found

    # -- per call: counted in ``decisions`` (the decision sink counts there directly) ---------
    def observe_decision(self, record: CallRecord, latency_s: float) -> None:
        self.decisions.decision(record, latency_s)

    def rate_limited(self, limiter: str) -> None:
        self.decisions.limit(limiter)

    def detectors_hit(self, facts: Facts) -> None:
        """One count per detector fact that held on this call (sipguard/detectors.py, threats.py)."""
        self.decisions.facts(facts)

    def fold(self) -> None:
        """The per-call counts since the last fold into the Prometheus values: each value
        once, by the count (an increment of 1 per call before)."""
        counts = self.decisions.take()
        for (action, status, verstat, attest, trunk), n in counts.invites.items():
            key = (action, "" if status is None else str(status), verstat, attest or "", trunk or "")
            child = self._invites.get(key)
            if child is None:
                child = self._invites[key] = self.m["sipguard_invites"].labels(*key)
            child.inc(n)
        for reason, n in counts.reasons.items():
            self.child("sipguard_invite_reasons", reason).inc(n)
        for (rule, rule_class), n in counts.rules.items():
            self.child("sipguard_rule_hits", rule, rule_class or "").inc(n)
        for limiter, n in counts.limited.items():
            self.child("sipguard_rate_limit_hits", limiter).inc(n)
        for (fact, source), n in counts.detectors.items():
            self.child("sipguard_detector_hits", fact, source).inc(n)
        if counts.signed:
            self._signed.inc(counts.signed)
        # Histogram.observe per call is a bucket and the sum; the counts go to the bucket
        # values by themselves (prometheus_client keeps them per bucket, not cumulative), the
        # sum is set to the one added call by call
        for value, n in zip(self._decision._buckets, counts.buckets, strict=True):
            if n:
                value.inc(n)
        if counts.latency_sum != self._latency_sum:
            self._decision._sum.set(counts.latency_sum)
            self._latency_sum = counts.latency_sum

    # -- hooks (observe/hooks.MetricHooks): the verifier and the Redis store call them ---------
    def observe_x5u_fetch(self, seconds: float, outcome: str = "ok") -> None:
        """A download that gave a certificate; the failed ones come from VerifierCounters."""
        self.m["sipguard_x5u_fetch_seconds"].observe(seconds)
        self.child("sipguard_x5u_fetches", outcome).inc()

    def observe_store(self, op: str, seconds: float, error: bool = False) -> None:
        self.child("sipguard_store_seconds", op).observe(seconds)
        if error:
            self.child("sipguard_store_errors", op).inc()

    # -- records writer hooks ----------------------------------------------------------------
    def records_written(self, count: int, seconds: float) -> None:
        self.m["sipguard_records_written"].inc(count)
        self.m["sipguard_records_write_seconds"].observe(seconds)

    def records_spooled(self, count: int) -> None:
        self.m["sipguard_records_spooled"].inc(count)

    def records_write_failed(self) -> None:
        self.m["sipguard_records_errors"].inc()

    # -- periodic (the worker's housekeeping, every 0.5 s) ------------------------------------
    def export(self, *, core: ProxyCore | None = None, transports: Transports | None = None,
               guard: OverloadGuard | None = None, steering: Steering | None = None,
               pipeline: Pipeline | None = None, records: RecordWriter | None = None,
               pacer: GcPacer | None = None, now: float | None = None) -> None:
        """Export what the components count themselves: each keeps a ``counters`` slotted
        dataclass of cumulative ints, read here by its declared fields (their deltas go to the
        Prometheus counters), and a few levels (queue depths, cache sizes, health); and the
        per-call counts (``fold``)."""
        self.fold()
        if core is not None:
            self.m["sipguard_pending_decisions"].set(core.pending)
            self._events(core.counters)
        if transports is not None:
            self._events(transports.counters)
            for transport, count in transports.open_connections().items():
                self.child("sipguard_connections", transport).set(count)
            if transports.limits is not None:
                for limit, total in _fields(transports.limits.counters):
                    self._bump(self.child("sipguard_connection_limits", limit), "limit." + limit, total)
        if guard is not None:
            self._events(guard.counters)
            shedding, delay, share, stored = guard.gauges()
            self.m["sipguard_overload_shedding"].set(1.0 if shedding else 0.0)
            self.m["sipguard_overload_shed_share"].set(share)
            self.m["sipguard_overload_delay_seconds"].set(delay)
            self.m["sipguard_overload_store_wait"].set(stored)
        if steering is not None:
            self._events(steering.counters)
        if records is not None:
            self.m["sipguard_records_queue"].set(records.pending)
        if pacer is not None:
            self._bump(self.m["sipguard_gc_full_passes"], "gc.full_passes", pacer.counters.full_passes)
            self._bump(self.m["sipguard_gc_full_pass_seconds"], "gc.full_pass_seconds",
                       pacer.counters.full_pass_seconds)
        if pipeline is not None:
            # the breaker runs on the verifier's wall clock
            self._verifier(pipeline.verifier, pipeline.clock.time() if now is None else now)
            self._store(pipeline.store)

    def _events(self, counters: DataclassInstance) -> None:
        """Every field of a component's counters is an event of sipguard_sip_events."""
        for event, total in _fields(counters):
            self._bump(self.child("sipguard_sip_events", event), "event." + event, total)

    def set_upstreams(self, measures: dict[str, Any], scores: dict[str, int]) -> None:
        """From the trunk.score refresh (records/upstreams.py), once per upstreams.score_interval:
        the table replaces the last one, so a trunk gone from the window (or whose score is
        now absent) goes from the series too. Several workers: prometheus_client cannot take a
        series out of a process's sample file (``clear`` only warns), so the table goes to a
        file of its own in the multiprocess folder, which ``UpstreamSeries`` reads at render."""
        rows = [(trunk, m.calls, m.shares(), scores.get(trunk))
                for trunk, m in list(measures.items())[:MAX_UPSTREAM_SERIES]]
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            _write_upstreams(folder, rows)
            return
        for name in UPSTREAM_SERIES:
            self.m[name].clear()
        self._children = {k: v for k, v in self._children.items() if not k[0].startswith("sipguard_upstream_")}
        for trunk, calls, shares, score in rows:
            self.m["sipguard_upstream_calls"].labels(trunk).set(calls)
            for measure, share in shares.items():
                self.m["sipguard_upstream_share"].labels(trunk, measure).set(share)
            if score is not None:
                self.m["sipguard_upstream_score"].labels(trunk).set(score)

    def watch_upstreams(self, trunks: Iterable[str]) -> None:
        """The RMD watch starts (worker 0): each configured trunk's change series at 0, so a
        panel or an alert on them has a line before the first change."""
        for trunk in trunks:
            for change in RMD_CHANGES:
                self.child("sipguard_rmd_upstream_changes", trunk, change)

    def rmd_changes(self, changes: Any, upstream: Any) -> None:
        """From the RMD watch (proxy/worker.py): every change, and (trunk, change) of upstreams."""
        for c in changes:
            self.child("sipguard_rmd_changes", c.change).inc()
        for trunk, c in upstream:
            self.child("sipguard_rmd_upstream_changes", trunk, c.change).inc()

    def _verifier(self, verifier: Verifier, now: float) -> None:
        c, certs = verifier.counters, verifier.creds.certs
        for result, total in (("hit", certs.counters.hits), ("miss", certs.counters.misses),
                              ("l2_hit", c.l2_hits), ("stale", c.stale_served), ("negative", c.x5u_failed_hits)):
            self._bump(self.child("sipguard_x5u_cache", result), "x5u_cache." + result, total)
        for outcome, total in (("failed", c.x5u_fetch_failures), ("refused", c.x5u_refused),
                               ("breaker_skip", c.x5u_breaker_skips), ("not_found", c.x5u_not_found),
                               ("budget_skip", c.x5u_budget_skips)):
            self._bump(self.child("sipguard_x5u_fetches", outcome), "x5u_fetches." + outcome, total)
        self.m["sipguard_cert_cache_entries"].set(len(certs))
        for host, state in verifier.breaker_states(now).items():
            self.child("sipguard_x5u_breaker_state", host).set(BREAKER_VALUE.get(state, 0.0))

    def _store(self, store: Store) -> None:
        c = store.counters
        self.m["sipguard_store_healthy"].set(1.0 if store.healthy else 0.0)
        for result, total in (("lookup", c.lookups), ("degraded", c.degraded), ("error", c.errors),
                              ("rmd_remembered", c.rmd_remembered)):
            self._bump(self.child("sipguard_store_requests", result), "store." + result, total)
        self._bump(self.m["sipguard_passport_replays"], "store.passport_replays", c.passport_replays)

    def _bump(self, counter: Any, key: str, total: float) -> None:
        last = self._last.get(key, 0.0)
        if total > last:
            counter.inc(total - last)
        self._last[key] = total      # a reset source (reload) starts counting again from its value

    def render(self) -> tuple[bytes, str]:
        return render(self.registry)


def _fields(counters: DataclassInstance) -> Iterator[tuple[str, int]]:
    """(field name, value) of a component's counters, in declaration order."""
    return zip((f.name for f in fields(counters)), astuple(counters), strict=True)


def _make(spec: Spec, registry: CollectorRegistry) -> Any:
    if spec.kind == "counter":
        return Counter(spec.name, spec.help, spec.labels, registry=registry)
    if spec.kind == "histogram":
        return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)
    return Gauge(spec.name, spec.help, spec.labels, registry=registry,
                 multiprocess_mode=spec.mode)  # type: ignore[arg-type]
