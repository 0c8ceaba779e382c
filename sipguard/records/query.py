"""Find traceback records again: by number, time window or Call-ID; and the campaign view.

One function for each question, used by ``sipguard traceback`` and by the HTTP
``/traceback`` endpoint so both answer alike, from the store records go to
(``TracebackConfig.store_for``: SQLite, a Redis Stream or PostgreSQL). Numbers are matched after the same
normalisation the records were written with (``sipguard.numbers.parse_tn``), so
``+1 (202) 555-0123``, ``2025550123`` and ``tel:+12025550123`` find the same calls.
A traceback request gives one time: ``at`` searches ``window`` seconds either side.

``question`` turns the parameters of a request (HTTP query string or command line) into
a checked ``Question``: every time finite and between 1970 and 2100, the window, limit
and row count whole and bounded, so no value can ask the store for everything or make
the answer unprintable; a bad one is a ``BadParameter`` naming it (HTTP 400, exit 1).
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sipguard.errors import SipguardError
from sipguard.records.postgres import PostgresRecords, is_url, redact
from sipguard.records.record import CallRecord, TracebackConfig, normalise_tn

T = TypeVar("T")
TopBy = Literal["callers", "trunks", "spc"]
TOP_BY: tuple[str, ...] = ("callers", "trunks", "spc")
DEFAULT_WINDOW = 300.0
DEFAULT_LIMIT = 1000
DEFAULT_TOP = 20
# Bounds of what a request may ask. Times: no call record is older than the epoch or later
# than 2100, and every bound a window adds stays a printable date. The window reaches a month
# either side; a limit of 10,000 records is a few MB of JSON, the most one answer may cost.
MAX_TIME = 4102444800.0            # 2100-01-01T00:00:00Z
MAX_WINDOW = 31 * 86400.0
MAX_LIMIT = 10_000
CLI_MAX_LIMIT = 100_000_000
MAX_TOP = 1_000
PARAMS = ("caller", "callee", "at", "window", "since", "until", "call_id", "limit", "top", "n")
MAX_TEXT = 256                     # numbers and Call-IDs: longer ones were never recorded


class QueryError(SipguardError):
    """A query the store cannot answer (no record file yet, store unreachable)."""


class BadParameter(QueryError):
    """A parameter that cannot be used as given; ``name`` is the parameter (HTTP 400, exit 1)."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.detail = message
        super().__init__(f"{name}: {message}")


@dataclass(frozen=True, slots=True)
class Question:
    """A checked traceback request; ``at_text`` is ``at`` as written (its zone goes in answers)."""

    caller: str | None = None
    callee: str | None = None
    call_id: str | None = None
    at: float | None = None
    at_text: str | None = None
    since: float | None = None
    until: float | None = None
    window: float = DEFAULT_WINDOW
    limit: int = DEFAULT_LIMIT
    top: str | None = None
    n: int = DEFAULT_TOP

    def range(self) -> tuple[float | None, float | None]:
        return time_range(self.since, self.until, self.at, self.window)


def question(params: Mapping[str, str | None], allowed: Sequence[str] = PARAMS,
             max_limit: int = MAX_LIMIT) -> Question:
    """Check every parameter of a request; empty ones count as not given. BadParameter names
    the first that is unknown or unusable. ``max_limit``: the HTTP API answers at most
    MAX_LIMIT records a request; the CLI, which exports, takes up to CLI_MAX_LIMIT."""
    for name in params:
        if name not in allowed:
            raise BadParameter(name, f"unknown parameter; expected one of {', '.join(allowed)}")
    given = {k: v.strip() for k, v in params.items() if v is not None and v.strip()}
    for name in ("caller", "callee", "call_id", "top"):
        if len(given.get(name, "")) > MAX_TEXT:
            raise BadParameter(name, f"longer than {MAX_TEXT} characters")
    top = given.get("top")
    if top is not None and top not in TOP_BY:
        raise BadParameter("top", f"{top!r}: expected one of {', '.join(TOP_BY)}")
    times = {k: parse_time(given[k], k) if k in given else None for k in ("at", "since", "until")}
    since, until = times["since"], times["until"]
    if since is not None and until is not None and until < since:
        raise BadParameter("until", "is before since")
    window = parse_number(given["window"], "window", 0, MAX_WINDOW) if "window" in given else DEFAULT_WINDOW
    return Question(given.get("caller"), given.get("callee"), given.get("call_id"), times["at"], given.get("at"),
                    since, until, window,
                    parse_count(given["limit"], "limit", max_limit) if "limit" in given else DEFAULT_LIMIT,
                    top, parse_count(given["n"], "n", MAX_TOP) if "n" in given else DEFAULT_TOP)


