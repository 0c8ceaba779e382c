"""RMD watch: each import diffs against the last; the changes are kept, matched to the
configured upstreams, counted in metrics and logged by the serving process."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from sipguard.observe.metrics import Metrics
from sipguard.store.base import RmdChange, RmdRecord
from sipguard.store.datasets import parse_removed, parse_rmd, read_text
from sipguard.store.memory import MemoryStore
from sipguard.store.tables import build_rmd, upstream_changes

DATA = Path(__file__).resolve().parents[1] / "data" / "rmd"


def rec(rmd: str, frn: str, impl: str = "complete") -> RmdRecord:
    return RmdRecord(rmd, (frn,), implementation=impl)


def test_changes_between_two_snapshots_of_the_fixture() -> None:
    first, _ = parse_rmd(read_text(str(DATA / "messy.csv")))
    second, _ = parse_rmd(read_text(str(DATA / "next.csv")))
    removed, _ = parse_removed(read_text(str(DATA / "removed.txt")))
    ids, frns, report = build_rmd(first, [], {}, {}, "2025-06-01", now=1.0)
    assert report.changes == []                         # a first import: everything is new, nothing changed
    _, _, report = build_rmd(second, removed, ids, frns, "2025-07-01", "2025-06-01", now=2.0)
    kinds = sorted(c.change for c in report.changes)
    assert kinds.count("removed") == report.removed == 4
    assert kinds.count("added") == report.added == 1 and kinds.count("implementation") == report.changed == 1
    assert all(c.snapshot == "2025-07-01" and c.previous == "2025-06-01" and c.time == 2.0 for c in report.changes)
    impl = next(c for c in report.changes if c.change == "implementation")
    assert impl.old_status == impl.new_status == "listed" and impl.old_implementation != impl.new_implementation


def test_relisted_and_implementation_changes_carry_old_and_new() -> None:
    ids, frns, _ = build_rmd([rec("RMD0000001", "0012345678"), rec("RMD0000002", "0023456789")], [], {}, {}, "a")
    ids, frns, report = build_rmd([rec("RMD0000001", "0012345678", "partial")], [], ids, frns, "b", "a", now=5.0)
    assert [(c.rmd, c.change, c.old_implementation, c.new_implementation) for c in report.changes] == [
        ("RMD0000001", "implementation", "complete", "partial"), ("RMD0000002", "removed", "complete", "complete")]
    _, _, report = build_rmd([rec("RMD0000001", "0012345678", "partial"), rec("RMD0000002", "0023456789")], [],
                             ids, frns, "c", "b")
    assert [(c.rmd, c.change, c.old_status, c.new_status) for c in report.changes] == [
        ("RMD0000002", "relisted", "removed", "listed")]


def test_memory_store_keeps_the_changes_and_answers_since() -> None:
    async def scenario() -> tuple[list[RmdChange], list[RmdChange]]:
        store = MemoryStore()
        await store.import_rmd([rec("RMD0000001", "0012345678")], "a")
        await store.import_rmd([rec("RMD0000001", "0012345678", "none")], "b")
        everything = await store.rmd_changes()
        later = await store.rmd_changes(everything[-1].time)
        return everything, later
    everything, later = asyncio.run(scenario())
    assert [(c.change, c.previous, c.snapshot) for c in everything] == [("implementation", "a", "b")]
    assert later == []


def test_changes_are_matched_to_upstreams_by_rmd_number_or_frn() -> None:
    c1 = RmdChange(1.0, "b", "a", "RMD0000001", "0012345678", "removed", "listed", "removed", "complete", "complete")
    c2 = RmdChange(1.0, "b", "a", "RMD0000002", "0023456789", "added", "absent", "listed", "", "partial")
    ups = [("carrier-a", "rmd0000001", None), ("carrier-b", None, "23456789"), ("carrier-c", None, None)]
    assert upstream_changes([c1, c2], ups) == [("carrier-a", c1), ("carrier-b", c2)]
    assert RmdChange.from_json(c1.to_json()) == c1
    with pytest.raises(ValueError, match="RMD change"):
        RmdChange.from_json({"time": "x"})


def test_the_serving_process_counts_and_logs_upstream_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Worker 0's watch reads the store's change log: a reload of the datasets file that removes
    carrier-a's filing is counted in metrics and logged as a warning naming the trunk."""
    from sipguard.clock import ManualClock
    from sipguard.pipeline import Pipeline
    from sipguard.proxy.worker import Worker
    from tests.unit.test_pipeline import NOW, make_config

    config = make_config(tmp_path)

    async def scenario() -> float:
        worker = Worker(config)
        worker.pipeline = await Pipeline.create(config, ManualClock(NOW))
        worker.metrics = Metrics()
        task = asyncio.get_running_loop().create_task(worker._watch_rmd(interval=0.02))
        await asyncio.sleep(0.05)
        store = worker.pipeline.store
        await store.import_rmd([rec("RMD0000001", "0099999999")], "next")   # carrier-a's RMD0001234 is gone
        counter = worker.metrics.m["sipguard_rmd_upstream_changes"]
        for _ in range(500):
            value = counter.labels("carrier-a", "removed")._value.get()
            if value:
                break
            await asyncio.sleep(0.01)
        worker.stopping.set()
        await task
        await worker.pipeline.aclose()
        return float(value)

    with caplog.at_level(logging.WARNING, logger="sipguard.serve"):
        assert asyncio.run(scenario()) == 1.0
    assert any("upstream trunk carrier-a" in r.getMessage() and "removed" in r.getMessage() for r in caplog.records)
