"""Overload by the records (issue "Hold the edge", item 3), with real sockets and a real SQLite
file: a worker whose record writer falls behind sheds new INVITEs with 503 + Retry-After once
``traceback.queue`` records wait, instead of growing its memory by a record a call; when the
writer catches up, calls are taken again, and every call answered 200 has exactly one record.

The writer is held back the way a starved or slow disk would: another connection holds the
SQLite file's write lock (``BEGIN IMMEDIATE``), so the writer's batch waits on it (its busy
timeout is 10 s) and the records behind it stay in the queue. No timing assertions: each
effect awaited with a generous bound, the lock let go well within the busy timeout."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest
from conftest import base_config
from sipclient import MiniUas, UdpClient, free_port

from tests.integration.test_overload_redis import metric, wait_for

pytestmark = pytest.mark.integration
QUEUE = 4          # traceback.queue (batch 1: four batches are no more): records waiting past it shed


def test_records_the_writer_cannot_keep_up_with_shed_new_invites_and_none_is_lost(sipguard: Any) -> None:
    uas = MiniUas()
    http = free_port()
    sg = sipguard(base_config(uas.port, traceback={"path": "var/traceback.db", "queue": QUEUE, "batch": 1},
                              http={"listen": f"127.0.0.1:{http}"}, log={"level": "info", "decisions": "off"}))
    client = UdpClient()
    db_path = sg.workdir / "var" / "traceback.db"
    ok: list[str] = []
    try:
        answered, _ = client.call(sg.addr, call_id="before")   # the file exists, the writer is idle
        assert answered is not None and answered.status == 200, sg.logs()
        ok.append("before")
        assert wait_for(lambda: count(db_path) == 1), sg.logs()[-3000:]
        lock = sqlite3.connect(db_path, timeout=5.0, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")                        # the writer's next batch waits on this
        locked = True
        try:
            shed = None
            end = time.monotonic() + 8.0                       # within the writer's 10 s busy timeout
            while shed is None and time.monotonic() < end:
                call_id = f"held-{len(ok)}"
                final, _ = client.call(sg.addr, call_id=call_id)
                assert final is not None, sg.logs()[-3000:]
                if final.status == 503:
                    shed = final
                else:
                    assert final.status == 200, final
                    ok.append(call_id)
            assert shed is not None, (ok, sg.logs()[-3000:])
            # answered by the overload guard, from the INVITE's lines: no call, no record
            assert shed.header("Retry-After") == "5" and "tag=sgx" in (shed.header("To") or "")
            # the records let in before it: at least the queue's worth waited
            assert len(ok) - 1 >= QUEUE
            lock.execute("ROLLBACK")
            locked = False
        finally:
            if locked:
                lock.execute("ROLLBACK")
            lock.close()
        # written: the shedding ends and new calls are taken again (a few may still be shed
        # while the share falls), and every call answered 200 has exactly one record
        def taken() -> bool:
            call_id = f"after-{len(ok)}"
            final, _ = client.call(sg.addr, call_id=call_id)
            if final is not None and final.status == 200:
                ok.append(call_id)
                return True
            return False

        assert wait_for(taken), sg.logs()[-3000:]
        assert wait_for(lambda: count(db_path) == len(ok)), (count(db_path), len(ok), sg.logs()[-3000:])
        assert sorted(call_ids(db_path)) == sorted(ok)
        # counted (the counters are exported every 0.5 s)
        assert wait_for(lambda: metric(http, "sipguard_sip_events_total", 'event="shed_503"') >= 1)
    finally:
        client.close()
        uas.close()


def count(path: Any) -> int:
    with sqlite3.connect(path, timeout=5.0) as db:
        return int(db.execute("SELECT COUNT(*) FROM records").fetchone()[0])


def call_ids(path: Any) -> list[str]:
    with sqlite3.connect(path, timeout=5.0) as db:
        return [row[0] for row in db.execute("SELECT call_id FROM records")]