def parse_number(text: str, name: str, low: float, high: float) -> float:
    """A finite number from ``low`` to ``high`` (seconds); nan, inf and 1e400 are refused."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise BadParameter(name, f"{text[:40]!r}: expected a number of seconds from {low:.0f} to {high:.0f}")
    return value


def parse_count(text: str, name: str, maximum: int) -> int:
    """A whole number from 1 to ``maximum``, ASCII digits only (no sign, no exponent)."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 9 and 1 <= int(digits) <= maximum):
        raise BadParameter(name, f"{text[:40]!r}: expected a whole number from 1 to {maximum}")
    return int(digits)


def parse_time(text: str, name: str = "time") -> float:
    """ISO 8601 (``2025-08-06T14:03:00Z``, ``2025-08-06 14:03``, ``...-04:00``) or epoch
    seconds. A time without a zone is taken as UTC (say so to the user). BadParameter for
    anything else, and for times that are not finite or not between 1970 and 2100."""
    try:
        when = read_time(text)
    except QueryError:
        raise BadParameter(name, f"{text.strip()[:40]!r}: expected ISO 8601 (2025-08-06T14:03:00Z; no zone = "
                                 "UTC) or epoch seconds") from None
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        try:
            when = when.timestamp()
        except (OverflowError, ValueError):
            when = math.nan
    if not (math.isfinite(when) and 0 <= when <= MAX_TIME):
        raise BadParameter(name, f"{text.strip()[:40]!r}: expected a time from 1970-01-01T00:00:00Z to "
                                 "2100-01-01T00:00:00Z (ISO 8601 or epoch seconds)")
    return when


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
    return await read(store_url, cfg,
                      lambda db: db.find(low, high, call_id, caller_n, callee_n, limit),
                      lambda pg: pg.find(low, high, call_id, caller_n, callee_n, limit),
                      lambda rs: rs.find(low, high, call_id, caller_n, callee_n, limit), redis_client_factory)


async def read(store_url: str, cfg: TracebackConfig, sqlite: Callable[[Any], T],
               postgres: Callable[[Any], Awaitable[T]], redis: Callable[[Any], Awaitable[T]],
               redis_client_factory: Callable[[str], Any] | None = None) -> T:
    """One read from the store records go to (``cfg.store_for(store_url)``): ``sqlite(db)`` in
    a thread (QueryError when there is no file yet), ``postgres(pg)`` or ``redis(rs)`` on the
    loop, the connection closed after. A network store's failure is a QueryError naming it,
    its password left out (the message reaches the console and the HTTP API)."""
    store_url = cfg.store_for(store_url)
    if store_url == "memory":
        db = _sqlite(cfg)
        try:
            return await asyncio.to_thread(sqlite, db)
        finally:
            db.close()
    if is_url(store_url):
        pg = PostgresRecords(store_url, cfg.retention_days, writer=False)
        try:
            return await postgres(pg)
        except QueryError:
            raise
        except Exception as exc:
            raise QueryError(f"cannot read records from {redact(store_url)}: {exc}") from None
        finally:
            await pg.aclose()
    rs = _redis(store_url, redis_client_factory)
    try:
        return await redis(rs)
    except QueryError:
        raise
    except Exception as exc:
        raise QueryError(f"cannot read records from {redact(store_url)}: {exc}") from None
    finally:
        await rs.aclose()


