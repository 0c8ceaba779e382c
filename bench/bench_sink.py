"""What a decided call costs after its decision, part by part: the decision line, the stored
row, the SQLite write; and what each SQLite index adds to a record in the writer thread.

    PYTHONPATH=. .venv/bin/python bench/bench_sink.py [RECORDS] [--indexes]

Records with random Call-IDs and 10,000 distinct callers and callees. ``log_decision`` runs in
an event loop (a turn every 10 lines) to a file, through the handler ``setup_logging`` installs;
``SqliteRecords.write`` takes batches of 200 into a fresh file, ``to_row`` included. Figures:
process CPU per record. ``--indexes``: the writer thread's CPU per record split into building
the parameters, the INSERTs and the COMMIT, as shipped, with ``executemany``, and without
each secondary index.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from records_fixtures import make_record  # noqa: E402

from sipguard.observe import logs  # noqa: E402
from sipguard.records import sqlite  # noqa: E402
from sipguard.records.record import CallRecord, column_text, to_row  # noqa: E402

BATCH = 200


def records(n: int) -> list[CallRecord]:
    return [make_record(i)._replace(call_id=f"{os.urandom(8).hex()}@10.0.0.1",
                                caller=str(12025550000 + (i * 7919) % 10000),
                                callee=str(13125550000 + (i * 104729) % 10000),
                                facts={"trunk_score": 0.5, "div_count": 1}, passports=("shaken:passed",),
                                reasons=("tn-validation-passed",), attest="A") for i in range(n)]


def parts(recs: list[CallRecord], tmp: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with open(f"{tmp}/decisions.log", "w") as f:
        root = logging.getLogger()
        root.handlers = []
        logs.setup_logging("info", json=True, decisions="info", stream=f)

        async def lines() -> float:
            t0 = time.process_time()
            for i, r in enumerate(recs):
                logs.log_decision(r)
                if i % 10 == 9:
                    await asyncio.sleep(0)
            for h in root.handlers:
                h.flush()
            return time.process_time() - t0

        out["log_decision"] = asyncio.run(lines())
    t0 = time.process_time()
    for r in recs:
        to_row(r)
    out["to_row"] = time.process_time() - t0
    db = sqlite.SqliteRecords(f"{tmp}/parts.db")
    db.open()
    t0 = time.process_time()
    for s in range(0, len(recs), BATCH):
        db.write([("w", s + k, r) for k, r in enumerate(recs[s:s + BATCH])])
    out["sqlite_write"] = time.process_time() - t0
    db.close()
    return {k: v / len(recs) for k, v in out.items()}



def insert_rows(conn: Any, insert: Callable[[int], str], params: list[Any], width: int, group: int) -> None:
    """``params`` (rows of ``width`` values, flat) in INSERTs of ``group`` rows, as
    SqliteRecords.write does; ``insert(n)`` gives the statement for n rows."""
    rows = len(params) // width
    for first in range(0, rows, group):
        n = min(group, rows - first)
        conn.execute(insert(n), params[first * width:(first + n) * width])


def timed_transaction(conn: Any, insert: Callable[..., object], *args: Any) -> tuple[float, float]:
    """BEGIN IMMEDIATE, ``insert(*args)``, COMMIT, as SqliteRecords.write does: this thread's
    CPU seconds in the INSERTs (the BEGIN with them) and in the COMMIT."""
    t1 = time.thread_time()
    conn.execute("BEGIN IMMEDIATE")
    insert(*args)
    t2 = time.thread_time()
    conn.execute("COMMIT")
    return t2 - t1, time.thread_time() - t2


def indexes(recs: list[CallRecord], tmp: str, drop: tuple[str, ...], many: bool) -> dict[str, float]:
    """SqliteRecords.write's steps, timed one by one in this thread."""
    db = sqlite.SqliteRecords(f"{tmp}/ix-{len(drop)}-{many}-{'-'.join(drop)}.db")
    db.open()
    conn = db._conn()
    for name in drop:
        conn.execute(f"DROP INDEX {name}")
    spent = dict.fromkeys(("encode", "insert", "commit"), 0.0)
    for start in range(0, len(recs), BATCH):
        t0 = time.thread_time()
        params: list[object] = []
        for s, r in enumerate(recs[start:start + BATCH], start):
            params += (r.time, column_text(r.call_id), column_text(r.caller), column_text(r.callee),
                       column_text(r.trunk), column_text(r.spc), r.action, r.attest, "w", s, to_row(r),
                       r.verstat, r.caller_check, r.spc_owner, r.trunk_rmd, r.trunk_implementation)
        t1 = time.thread_time()
        if many:
            rows = [params[i:i + sqlite.COLUMNS] for i in range(0, len(params), sqlite.COLUMNS)]
            inserted, committed = timed_transaction(conn, conn.executemany, sqlite._insert(1), rows)
        else:
            inserted, committed = timed_transaction(conn, insert_rows, conn, sqlite._insert, params,
                                                    sqlite.COLUMNS, sqlite.ROWS)
        spent["encode"] += t1 - t0
        spent["insert"] += inserted
        spent["commit"] += committed
    db.close()
    return {k: v / len(recs) for k, v in spent.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", nargs="?", type=int, default=20000)
    ap.add_argument("--indexes", action="store_true", help="the SQLite write's steps, per index set")
    args = ap.parse_args()
    recs = records(args.records)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.indexes:
            print("  ".join(f"{k} {v * 1e6:.2f}" for k, v in parts(recs, tmp).items()), "us per record")
            return
        variants = [("as shipped", (), False), ("executemany", (), True),
                    ("no records_time", ("records_time",), False),
                    ("no records_call_id", ("records_call_id",), False),
                    ("no records_caller, records_callee", ("records_caller", "records_callee"), False),
                    ("no secondary index", ("records_time", "records_call_id", "records_caller",
                                            "records_callee"), False)]
        for label, drop, many in variants:
            spent = indexes(recs, tmp, drop, many)
            print(f"{label:36s}", "  ".join(f"{k} {v * 1e6:5.1f}" for k, v in spent.items()),
                  f" total {sum(spent.values()) * 1e6:5.1f} us per record")


if __name__ == "__main__":
    main()
