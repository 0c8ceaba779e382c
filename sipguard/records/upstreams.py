"""Know your upstream, from the stored records: ``sipguard upstreams``, ``GET /upstreams``, and
the background refresh of ``trunk.score``.

Where the work happens:

* SQLite: per view (trunks, signers), the minute roll-ups of the window's whole minutes and a
  GROUP BY over the records of its two partial minutes (``SqliteRecords.window_rows``); what
  comes back is one row per minute and distinct (key, attest, verstat, caller class, SPC
  owner, RMD status, implementation), whatever the call count;
* PostgreSQL: the same groups, summed from hourly roll-ups for the window's whole hours and
  grouped from the records for the partial ones (``PostgresRecords.measure_rows_rolled``); the
  score refresh (an hour or so) groups the records directly;
* Redis (a Stream of at most 7 days): one streaming scan of the window, each record folded as
  it comes (nothing held but the counters), trunks and signers in the same pass.

measures.py folds the rows; the arithmetic and definitions live there.

``window`` checks a request's parameters (``since``: a duration such as ``7d`` or a time;
``until``; ``n``: rows per list) and refuses, naming the parameter, anything unusable or
older than the records are kept (``traceback.retention_days``): HTTP 400, exit 1.

``ScoreRefresher`` runs in each worker: every ``upstreams.score_interval`` seconds it
computes the trunk measures of the last ``score_window`` seconds and replaces the pipeline's
``scores`` dict in one assignment. A decision reads ``scores.get(trunk)``: no store round
trip, no lock. A refresh that fails keeps the previous table (logged, counted); the
gauges ``sipguard_upstream_*`` are set from the same measures.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sipguard.records.measures import Measures, UpstreamsConfig, fold, parse_duration, ranked, score
from sipguard.records.postgres import PostgresRecords, is_url, redact
from sipguard.records.query import BadParameter, QueryError, iso_utc, parse_count, parse_time, read
from sipguard.records.record import TracebackConfig

log = logging.getLogger("sipguard.upstreams")

PARAMS = ("since", "until", "n")
DEFAULT_SINCE = "7d"
DEFAULT_N = 100
MAX_N = 1000                # trunks and signers per list: a JSON answer of a few hundred kB at most


@dataclass(frozen=True, slots=True)
class Window:
    since: float
    until: float
    n: int = DEFAULT_N


def window(params: Mapping[str, str | None], now: float, retention_days: int, max_n: int = MAX_N) -> Window:
    """A checked report window; BadParameter names the first parameter that is unusable."""
    for name in params:
        if name not in PARAMS:
            raise BadParameter(name, f"unknown parameter; expected one of {', '.join(PARAMS)}")
    given = {k: v.strip() for k, v in params.items() if v is not None and v.strip()}
    until = parse_time(given["until"], "until") if "until" in given else now
    text = given.get("since", DEFAULT_SINCE)
    seconds = parse_duration(text)
    since = until - seconds if seconds is not None else _time(text)
    if since > until:
        raise BadParameter("since", "is after until")
    oldest = now - retention_days * 86400.0
    if since < oldest - 86400.0:    # a day of slack: PostgreSQL keeps whole days
        raise BadParameter("since", f"{text[:40]!r} reaches before the oldest record kept "
                                    f"(traceback.retention_days: {retention_days}); ask for at most "
                                    f"{retention_days}d")
    n = parse_count(given["n"], "n", max_n) if "n" in given else min(DEFAULT_N, max_n)
    return Window(since, until, n)


def _time(text: str) -> float:
    try:
        return parse_time(text, "since")
    except BadParameter:
        raise BadParameter("since", f"{text[:40]!r}: expected a duration (7d, 24h, 90m, 3600s, 2w) or a time "
                                    "(ISO 8601, epoch seconds)") from None


def whole_minutes(since: float, until: float) -> tuple[int, int]:
    """The score refresh's window of [since, until] in whole minutes since the epoch, [first,
    last): since's minute to until's, both included, so up to a minute longer at its old end.
    Each store's roll-up of the minute under way holds its records written so far (Redis and
    PostgreSQL count each write as it is made, SQLite folds the records since its last roll
    first), so the window is read from the roll-ups alone (``trunk_minutes``), with no
    partial minute to read from the records, and the newest calls count at once."""
    return int(since // 60), int(until // 60) + 1


async def measures(store_url: str, cfg: TracebackConfig, since: float, until: float, signers: bool = True,
                   redis_client_factory: Callable[[str], Any] | None = None
                   ) -> tuple[dict[str, Measures], dict[str, Measures]]:
    """(per trunk, per SPC) over [since, until], from the store records go to. Without
    ``signers``: the trunks over ``whole_minutes(since, until)`` (``trunk_measures``)."""
    if not signers:
        [trunks] = await trunk_measures(store_url, cfg, [whole_minutes(since, until)], redis_client_factory)
        return trunks, {}
    return await read(
        store_url, cfg,
        # a report: both views, over any window the operator asks, whole minutes from the roll-ups
        lambda db: (fold(db.window_rows("trunks", since, until)), fold(db.window_rows("spc", since, until))),
        lambda pg: _rolled(pg, since, until),     # a report: whole hours from the roll-ups (rolled now if need be)
        lambda rs: _scan(rs, since, until, signers), redis_client_factory)


async def _rolled(pg: Any, since: float, until: float) -> tuple[dict[str, Measures], dict[str, Measures]]:
    trunk_rows, spc_rows, _ = await pg.measure_rows_rolled(since, until, time.time())
    return fold(trunk_rows), fold(spc_rows)


async def trunk_measures(store_url: str, cfg: TracebackConfig, spans: Sequence[tuple[int, int]],
                         redis_client_factory: Callable[[str], Any] | None = None) -> list[dict[str, Measures]]:
    """Per trunk over each span of whole minutes [first, last), from each store's minute
    roll-ups alone (``trunk_minutes``), over one connection: the trunk score refresh, every
    minute in every worker (one span), and the console's series (a span a bucket)."""
    async def network(store: Any) -> list[dict[str, Measures]]:
        return [fold(await store.trunk_minutes(first, last)) for first, last in spans]

    return await read(store_url, cfg, lambda db: [fold(rows) for rows in db.trunk_spans(spans)],
                      network, network, redis_client_factory)


