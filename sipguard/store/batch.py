"""Auto-pipelining for the hot path: the lookups of one event-loop turn share one write.

Each call still costs exactly one EVALSHA and one round trip; what is shared is the socket
write and the connection. Under load this divides the client's CPU per lookup (one syscall
and one pool checkout per batch instead of per call), which is where a single sipguard
process spends its store time (the Lua itself costs Redis ~60 µs).

A caller that gives up (its own timeout) simply stops waiting: the batch still reads every
reply, so the connection stays in step. A batch that cannot finish within ``read_timeout``
(Redis hung, connection lost) disconnects and fails every call still waiting in it.
Standalone and Sentinel only; Cluster routes by slot through redis-py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError


class Autopipe:
    __slots__ = ("_pool", "_pending", "_scheduled", "_tasks", "read_timeout", "max_batch", "batches", "answered_at")

    def __init__(self, pool: Any, read_timeout: float = 1.0, max_batch: int = 512) -> None:
        self._pool = pool
        self._pending: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.read_timeout = read_timeout
        self.max_batch = max_batch
        self.batches = 0
        self.answered_at = float("-inf")   # loop time of the last reply read: is Redis answering?

    def submit(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; the future gets its reply (or the ResponseError)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((packed, fut))
        if len(self._pending) >= self.max_batch:
            batch, self._pending = self._pending, []   # (a task scheduled takes what comes after)
            self._start(loop, batch)
        elif not self._scheduled:
            # the batch's task now: its first step, one loop turn later, takes every command
            # queued meanwhile and sends them. (A call_soon to a flush that then made the task
            # cost one more turn, and under overload a turn is a whole round of datagrams.)
            self._scheduled = True
            self._start(loop, None)
        return fut

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[bytes, asyncio.Future[Any]]] | None) -> None:
        task = loop.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[bytes, asyncio.Future[Any]]] | None) -> None:
        if batch is None:   # the commands queued since this task was made
            self._scheduled = False
            batch, self._pending = self._pending, []
            if not batch:
                return
        self.batches += 1
        loop = asyncio.get_running_loop()
        conn = None
        try:
            async with asyncio.timeout(self.read_timeout):
                conn = await self._pool.get_connection()
                await conn.send_packed_command([packed for packed, _ in batch], check_health=False)
                for _, fut in batch:
                    try:
                        reply = await conn.read_response()
                    except ResponseError as exc:      # this command's error reply; the rest follow
                        reply = exc
                    self.answered_at = loop.time()
                    if not fut.done():
                        fut.set_result(reply)
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear about it
            if conn is not None:
                await conn.disconnect(nowait=True)
            error = exc if isinstance(exc, Exception) else RedisConnectionError("store batch cancelled")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(error)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if conn is not None:
                await self._pool.release(conn)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
