"""The auto-pipeline (store/batch.py) on a fake connection pool: the commands of one loop turn
share one write, every caller gets its own reply in order, and a batch goes out one loop turn
after its first command (under overload a turn is a round of datagrams, and a lookup that
takes one turn more is one that times out sooner: bench/RESULTS.md, "Session 10")."""

from __future__ import annotations

import asyncio
from typing import Any

from sipguard.store.batch import Autopipe


class FakeConnection:
    def __init__(self, sent: list[list[bytes]]) -> None:
        self.sent = sent
        self.replies: list[bytes] = []
        self.released = 0

    async def send_packed_command(self, commands: list[bytes], check_health: bool = True) -> None:
        self.sent.append(list(commands))
        self.replies.extend(b"re:" + c for c in commands)

    async def read_response(self) -> bytes:
        await asyncio.sleep(0)          # the reply comes later, as from a socket
        return self.replies.pop(0)

    async def disconnect(self, nowait: bool = False) -> None:
        pass


class FakePool:
    """A connection per batch in flight, as redis-py's pool gives."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []
        self.made: list[FakeConnection] = []

    async def get_connection(self) -> Any:
        self.made.append(FakeConnection(self.sent))
        return self.made[-1]

    async def release(self, conn: Any) -> None:
        conn.released += 1


def test_the_commands_of_one_turn_share_one_batch_and_each_gets_its_reply() -> None:
    async def main() -> tuple[list[Any], FakePool, Autopipe]:
        pool = FakePool()
        pipe = Autopipe(pool)
        replies = await asyncio.gather(*(pipe.submit(b"c%d" % i) for i in range(5)))
        return replies, pool, pipe

    replies, pool, pipe = asyncio.run(main())
    assert replies == [b"re:c%d" % i for i in range(5)]
    assert pool.sent == [[b"c%d" % i for i in range(5)]] and pipe.batches == 1
    assert [c.released for c in pool.made] == [1]


def test_a_full_batch_goes_at_once_and_the_rest_in_another() -> None:
    async def main() -> tuple[list[Any], FakePool]:
        pool = FakePool()
        pipe = Autopipe(pool, max_batch=4)
        futures = [pipe.submit(b"c%d" % i) for i in range(10)]
        return list(await asyncio.gather(*futures)), pool

    replies, pool = asyncio.run(main())
    assert replies == [b"re:c%d" % i for i in range(10)]
    assert sorted(len(batch) for batch in pool.sent) == [2, 4, 4]    # each batch on a connection of its own
    assert sorted(c for batch in pool.sent for c in batch) == sorted(b"c%d" % i for i in range(10))


def test_a_batch_is_written_one_loop_turn_after_its_first_command() -> None:
    """A call_soon to a flush that then made the batch's task took two turns; the task made
    at the first command takes one."""
    async def main() -> list[list[bytes]]:
        pool = FakePool()
        pipe = Autopipe(pool)
        reply = pipe.submit(b"c0")
        await asyncio.sleep(0)           # one loop turn
        sent = list(pool.sent)
        await reply
        return sent

    assert asyncio.run(main()) == [[b"c0"]]
