"""Hypothesis strategies shared by the trunk score roll-up tests (SQLite, Redis, PostgreSQL):
record times around minute boundaries (the doubles next to them too), records of a few trunk
groups, some without a trunk, and windows over them."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from sipguard.records.record import CallRecord
from tests.records_fixtures import make_record

BASE = 1_700_000_040.0   # a minute boundary
MINUTE = 60.0


def around(t: float, step: float) -> st.SearchStrategy[float]:
    """t itself, the doubles next to it, ``step`` before it and half a second after it."""
    return st.sampled_from((t, math.nextafter(t, -math.inf), math.nextafter(t, math.inf), t - step, t + 0.5))


def times(step: float = 0.25) -> st.SearchStrategy[float]:
    """Record times from two minutes before BASE to eight after, minute boundaries often."""
    return st.one_of(st.floats(min_value=BASE - 2 * MINUTE, max_value=BASE + 8 * MINUTE, allow_nan=False),
                     st.integers(-2, 8).flatmap(lambda k: around(BASE + k * MINUTE, step)))


def records(step: float = 0.25, groups: bool = False) -> st.SearchStrategy[CallRecord]:
    """Records of two trunks and none; ``groups``: the signer (two SPCs and none) and its
    fields vary too."""
    extra = (st.sampled_from(("own", "other", None)), st.sampled_from(("listed", "absent", None)),
             st.sampled_from(("complete", "partial", None)), st.sampled_from(("123A", "456B", None))) if groups else \
        (st.just(None), st.just("listed"), st.just("complete"), st.just(None))
    return st.builds(
        lambda t, trunk, attest, verstat, check, owner, rmd, impl, spc: make_record(
            0, time=t, trunk=trunk, attest=attest, verstat=verstat, caller_check=check, spc_owner=owner,
            trunk_rmd=rmd, trunk_implementation=impl, spc=spc),
        times(step), st.sampled_from(("carrier-a", "carrier-b", None)), st.sampled_from(("A", "B", "C", None)),
        st.sampled_from(("TN-Validation-Passed", "TN-Validation-Failed", None)),
        st.sampled_from(("valid", "dno", None)), *extra)


def windows(step: float = 0.25) -> st.SearchStrategy[list[float]]:
    return st.tuples(times(step), times(step)).map(sorted)


def store_scenarios(step: float, max_batches: int) -> dict[str, st.SearchStrategy[object]]:
    """``@given`` arguments of a store's roll-up test: batches of records, whether the first
    is written again (a spool flushed twice), windows to ask, and the minute (from BASE, -1:
    none) the roll-ups began, the minutes before it read from the records."""
    return {"batches": st.lists(st.lists(records(step), min_size=1, max_size=10), min_size=1, max_size=max_batches),
            "again": st.booleans(), "windows": st.lists(windows(step), min_size=1, max_size=4),
            "began": st.integers(-1, 9)}
