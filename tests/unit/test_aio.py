"""sipguard.aio.start_eagerly: a coroutine runs at once, and on in a task only if it waits."""

from __future__ import annotations

import asyncio

import pytest

from sipguard.aio import start_eagerly


def test_a_coroutine_that_never_waits_finishes_in_the_call_without_a_task() -> None:
    done: list[str] = []

    async def work() -> None:
        done.append("ran")

    async def main() -> None:
        assert start_eagerly(work()) is None
        assert done == ["ran"]  # before the caller yields to the loop

    asyncio.run(main())


def test_an_exception_before_any_wait_reaches_the_caller() -> None:
    async def work() -> None:
        raise ValueError("bad")

    async def main() -> None:
        with pytest.raises(ValueError, match="bad"):
            start_eagerly(work())

    asyncio.run(main())


def test_a_coroutine_that_waits_goes_on_in_a_task_with_results_and_errors() -> None:
    seen: list[object] = []

    async def work(ok: asyncio.Future[int], bad: asyncio.Future[int]) -> None:
        seen.append("started")
        seen.append(await ok)
        await asyncio.sleep(0)  # a bare yield
        try:
            await bad
        except KeyError as exc:
            seen.append(repr(exc))
        seen.append(await asyncio.sleep(0.001, result="slept"))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ok, bad = loop.create_future(), loop.create_future()
        task = start_eagerly(work(ok, bad))
        assert task is not None and seen == ["started"]
        loop.call_soon(ok.set_result, 7)
        loop.call_later(0.001, bad.set_exception, KeyError("k"))
        await asyncio.wait_for(task, 2)
        assert seen == ["started", 7, "KeyError('k')", "slept"]

    asyncio.run(main())


def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    seen: list[str] = []

    async def work(never: asyncio.Future[None]) -> None:
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> None:
        never = asyncio.get_running_loop().create_future()
        task = start_eagerly(work(never))
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        assert seen == ["cancelled"] and never.cancelled()

    asyncio.run(main())