PAGE = 2000


async def iterate(store_url: str, cfg: TracebackConfig, since: float, until: float,
                  redis_client_factory: Callable[[str], Any] | None = None) -> AsyncIterator[CallRecord]:
    """Every record of [since, until], oldest first for SQLite and PostgreSQL (keyset pages of
    PAGE records: memory stays bounded whatever the window), in Stream order for Redis."""
    store_url = cfg.store_for(store_url)
    if store_url == "memory":
        db = _sqlite(cfg)
        try:
            after: Any = None
            while True:
                page = await asyncio.to_thread(db.page, since, until, after, PAGE)
                for _, _, record in page:
                    yield record
                if len(page) < PAGE:
                    return
                after = page[-1][:2]
        finally:
            db.close()
    elif is_url(store_url):
        pg = PostgresRecords(store_url, cfg.retention_days, writer=False)
        try:
            key: Any = None
            while True:
                try:
                    rows = await pg.page(since, until, key, PAGE)
                except Exception as exc:
                    raise QueryError(f"cannot read records from {redact(store_url)}: {exc}") from None
                for _, record in rows:
                    yield record
                if len(rows) < PAGE:
                    return
                key = rows[-1][0]
        finally:
            await pg.aclose()
    else:
        rs = _redis(store_url, redis_client_factory)
        try:
            async for record in rs.scan(since, until):
                if since <= record.time <= until:
                    yield record
        except Exception as exc:
            raise QueryError(f"cannot read records from {redact(store_url)}: {exc}") from None
        finally:
            await rs.aclose()


async def top(store_url: str, cfg: TracebackConfig, by: str, since: float | None,
              until: float | None = None, n: int = 20,
              redis_client_factory: Callable[[str], Any] | None = None) -> list[tuple[str, int, int]]:
    """The heaviest sources of rejected or C-attested calls: (key, rejected, attest_c),
    heaviest first. ``by``: callers (caller number), trunks, spc (signer)."""
    if by not in TOP_BY:
        raise BadParameter("top", f"{by!r}: expected one of {', '.join(TOP_BY)}")
    return await read(store_url, cfg, lambda db: db.top(by, since, until, n), lambda pg: pg.top(by, since, until, n),
                      lambda rs: _top_stream(rs, by, since, until, n), redis_client_factory)


async def each(store_url: str, cfg: TracebackConfig, since: float, until: float, page: int = 20_000,
               redis_client_factory: Callable[[str], Any] | None = None) -> AsyncIterator[CallRecord]:
    """Every record with ``since <= time < until``, once each, holding at most ``page`` records:
    SQLite and PostgreSQL are read ``page`` at a time in time order (``find``, each page from the
    last time of the one before), a Redis Stream in one pass (``scan``). Raises QueryError when a
    single instant holds more than a page (the reader cannot page past it)."""
    store_url = cfg.store_for(store_url)
    if store_url != "memory" and not is_url(store_url):
        rs = _redis(store_url, redis_client_factory)
        try:
            async for r in rs.scan(since, until):
                if since <= r.time < until:
                    yield r
        except QueryError:
            raise
        except Exception as exc:
            raise QueryError(f"cannot read records from {redact(store_url)}: {exc}") from None
        finally:
            await rs.aclose()
        return
    low, seen_at_low = since, set[str]()        # call ids already given at time == low
    while True:
        batch = await find(store_url, cfg, since=low, until=until, limit=page)
        for r in batch:
            if r.time < until and not (r.time == low and r.call_id in seen_at_low):
                yield r
        if len(batch) < page:
            return
        last = batch[-1].time
        if last == low:
            raise QueryError(f"more than {page} records at {iso_utc(low)}: cannot page past that instant")
        seen_at_low = {r.call_id for r in batch if r.time == last}
        low = last


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
