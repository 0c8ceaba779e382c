"""Find traceback records again: by number, time window or Call-ID; and the campaign view.

One function for each question, used by ``sipguard traceback`` and by the HTTP
``/traceback`` endpoint so both answer alike, from the store records go to
(``TracebackConfig.store_for``: SQLite, a Redis Stream or PostgreSQL). Numbers are matched after the same
normalisation the records were written with (``sipguard.numbers.parse_tn``), so
``+1 (202) 555-0123``, ``2025550123`` and ``tel:+12025550123`` find the same calls.
A traceback request gives one time: ``at`` searches ``window`` seconds either side.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from sipguard.errors import SipguardError
from sipguard.records.postgres import PostgresRecords, is_url, redact
from sipguard.records.record import CallRecord, TracebackConfig, normalise_tn

TopBy = Literal["callers", "trunks", "spc"]
TOP_BY: tuple[str, ...] = ("callers", "trunks", "spc")
DEFAULT_WINDOW = 300.0


class QueryError(SipguardError):
    """A query the store cannot answer (no record file yet, store unreachable)."""


def parse_time(text: str) -> float:
    """ISO 8601 (``2025-08-06T14:03:00Z``, ``2025-08-06 14:03``, ``...-04:00``) or epoch
    seconds. A time without a zone is taken as UTC (say so to the user)."""
    when = read_time(text)
    if isinstance(when, float):
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def read_time(text: str) -> float | datetime.datetime:
    """Epoch seconds, or the ISO 8601 time as written (its zone, if it has one, kept);
    QueryError for anything else."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise QueryError(f"time {text!r}: expected ISO 8601 (2025-08-06T14:03:00Z; no zone = UTC) "
                         "or epoch seconds") from None


def iso_utc(t: float | None) -> str | None:
    """Epoch -> ``2025-08-06T14:03:00.123Z`` (records are answered in UTC)."""
    if t is None:
        return None
    when = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def time_range(since: float | None, until: float | None, at: float | None,
               window: float = DEFAULT_WINDOW) -> tuple[float | None, float | None]:
    """``at`` wins over since/until: a request names one time, we search around it."""
    if at is not None:
        return at - window, at + window
    return since, until


async def find(store_url: str, cfg: TracebackConfig, caller: str | None = None, callee: str | None = None,
               since: float | None = None, until: float | None = None, call_id: str | None = None,
               at: float | None = None, window: float = DEFAULT_WINDOW, limit: int = 1000,
               redis_client_factory: Callable[[str], Any] | None = None) -> list[CallRecord]:
    low, high = time_range(since, until, at, window)
    caller_n = normalise_tn(caller) if caller else None
    callee_n = normalise_tn(callee) if callee else None
    if (caller and caller_n is None) or (callee and callee_n is None):
        return []      # not a number: nothing was recorded under it
    store_url = cfg.store_for(store_url)
    if store_url == "memory":
        db = _sqlite(cfg)
        try:
            return await asyncio.to_thread(db.find, low, high, call_id, caller_n, callee_n, limit)
        finally:
            db.close()
    if is_url(store_url):
        pg = PostgresRecords(store_url, cfg.retention_days, writer=False)
        try:
            return await pg.find(low, high, call_id, caller_n, callee_n, limit)
        except Exception as exc:
            raise QueryError(f"cannot read records from {redact(store_url)}: {exc}") from None
        finally:
            await pg.aclose()
    rs = _redis(store_url, redis_client_factory)
    try:
        return await rs.find(low, high, call_id, caller_n, callee_n, limit)
    except Exception as exc:
        raise QueryError(f"cannot read records from {store_url}: {exc}") from None
    finally:
        await rs.aclose()


async def top(store_url: str, cfg: TracebackConfig, by: str, since: float | None,
              until: float | None = None, n: int = 20,
              redis_client_factory: Callable[[str], Any] | None = None) -> list[tuple[str, int, int]]:
    """The heaviest sources of rejected or C-attested calls: (key, rejected, attest_c),
    heaviest first. ``by``: callers (caller number), trunks, spc (signer)."""
    if by not in TOP_BY:
        raise QueryError(f"--top {by!r}: expected one of {', '.join(TOP_BY)}")
    store_url = cfg.store_for(store_url)
    if store_url == "memory":
        db = _sqlite(cfg)
        try:
            return await asyncio.to_thread(db.top, by, since, until, n)
        finally:
            db.close()
    if is_url(store_url):
        pg = PostgresRecords(store_url, cfg.retention_days, writer=False)
        try:
            return await pg.top(by, since, until, n)
        except Exception as exc:
            raise QueryError(f"cannot read records from {redact(store_url)}: {exc}") from None
        finally:
            await pg.aclose()
    rs = _redis(store_url, redis_client_factory)
    try:
        return await _top_stream(rs, by, since, until, n)
    except Exception as exc:
        raise QueryError(f"cannot read records from {store_url}: {exc}") from None
    finally:
        await rs.aclose()


async def _top_stream(rs: Any, by: str, since: float | None, until: float | None,
                      n: int) -> list[tuple[str, int, int]]:
    field = {"callers": "caller", "trunks": "trunk", "spc": "spc"}[by]
    rejected: Counter[str] = Counter()
    attest_c: Counter[str] = Counter()
    async for r in rs.scan(since, until):
        if (since is not None and r.time < since) or (until is not None and r.time > until):
            continue
        key = getattr(r, field)
        if key is None:
            continue
        if r.action == "reject":
            rejected[key] += 1
        if r.attest == "C":
            attest_c[key] += 1
    return rank(rejected, attest_c, n)


def rank(rejected: Counter[str], attest_c: Counter[str], n: int) -> list[tuple[str, int, int]]:
    keys = set(rejected) | set(attest_c)
    rows = [(k, rejected[k], attest_c[k]) for k in keys]
    rows.sort(key=lambda row: (-(row[1] + row[2]), row[0]))
    return rows[:n]


def _sqlite(cfg: TracebackConfig) -> Any:
    from sipguard.records.sqlite import SqliteRecords

    if not os.path.exists(cfg.path):
        raise QueryError(f"no record file at {cfg.path} (traceback.path): sipguard has not "
                         "recorded any call with this config yet")
    return SqliteRecords(cfg.path)


def _redis(url: str, factory: Callable[[str], Any] | None) -> Any:
    from sipguard.records.redis_stream import RedisRecords

    return RedisRecords(url, factory)
