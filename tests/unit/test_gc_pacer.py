"""serve's collector pacing: the young generation collected and frozen on every tick, a full
collection (unfrozen first) only once the frozen set has grown past its bound."""

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


def _cycle_through_frozen(pacer: GcPacer) -> weakref.ref[Node]:
    """A cycle through an object a tick froze, garbage at once: only a full pass frees it."""
    old = Node()
    assert pacer.tick() is False   # ``old`` is frozen now
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
    assert pacer.tick() is False
    assert gone() is None  # collected by the young pass
    assert gc.get_freeze_count() > before and survivor is not None  # the survivor left the collector's sight


def test_no_full_pass_while_the_frozen_set_stays_within_its_bound() -> None:
    pacer = GcPacer(growth=0.5, slack=1_000_000)
    gone = _cycle_through_frozen(pacer)
    for _ in range(5):
        assert pacer.tick() is False
    assert gone() is not None   # kept: frozen, and no full pass (that is the trade, bounded)
    assert pacer.full_passes == 0


def test_a_full_pass_once_the_frozen_set_grew_past_its_bound() -> None:
    pacer = GcPacer(growth=0.0, slack=500)
    gone = _cycle_through_frozen(pacer)   # the first tick took the base
    first = pacer.base
    assert first is not None
    keep = [Node() for _ in range(1000)]  # the live heap grows by more than the slack
    assert pacer.tick() is False          # young pass: they are frozen now ...
    assert gone() is not None
    assert pacer.tick() is True           # ... and the next tick sees the growth: a full pass
    assert gone() is None
    assert pacer.full_passes == 1
    assert gc.get_freeze_count() >= len(keep)   # the survivors frozen again ...
    assert pacer.base is not None and pacer.base >= first + 900   # ... are the new base
    assert pacer.tick() is False                # no growth since: young passes again


def test_the_bound_grows_with_the_live_heap() -> None:
    """A base of B frozen objects allows B * (1 + growth) + slack before a full pass."""
    pacer = GcPacer(growth=1.0, slack=0)
    assert pacer.tick() is False
    base = pacer.base
    assert base is not None and base > 0
    keep = [Node() for _ in range(base // 2)]   # half the base more: within the bound
    assert pacer.tick() is False
    assert pacer.tick() is False
    more = [Node() for _ in range(base)]        # past twice the base
    pacer.tick()
    assert pacer.tick() is True
    assert keep and more
