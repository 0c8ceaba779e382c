"""Eager coroutines: run a coroutine at once, and hand it to a task only if it has to wait.

Most INVITE decisions never wait (memory store, no Identity, a certificate already
cached): creating a Task for them costs a Task object, a loop turn and its callbacks, about
as much as the decision itself. ``start_eagerly`` runs the coroutine to its first real
suspension in the caller; when it finishes there, no task is made. Otherwise a task
resumes it from the future it is waiting on. This is what Python 3.12's eager task
factory does; sipguard supports 3.11, which has none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` until it waits; None when it finished (its exceptions propagate here),
    else the task that carries it on. Must be called from a running event loop."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_resume(coro, waiting))


async def _resume(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Drive ``coro`` as a task would: wait for what it yielded, then send it on. A future's
    result or exception reaches the coroutine through the future itself (``await`` reads it
    on resumption); a bare ``yield`` (``asyncio.sleep(0)``) is one loop turn."""
    while True:
        if waiting is None:
            await asyncio.sleep(0)
        else:
            # what a task does with a future its coroutine yields: take it as received (the
            # future refuses a second await while it is marked as blocking)
            waiting._asyncio_future_blocking = False
            try:
                await waiting
            except asyncio.CancelledError:
                if not waiting.cancelled():  # this task was cancelled: pass it on to the coroutine
                    try:
                        waiting = coro.throw(asyncio.CancelledError())
                    except StopIteration:
                        return
                    continue
            except BaseException:  # noqa: S110 - the coroutine reads it from the future
                pass
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
