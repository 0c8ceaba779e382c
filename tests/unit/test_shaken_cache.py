"""SingleFlight (sipguard/shaken/cache.py) on its own: the one-download-per-URL rule of x5u and CRLs."""

from __future__ import annotations

import asyncio

import pytest

from sipguard.shaken.cache import SingleFlight


class Loads:
    """A load per call, held at a gate until the test opens it."""

    def __init__(self, fail: bool = False) -> None:
        self.started = 0
        self.gate = asyncio.Event()
        self.fail = fail

    async def load(self) -> str:
        self.started += 1
        run = self.started
        await self.gate.wait()
        if self.fail:
            raise RuntimeError(f"load {run} broke")
        return f"body {run}"


async def _turns() -> None:
    """A few turns of the loop: the tasks started so far run up to their first wait."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_concurrent_callers_of_one_key_share_one_load() -> None:
    async def go() -> None:
        flights: SingleFlight[str, str] = SingleFlight()
        loads, other = Loads(), Loads()
        waiters = [asyncio.create_task(flights.join("a", loads.load)) for _ in range(100)]
        waiters.append(asyncio.create_task(flights.join("b", other.load)))
        await _turns()
        assert len(flights) == 2 and loads.started == 1 and other.started == 1
        loads.gate.set()
        other.gate.set()
        assert await asyncio.gather(*waiters) == ["body 1"] * 100 + ["body 1"]
        assert len(flights) == 0                       # the keys are free again
        loads.gate = asyncio.Event()
        later = asyncio.create_task(flights.join("a", loads.load))
        await _turns()
        assert loads.started == 2                      # a new run, not the old result
        loads.gate.set()
        assert await later == "body 2"

    asyncio.run(go())


def test_an_exception_reaches_every_waiter_and_frees_the_key() -> None:
    heard: list[tuple[str, str]] = []

    async def go() -> None:
        flights: SingleFlight[str, str] = SingleFlight(lambda key, exc: heard.append((key, str(exc))))
        loads = Loads(fail=True)
        waiters = [asyncio.create_task(flights.join("a", loads.load)) for _ in range(10)]
        await _turns()
        loads.gate.set()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert [str(r) for r in results] == ["load 1 broke"] * 10
        assert all(isinstance(r, RuntimeError) for r in results)
        assert len(flights) == 0 and loads.started == 1
        loads.fail = False
        assert await flights.join("a", loads.load) == "body 2"

    asyncio.run(go())
    assert heard == [("a", "load 1 broke")]            # once, however many waited


def test_a_load_nobody_waits_for_reports_its_exception() -> None:
    """Stale-while-revalidate starts a refresh and returns: on_error is the only one to hear."""
    heard: list[str] = []

    async def go() -> None:
        flights: SingleFlight[str, str] = SingleFlight(lambda key, exc: heard.append(key))
        loads = Loads(fail=True)
        run = flights.start("a", loads.load)
        assert flights.start("a", loads.load) is run   # still the one run
        loads.gate.set()
        await _turns()
        assert run.done() and len(flights) == 0

    asyncio.run(go())
    assert heard == ["a"]


def test_a_caller_that_gives_up_does_not_cancel_the_others_load() -> None:
    async def go() -> None:
        flights: SingleFlight[str, str] = SingleFlight()
        loads = Loads()
        quitter = asyncio.create_task(flights.join("a", loads.load))
        stayer = asyncio.create_task(flights.join("a", loads.load))
        await _turns()
        quitter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        loads.gate.set()
        assert await stayer == "body 1" and loads.started == 1

    asyncio.run(go())


def test_cancel_ends_every_run() -> None:
    async def go() -> None:
        flights: SingleFlight[str, str] = SingleFlight()
        runs = [flights.start(key, Loads().load) for key in "abc"]
        await _turns()
        flights.cancel()
        await _turns()
        assert all(run.cancelled() for run in runs) and len(flights) == 0

    asyncio.run(go())
