"""serve's collector pacing: the young generation collected and frozen on every tick, a full
collection (unfrozen first) only once the worker's memory has stayed past its bound for
``hold`` seconds. Time and memory are inputs (``tick(now)``, ``memory``)."""

from __future__ import annotations

import gc
import weakref

import pytest

from sipguard.proxy.gcpacing import GcPacer

MB = 1 << 20


class Node:
    def __init__(self) -> None:
        self.other: object = None


class Memory:
    """What the pacer reads as the worker's resident bytes."""

    def __init__(self, used: int) -> None:
        self.used = used

    def __call__(self) -> int:
        return self.used


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
    pacer = GcPacer(memory=Memory(50 * MB))
    survivor = Node()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    before = gc.get_freeze_count()
    assert pacer.tick(0.0) is False
    assert gone() is None  # collected by the young pass
    assert gc.get_freeze_count() > before and survivor is not None  # the survivor left the collector's sight


def test_no_full_pass_while_the_memory_stays_within_its_bound() -> None:
    memory = Memory(50 * MB)
    pacer = GcPacer(growth=0.5, slack=64 * MB, hold=1.0, memory=memory)
    gone = _cycle_through_frozen(pacer)
    memory.used = 50 * MB + 25 * MB + 64 * MB   # exactly the bound: within it
    for second in range(1, 6):
        assert pacer.tick(float(second)) is False
    assert gone() is not None   # kept: frozen, and no full pass (that is the trade, bounded)
    assert pacer.counters.full_passes == 0 and pacer.above is None


def test_a_full_pass_once_the_memory_stayed_past_its_bound() -> None:
    memory = Memory(50 * MB)
    pacer = GcPacer(growth=0.5, slack=64 * MB, hold=60.0, memory=memory)
    gone = _cycle_through_frozen(pacer)   # the first tick took the base
    assert pacer.base == 50 * MB
    memory.used = 140 * MB                # past 50 * 1.5 + 64
    assert pacer.tick(1.0) is False       # past the bound from here on, not yet for long
    assert pacer.tick(60.5) is False
    assert gone() is not None
    assert pacer.tick(61.0) is True       # 60 s past it: a full pass
    assert gone() is None
    assert pacer.counters.full_passes == 1 and pacer.above is None
    assert pacer.base == 140 * MB         # what it left, the new base: the bound is 274 MB now
    memory.used = 270 * MB
    assert pacer.tick(200.0) is False and pacer.tick(400.0) is False


def test_a_burst_that_leaves_before_the_hold_gets_no_full_pass() -> None:
    memory = Memory(50 * MB)
    pacer = GcPacer(growth=0.5, slack=64 * MB, hold=60.0, memory=memory)
    gone = _cycle_through_frozen(pacer)
    memory.used = 300 * MB                # a burst
    assert pacer.tick(1.0) is False
    assert pacer.tick(30.0) is False
    memory.used = 60 * MB                 # its transactions end: back under the bound
    assert pacer.tick(31.0) is False
    assert pacer.above is None
    memory.used = 300 * MB                # past it again: the hold starts again
    assert pacer.tick(70.0) is False
    assert pacer.tick(100.0) is False
    assert gone() is not None and pacer.counters.full_passes == 0


def test_memory_unknown_means_no_full_pass() -> None:
    pacer = GcPacer(hold=0.0, memory=Memory(0))
    for second in range(5):
        assert pacer.tick(float(second)) is False
    assert pacer.counters.full_passes == 0



def test_full_passes_reach_the_metrics() -> None:
    """The worker's export reads ``counters``: each full pass, and the seconds it took."""
    from prometheus_client.parser import text_string_to_metric_families

    from sipguard.observe.metrics import Metrics

    def exported() -> tuple[float, float]:
        got = {s.name: s.value for f in text_string_to_metric_families(m.render()[0].decode()) for s in f.samples}
        return got["sipguard_gc_full_passes_total"], got["sipguard_gc_full_pass_seconds_total"]

    m, memory = Metrics(), Memory(50 * MB)
    pacer = GcPacer(growth=0.5, slack=64 * MB, hold=10.0, memory=memory)
    assert pacer.tick(0.0) is False
    m.export(pacer=pacer)
    assert exported() == (0.0, 0.0)
    memory.used = 200 * MB
    assert pacer.tick(1.0) is False and pacer.tick(11.0) is True
    m.export(pacer=pacer)
    passes, seconds = exported()
    assert passes == 1 and seconds == pacer.counters.full_pass_seconds > 0
    memory.used = 500 * MB
    assert pacer.tick(12.0) is False and pacer.tick(22.0) is True and pacer.tick(23.0) is False
    m.export(pacer=pacer)
    assert exported() == (2, pytest.approx(pacer.counters.full_pass_seconds))
    assert pacer.counters.full_pass_seconds > seconds
