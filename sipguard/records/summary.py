"""The measures of a stretch of call records: what the daily report, the console's "now" view
and the per-upstream pages show, computed once here.

``summary(records, since, until)`` folds records into a ``Summary``: calls by action and by
verification result, the attestation mix, the rules that decided calls, the upstreams (trunks)
by rejects, and the same per hour. ``Summary.add`` takes one record at a time, so a caller that
reads a store (``collect``, through ``query.each``) never holds more than a page. Everything is counted by the
values the records hold; nothing here formats or escapes (the renderers do).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sipguard.records import query
from sipguard.records.record import CallRecord, TracebackConfig

HOUR = 3600.0
PAGE = 20_000                  # records read from the store per query
NO_ATTEST = "none"             # calls that carried no attestation (unsigned, or no verdict)
NO_TRUNK = "(no trunk)"


@dataclass(slots=True)
class Upstream:
    """One trunk's calls in the stretch."""

    trunk: str
    calls: int = 0
    rejected: int = 0
    attest_c: int = 0
    failed: int = 0             # calls whose verification failed (TN-Validation-Failed)


@dataclass(slots=True)
class Summary:
    since: float
    until: float
    calls: int = 0
    signed: int = 0
    actions: Counter[str] = field(default_factory=Counter)          # forward | reject
    statuses: Counter[int] = field(default_factory=Counter)         # responses sent upstream
    verstats: Counter[str] = field(default_factory=Counter)
    action_verstat: Counter[tuple[str, str]] = field(default_factory=Counter)
    attest: Counter[str] = field(default_factory=Counter)           # A | B | C | none
    rules: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    hours: dict[int, Counter[str]] = field(default_factory=dict)    # hour start (epoch) -> action -> calls

    def add(self, r: CallRecord) -> bool:
        """Count one record; False (not counted) when it lies outside [since, until)."""
        if not (self.since <= r.time < self.until):
            return False
        self.calls += 1
        self.signed += r.signed
        self.actions[r.action] += 1
        if r.status is not None:
            self.statuses[r.status] += 1
        self.verstats[r.verstat] += 1
        self.action_verstat[(r.action, r.verstat)] += 1
        self.attest[r.attest or NO_ATTEST] += 1
        if r.rule is not None:
            self.rules[r.rule] += 1
        self.reasons.update(r.reasons)
        trunk = r.trunk or NO_TRUNK
        up = self.upstreams.get(trunk)
        if up is None:
            up = self.upstreams[trunk] = Upstream(trunk)
        up.calls += 1
        up.rejected += r.action == "reject"
        up.attest_c += r.attest == "C"
        up.failed += r.verstat == "TN-Validation-Failed"
        hour = int(r.time // HOUR * HOUR)
        per = self.hours.get(hour)
        if per is None:
            per = self.hours[hour] = Counter()
        per[r.action] += 1
        return True

    def top_upstreams(self, n: int = 10) -> list[Upstream]:
        """The upstreams with the most rejected calls (then the most calls), heaviest first."""
        ranked = sorted(self.upstreams.values(), key=lambda u: (-u.rejected, -u.calls, u.trunk))
        return ranked[:n]

    def hourly(self) -> list[tuple[int, Counter[str]]]:
        """Every hour of the stretch in order, the empty ones included (a gap is news)."""
        first = int(self.since // HOUR * HOUR)
        last = int(math.ceil(self.until / HOUR) * HOUR)
        if last - first > 24 * 400 * HOUR:      # more than a year and a bit: only the hours seen
            return sorted(self.hours.items())
        return [(h, self.hours.get(h, Counter())) for h in range(first, last, int(HOUR))]


def summary(records: Iterable[CallRecord], since: float, until: float) -> Summary:
    out = Summary(since, until)
    for record in records:
        out.add(record)
    return out


async def collect(store_url: str, cfg: TracebackConfig, since: float, until: float, page: int = PAGE,
                  redis_client_factory: Callable[[str], Any] | None = None) -> Summary:
    """The summary of the records between ``since`` and ``until`` in the configured store,
    read a page at a time (``query.each``), so memory stays bounded whatever the day held."""
    out = Summary(since, until)
    async for record in query.each(store_url, cfg, since, until, page, redis_client_factory):
        out.add(record)
    return out


__all__ = ["NO_ATTEST", "NO_TRUNK", "Summary", "Upstream", "collect", "summary"]
