"""serve's collector pacing: young generation collected and frozen twice a second, a full
collection (unfrozen first) every ``full_every`` seconds."""

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
    yield
    gc.unfreeze()


def test_survivors_are_frozen_and_young_garbage_collected() -> None:
    pacer = GcPacer(full_every=600.0, now=0.0)
    survivor = Node()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    before = gc.get_freeze_count()
    pacer.tick(now=0.5)
    assert gone() is None  # collected by the young pass
    assert gc.get_freeze_count() > before and survivor is not None  # the survivor left the collector's sight


def test_the_full_pass_collects_cycles_that_reach_frozen_objects() -> None:
    pacer = GcPacer(full_every=10.0, now=0.0)
    old = Node()
    pacer.tick(now=0.5)  # ``old`` is frozen now
    young = Node()
    old.other, young.other = young, old  # a cycle through a frozen object
    gone = weakref.ref(young)
    del old, young
    pacer.tick(now=1.0)
    assert gone() is not None  # a young pass cannot free it: ``old`` is outside its sight
    pacer.tick(now=10.5)
    assert gone() is None  # the full pass (everything unfrozen) does
    assert gc.get_freeze_count() > 0  # and freezes the survivors again
