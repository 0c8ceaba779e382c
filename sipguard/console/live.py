"""The "Now" page's numbers, from the metrics the service already exports.

``snapshot`` reads the metric families (``observe.metrics.families``: this process, or
every worker in multiprocess mode) into totals; ``Live`` keeps the last ``KEEP`` snapshots
(one every ``SAMPLE_EVERY`` seconds from the listener's sampler, one a second at most while
a page polls) and turns them into rates: calls per second by action and by verstat. So the
page shows the last minutes as soon as it opens.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric

KEEP = 300          # samples: 10 to 25 minutes
MIN_STEP = 1.0      # seconds between two samples kept
SAMPLE_EVERY = 5.0  # the listener's sampler (observe/http.py)
TOP = 10


def snapshot(families: Iterable[Metric]) -> dict[str, Any]:
    """Totals since start: counts by label, the gauges that say how the service is."""
    by: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    gauges: dict[str, float] = {}
    breakers: dict[str, float] = {}
    for family in families:
        for s in family.samples:
            name, labels, value = s.name, s.labels, float(s.value)
            if name == "sipguard_invites_total":
                by["action"][labels.get("action", "")] += value
                by["verstat"][labels.get("verstat", "")] += value
                by["attest"][labels.get("attest", "") or "none"] += value
                if labels.get("action") == "reject":
                    by["rejects_by_trunk"][labels.get("trunk", "") or "(no trunk)"] += value
                by["calls_by_trunk"][labels.get("trunk", "") or "(no trunk)"] += value
            elif name == "sipguard_rule_hits_total":
                by["rules"][labels.get("rule", "")] += value
            elif name == "sipguard_x5u_fetches_total":
                by["x5u_fetches"][labels.get("outcome", "")] += value
            elif name == "sipguard_x5u_cache_total":
                by["x5u_cache"][labels.get("result", "")] += value
            elif name == "sipguard_store_requests_total":
                by["store_requests"][labels.get("result", "")] += value
            elif name == "sipguard_store_errors_total":
                by["store_errors"][labels.get("op", "")] += value
            elif name == "sipguard_x5u_breaker_state":
                breakers[labels.get("host", "")] = value
            elif name in _GAUGES:
                gauges[_GAUGES[name]] = value
    return {"by": {k: dict(v) for k, v in by.items()}, "gauges": gauges, "breakers": breakers}


_GAUGES = {"sipguard_store_healthy": "store_healthy", "sipguard_pending_decisions": "pending",
           "sipguard_overload_shedding": "shedding", "sipguard_records_queue": "records_queue",
           "sipguard_records_errors_total": "records_errors", "sipguard_cert_cache_entries": "cert_cache",
           "process_resident_memory_bytes": "memory_bytes", "process_cpu_seconds_total": "cpu_seconds",
           "process_open_fds": "open_fds"}


COUNTERS = ("sipguard_invites_total", "sipguard_rule_hits_total", "sipguard_x5u_fetches_total",
            "sipguard_x5u_cache_total", "sipguard_store_requests_total", "sipguard_store_errors_total")
WANTED = frozenset((*COUNTERS, "sipguard_x5u_breaker_state", *_GAUGES))   # what snapshot reads


def top(counts: dict[str, float], n: int = TOP) -> list[list[Any]]:
    return [[k, v] for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n] if v > 0]


class Live:
    def __init__(self) -> None:
        self.samples: deque[tuple[float, dict[str, Any]]] = deque(maxlen=KEEP)

    def sample(self, families: Iterable[Metric], at: float | None = None) -> dict[str, Any]:
        at = time.time() if at is None else at
        snap = snapshot(families)
        if not self.samples or at - self.samples[-1][0] >= MIN_STEP:
            self.samples.append((at, snap))
        return snap

    def now(self, families: Iterable[Metric], workers: int, at: float | None = None) -> dict[str, Any]:
        """The document of /console/api/now."""
        at = time.time() if at is None else at
        snap = self.sample(families, at)
        series = []
        items = list(self.samples)
        for (t0, a), (t1, b) in zip(items, items[1:], strict=False):
            dt = max(t1 - t0, 1e-3)
            series.append({"t": round(t1, 3),
                           "action": _rates(a, b, "action", dt), "verstat": _rates(a, b, "verstat", dt)})
        by = snap["by"]
        return {"time": at, "workers": workers, "series": series,
                "totals": {"action": by.get("action", {}), "verstat": by.get("verstat", {}),
                           "attest": by.get("attest", {})},
                "rules": top(by.get("rules", {})), "rejects_by_trunk": top(by.get("rejects_by_trunk", {})),
                "x5u": {"fetches": by.get("x5u_fetches", {}), "cache": by.get("x5u_cache", {}),
                        "breakers_open": sorted(h for h, v in snap["breakers"].items() if v >= 2)},
                "store": {"healthy": snap["gauges"].get("store_healthy", 1.0) >= 1.0,
                          "requests": by.get("store_requests", {}), "errors": by.get("store_errors", {})},
                "gauges": snap["gauges"]}


def _rates(a: dict[str, Any], b: dict[str, Any], key: str, dt: float) -> dict[str, float]:
    old, new = a["by"].get(key, {}), b["by"].get(key, {})
    # a counter that went down (a worker restarted) counts from zero again
    return {k: round(max(v - old.get(k, 0.0), 0.0) / dt, 3) if v >= old.get(k, 0.0) else round(v / dt, 3)
            for k, v in new.items()}
