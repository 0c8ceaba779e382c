"""No traceback record lost with PostgreSQL (issue 19 and issue 7's guarantee): two writers
(two workers sharing one spool folder) carry traffic into a private PostgreSQL cluster that
crashes mid-traffic (``pg_ctl -m immediate``) and comes back; then it crashes again and the
workers stop (SIGTERM: ``aclose``) while it is down, and new workers start once it is back.
Every record submitted is in the table exactly once."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sipguard.records import postgres
from sipguard.records.record import TracebackConfig
from sipguard.records.writer import RecordWriter, open_records
from tests import pg_fixtures
from tests.pg_fixtures import PgCluster
from tests.records_fixtures import make_record

pytestmark = pytest.mark.integration
pg_cluster = pg_fixtures.pg_cluster      # the fixture: a cluster this test may crash


async def _traffic(writers: list[RecordWriter], sent: list[str], rounds: int, tag: str) -> None:
    """``rounds`` small bursts on every writer, about 100 records/s each, as calls come."""
    for n in range(rounds):
        for w, writer in enumerate(writers):
            for k in range(5):
                call_id = f"{tag}-{w}-{n}-{k}"
                writer.submit(make_record(0, time=time.time(), call_id=call_id))
                sent.append(call_id)
        await asyncio.sleep(0.05)


async def _rows(url: str) -> list[Any]:
    conn = await postgres.connect(url)
    try:
        return list(await conn.fetch(f"SELECT call_id, writer, seq FROM {postgres.TABLE}"))
    finally:
        await conn.close()


def test_crash_mid_traffic_and_sigterm_while_down_lose_and_duplicate_nothing(
        pg_cluster: PgCluster, tmp_path: Path) -> None:
    url = pg_fixtures.create_database(pg_cluster.admin_url)
    cfg = TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"), batch=20, store=url)
    sent: list[str] = []

    async def scenario() -> list[RecordWriter]:
        first = [open_records("memory", cfg) for _ in range(2)]
        for writer in first:
            await writer.start()
        await _traffic(first, sent, 20, "up")
        await asyncio.to_thread(pg_cluster.stop)              # crash mid-traffic
        await _traffic(first, sent, 20, "down")
        await asyncio.to_thread(pg_cluster.start)
        await _traffic(first, sent, 40, "back")                 # the spool flushes (RETRY) meanwhile
        await asyncio.to_thread(pg_cluster.stop)
        await _traffic(first, sent, 10, "down2")
        for writer in first:                                    # SIGTERM while the database is down
            await writer.aclose()
        await asyncio.to_thread(pg_cluster.start)
        second = [open_records("memory", cfg) for _ in range(2)]   # the next start takes the spool over
        for writer in second:
            await writer.start()
        await _traffic(second, sent, 5, "after")
        for writer in second:
            await writer.aclose()
        return first + second

    writers = asyncio.run(scenario())
    rows = asyncio.run(_rows(url))
    assert sum(w.counters.spooled for w in writers[:2]) > 0          # the outages were felt
    assert sorted(r["call_id"] for r in rows) == sorted(sent)    # every record, exactly once
    assert len({(r["writer"], r["seq"]) for r in rows}) == len(rows)
    assert [name for name in os.listdir(cfg.spool) if name.endswith(".jsonl")] == []
