"""serve's collector pacing: the young generation collected and frozen on every tick, a full
collection (unfrozen first) only once the frozen set has stayed past its bound for ``hold``
seconds. Time is an input (``tick(now)``)."""

from __future__ import annotations

import gc
import weakref

import pytest

from sipguard.proxy.gcpacing import GcPacer


class Node:
    def __init__(self) -> None:
        self.other: object = None


@pytest.fixture(autouse=True)
def restore_gc() -> object:
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def _cycle_through_frozen(pacer: GcPacer, now: float = 0.0) -> weakref.ref[Node]:
    """A cycle through an object a tick froze, garbage at once: only a full pass frees it."""
    old = Node()
    assert pacer.tick(now) is False   # ``old`` is frozen now
    young = Node()
    old.other, young.other = young, old
    gone = weakref.ref(young)
    del old, young
    return gone


def test_survivors_are_frozen_and_young_garbage_collected() -> None:
    pacer = GcPacer()
    survivor = Node()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    before = gc.get_freeze_count()
    assert pacer.tick(0.0) is False
    assert gone() is None  # collected by the young pass
    assert gc.get_freeze_count() > before and survivor is not None  # the survivor left the collector's sight


def test_no_full_pass_while_the_frozen_set_stays_within_its_bound() -> None:
    pacer = GcPacer(growth=0.5, slack=1_000_000, hold=1.0)
    gone = _cycle_through_frozen(pacer)
    for second in range(1, 6):
        assert pacer.tick(float(second)) is False
    assert gone() is not None   # kept: frozen, and no full pass (that is the trade, bounded)
    assert pacer.full_passes == 0


def test_a_full_pass_once_the_frozen_set_stayed_past_its_bound() -> None:
    pacer = GcPacer(growth=0.0, slack=500, hold=60.0)
    gone = _cycle_through_frozen(pacer)   # the first tick took the base
    first = pacer.base
    assert first is not None
    keep = [Node() for _ in range(1000)]  # the live heap grows by more than the slack
    assert pacer.tick(0.5) is False       # young pass: they are frozen now ...
    assert pacer.tick(1.0) is False       # ... past the bound from here on, not yet for long
    assert pacer.tick(60.5) is False
    assert gone() is not None
    assert pacer.tick(61.0) is True       # 60 s past it: a full pass
    assert gone() is None
    assert pacer.full_passes == 1
    assert gc.get_freeze_count() >= len(keep)   # the survivors frozen again ...
    assert pacer.base is not None and pacer.base >= first + 900   # ... are the new base
    assert pacer.tick(200.0) is False           # no growth since: young passes again


def test_a_burst_that_leaves_before_the_hold_gets_no_full_pass() -> None:
    pacer = GcPacer(growth=0.0, slack=500, hold=60.0)
    gone = _cycle_through_frozen(pacer)
    burst = [Node() for _ in range(1000)]
    assert pacer.tick(1.0) is False   # frozen: past the bound
    assert pacer.tick(30.0) is False
    del burst                          # its transactions end: back under the bound
    assert pacer.tick(31.0) is False
    assert pacer.above is None
    burst = [Node() for _ in range(1000)]
    assert pacer.tick(70.0) is False   # past it again: the hold starts again
    assert pacer.tick(100.0) is False
    assert gone() is not None and pacer.full_passes == 0
    assert burst


def test_the_bound_grows_with_the_live_heap() -> None:
    """A base of B frozen objects allows B * (1 + growth) + slack before a full pass."""
    pacer = GcPacer(growth=1.0, slack=0, hold=0.0)
    assert pacer.tick(0.0) is False
    base = pacer.base
    assert base is not None and base > 0
    keep = [Node() for _ in range(base // 2)]   # half the base more: within the bound
    assert pacer.tick(1.0) is False
    assert pacer.tick(2.0) is False
    more = [Node() for _ in range(base)]        # past twice the base
    pacer.tick(3.0)
    assert pacer.tick(4.0) is True
    assert keep and more
