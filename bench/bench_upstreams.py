"""Know your upstream over PostgreSQL: ``sipguard upstreams --since 7d`` and one trunk.score
refresh over many generated records.

    .venv/bin/python bench/bench_upstreams.py [--rows 10000000] [--days 7] [--trunks 40] [--spcs 400]

Makes its own database (sg_bench_<random>) on --url's server (default 127.0.0.1:5432, user
postgres), generates --rows records on the server (generate_series) spread evenly over the
last --days days across --trunks trunks and --spcs signers with a realistic mix (60 %
unsigned, 30 % verified A/B/C, 10 % failed; caller classes mostly valid), VACUUM ANALYZE,
then times: the CLI end to end twice (``sipguard upstreams -c CONFIG --since 7d --format
jsonl``, a new process: imports, config, connection): before any roll-up exists (it groups
the records), then after rolling every hour up (what the score refresh does as each hour ends;
timed), when it sums the roll-ups and groups only the partial hours), the two aggregate queries over
the records alone (best of 3), one 1-hour trunk.score refresh, and prints the plan of the trunk
query. Drops
the database at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_records_pg import _admin  # noqa: E402
from sipguard.records import postgres, upstreams  # noqa: E402
from sipguard.records.measures import UpstreamsConfig  # noqa: E402
from sipguard.records.postgres import PostgresRecords  # noqa: E402
from sipguard.records.record import TracebackConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400


GENERATE = """
INSERT INTO sipguard_records (at, call_id, caller, callee, trunk, spc, action, attest, writer, seq, data,
                              verstat, caller_check, spc_owner, trunk_rmd, implementation)
SELECT to_timestamp($1::float8 + g * $2::float8), 'c' || g, (12025550000 + g % 5000000)::text,
       (13035550000 + g % 3000000)::text, 'trunk-' || (g % $3), v.spc,
       CASE WHEN g % 97 = 0 THEN 'reject' ELSE 'forward' END, v.attest, 'bench', g, '[3]',
       v.verstat,
       (ARRAY['valid','valid','valid','valid','valid','valid','valid','invalid','withheld','dno','unallocated'])
         [1 + (g * 7) % 11],
       CASE WHEN v.spc IS NULL THEN NULL WHEN g % 5 = 0 THEN 'other' ELSE 'own' END,
       CASE WHEN g % $3 = 3 THEN 'removed' ELSE 'listed' END,
       (ARRAY['complete','partial','none'])[1 + (g % $3) % 3]
FROM generate_series($5::bigint, $6::bigint) AS g,
LATERAL (SELECT CASE WHEN g % 10 < 6 THEN NULL ELSE 'S' || (g % $4) END AS spc,
                CASE WHEN g % 10 < 6 THEN NULL WHEN g % 10 = 9 THEN NULL
                     ELSE (ARRAY['A','B','C'])[1 + g % 3] END AS attest,
                CASE WHEN g % 10 < 6 THEN 'No-TN-Validation' WHEN g % 10 = 9 THEN 'TN-Validation-Failed'
                     ELSE 'TN-Validation-Passed' END AS verstat) AS v
"""


async def generate(url: str, rows: int, days: int, trunks: int, spcs: int, now: float) -> float:
    conn = await postgres.connect(url)
    try:
        await postgres.migrate(conn)
        start = now - days * DAY
        await postgres.ensure_partitions(conn, [postgres.day_of(start + d * DAY) for d in range(days + 2)])
        step = days * DAY / rows
        t0 = time.perf_counter()
        chunk = 1_000_000
        for low in range(0, rows, chunk):
            await conn.execute(GENERATE, start, step, trunks, spcs, low, min(rows, low + chunk) - 1, timeout=3600)
        await conn.execute("VACUUM ANALYZE sipguard_records", timeout=3600)
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def backfill(url: str, now: float, days: int) -> int:
    pg = PostgresRecords(url, 548, writer=False)
    try:
        last = (now - postgres.ROLL_GRACE) // postgres.HOUR * postgres.HOUR
        return await pg._roll(last - days * DAY - postgres.HOUR, last, 3600)
    finally:
        await pg.aclose()


async def queries(url: str, now: float, days: int) -> dict[str, float]:
    pg = PostgresRecords(url, 548, writer=False)
    out: dict[str, float] = {}
    try:
        for by in ("trunks", "spc"):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                rows = await pg.measure_rows(by, now - days * DAY, now, timeout=3600)
                best = min(best, time.perf_counter() - t0)
            out[by] = best
            out[by + "_groups"] = len(rows)
        conn = await pg._connection()
        plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) SELECT trunk, attest, coalesce(verstat, data::jsonb ->> 17),"
                                " caller_check, spc_owner, trunk_rmd, implementation, count(*), max(at)"
                                " FROM sipguard_records WHERE at >= $1 AND at <= $2 AND trunk IS NOT NULL"
                                " GROUP BY 1, 2, 3, 4, 5, 6, 7", postgres.utc(now - days * DAY), postgres.utc(now))
        print("\n".join(r[0] for r in plan[:14]))
    finally:
        await pg.aclose()
    cfg = TracebackConfig(store=url, retention_days=548)
    t0 = time.perf_counter()
    await upstreams.measures("x", cfg, now - UpstreamsConfig().score_window, now, signers=False)
    out["score_refresh_1h"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--trunks", type=int, default=40)
    ap.add_argument("--spcs", type=int, default=400)
    args = ap.parse_args()
    name = f"sg_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(f"{args.url}/postgres", f"CREATE DATABASE {name}"))
    url = f"{args.url}/{name}"
    now = time.time()
    try:
        took = asyncio.run(generate(url, args.rows, args.days, args.trunks, args.spcs, now))
        print(f"generated {args.rows} rows over {args.days} days in {took:.1f} s (incl. VACUUM ANALYZE)")
        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "sipguard.yaml"
            config.write_text(f"traceback: {{store: '{url}'}}\n")
            for what in ("no roll-ups yet (groups the records)", "roll-ups made (sums them)"):
                if what.startswith("roll-ups made"):
                    t0 = time.perf_counter()
                    hours = asyncio.run(backfill(url, now, args.days))
                    print(f"rolling up {hours} hours (what the score refresh does as each ends): "
                          f"{time.perf_counter() - t0:.1f} s")
                t0 = time.perf_counter()
                run = subprocess.run([sys.executable, "-m", "sipguard", "upstreams", "-c", str(config), "--since",
                                      f"{args.days}d", "--format", "jsonl"], capture_output=True, text=True,
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=3600)
                cli = time.perf_counter() - t0
                assert run.returncode == 0, run.stderr
                lines = run.stdout.splitlines()
                print(f"sipguard upstreams --since {args.days}d --format jsonl, {what}: {cli:.2f} s, "
                      f"{len(lines)} lines")
        for key, value in asyncio.run(queries(url, now, args.days)).items():
            print(f"  {key}: {value:.3f}" + ("" if key.endswith("groups") else " s"))
    finally:
        asyncio.run(_admin(f"{args.url}/postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


if __name__ == "__main__":
    main()