async def _scan(rs: Any, since: float, until: float, signers: bool) -> tuple[dict[str, Measures], dict[str, Measures]]:
    trunks: dict[str, Measures] = {}
    spcs: dict[str, Measures] = {}
    async for r in rs.scan(since, until):
        if not since <= r.time <= until:
            continue
        if r.trunk is not None:
            m = trunks.get(r.trunk) or trunks.setdefault(r.trunk, Measures(r.trunk))
            m.add(r.attest, r.verstat, r.caller_check, r.spc_owner, r.trunk_rmd, r.trunk_implementation, 1, r.time)
        if signers and r.spc is not None:
            s = spcs.get(r.spc) or spcs.setdefault(r.spc, Measures(r.spc))
            s.add(r.attest, r.verstat, r.caller_check, r.spc_owner, None, None, 1, r.time)
    return trunks, spcs


async def report(store_url: str, cfg: TracebackConfig, win: Window, min_calls: int,
                 redis_client_factory: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The answer of ``GET /upstreams`` and ``sipguard upstreams --format jsonl`` (the contract:
    ``{"since", "until", "upstreams": [{"trunk", "calls", ...}], "signers": [{"spc", "calls", ...}]}``)."""
    trunks, spcs = await measures(store_url, cfg, win.since, win.until, True, redis_client_factory)
    return {"since": iso_utc(win.since), "until": iso_utc(win.until), "timezone": "UTC",
            "upstreams": [m.to_json("trunk", min_calls) for m in ranked(trunks, win.n)],
            "signers": [m.to_json("spc", min_calls) for m in ranked(spcs, win.n)],
            "upstreams_total": len(trunks), "signers_total": len(spcs)}


SERIES_SHARES = ("unsigned", "failed", "invalid", "dno")   # the shares a series carries per bucket
MAX_SERIES_TRUNKS = 50      # trunks in one series answer, most calls first
MAX_BUCKETS = 48


async def series(store_url: str, cfg: TracebackConfig, until: float, buckets: int, width: float,
                 min_calls: int, n: int = MAX_SERIES_TRUNKS,
                 redis_client_factory: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Per trunk, its measures in each of ``buckets`` windows of ``width`` seconds (rounded up
    to whole minutes) ending with the minute under way at ``until`` (the console's plots over
    time): ``{"starts": [ISO...], "width": s, "trunks": {trunk: {"calls": [...], "score":
    [...], "unsigned": [...], ...}}}``, the ``n`` trunks with most calls over the whole span.
    The buckets start on minute boundaries, so each is read from the stores' minute roll-ups
    alone (``trunk_measures``, as the score refresh reads): with records in Redis a
    bucket in seconds decoded its two partial minutes on the event loop, about a second of CPU
    at 1,000 calls/s (bench/RESULTS.md). One query per bucket (at most MAX_BUCKETS), all over
    one connection."""
    if not 1 <= buckets <= MAX_BUCKETS or width <= 0:
        raise BadParameter("buckets", f"1 to {MAX_BUCKETS} buckets of a positive width")
    step = max(1, math.ceil(width / 60))          # minutes a bucket
    end = int(until // 60) + 1                    # the minute under way counts, as in the refresh
    firsts = [end - (buckets - i) * step for i in range(buckets)]
    starts = [first * 60.0 for first in firsts]
    per_bucket = await trunk_measures(store_url, cfg, [(first, first + step) for first in firsts],
                                      redis_client_factory)
    totals: dict[str, int] = {}
    for trunks in per_bucket:
        for name, m in trunks.items():
            totals[name] = totals.get(name, 0) + m.calls
    chosen = sorted(totals, key=lambda name: (-totals[name], name))[:n]
    out: dict[str, dict[str, list[Any]]] = {}
    for name in chosen:
        row: dict[str, list[Any]] = {"calls": [], "score": [], **{k: [] for k in SERIES_SHARES}}
        for trunks in per_bucket:
            found = trunks.get(name)
            if found is None or not found.calls:        # no call in that bucket: no share to plot
                row["calls"].append(0)
                for k in ("score", *SERIES_SHARES):
                    row[k].append(None)
                continue
            shares = found.shares()
            row["calls"].append(found.calls)
            row["score"].append(score(found, min_calls))
            for k in SERIES_SHARES:
                row[k].append(round(shares[k], 4))
        out[name] = row
    return {"starts": [iso_utc(t) for t in starts], "width": step * 60.0, "until": iso_utc(until), "trunks": out}


class ScoreRefresher:
    """Recompute ``trunk.score`` in the background (module doc); ``install`` takes the new table."""

    def __init__(self, store_url: str, cfg: TracebackConfig, upstreams: UpstreamsConfig,
                 install: Callable[[dict[str, int]], None], metrics: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store_url = store_url
        self.cfg = cfg
        self.upstreams = upstreams
        self.install = install
        self.metrics = metrics
        self.clock = clock
        self.refreshed: float | None = None     # when the table in force was computed
        self.failures = 0

    async def refresh(self) -> dict[str, int]:
        now = self.clock()
        if self.cfg.store_for(self.store_url) == "memory" and not os.path.exists(self.cfg.path):
            self.install({})          # nothing recorded yet: no scores, quietly
            self.refreshed = now
            return {}
        trunks, _ = await measures(self.store_url, self.cfg, now - self.upstreams.score_window, now, signers=False)
        table = {key: s for key, m in trunks.items()
                 if (s := score(m, self.upstreams.score_min_calls)) is not None}
        self.install(table)
        self.refreshed = now
        await self._roll_recent(now)
        if self.metrics is not None and hasattr(self.metrics, "set_upstreams"):
            self.metrics.set_upstreams(trunks, table)
        return table

    async def _roll_recent(self, now: float) -> None:
        """PostgreSQL: keep the hourly roll-ups of the reports up to date as hours end (a few
        thousand records an hour's worth of grouping, once per hour; a no-op the other minutes).
        A read-only replica cannot: the reports then read the records."""
        url = self.cfg.store_for(self.store_url)
        if not is_url(url):
            return
        pg = PostgresRecords(url, self.cfg.retention_days, writer=False)
        try:
            await pg.roll_recent(now)
        except Exception as exc:   # noqa: BLE001 - roll-ups are an optimisation of the reports
            log.debug("hourly roll-ups not made: %s", redact(str(exc)))
        finally:
            await pg.aclose()

    async def run(self, stopping: asyncio.Event) -> None:
        interval = self.upstreams.score_interval
        if interval <= 0:
            return
        while not stopping.is_set():
            try:
                await self.refresh()
            except QueryError as exc:
                self.failures += 1
                log.warning("trunk.score not refreshed, the previous scores stay: %s", exc)
            except Exception:   # noqa: BLE001 - a refresh must never end the worker
                self.failures += 1
                log.exception("trunk.score refresh failed, the previous scores stay")
            try:
                await asyncio.wait_for(stopping.wait(), interval)
            except TimeoutError:
                pass
