"""``sipguard db``: the PostgreSQL record store's schema and partitions.

    sipguard db migrate -c CONFIG      # schema to the latest version, partitions ahead
    sipguard db status -c CONFIG       # schema version, day partitions, what retention keeps

Migrate is what every worker also does at start, under the same advisory lock, so it is
safe beside running instances; run it by hand before a rolling upgrade to see the migration
happen once. Only for traceback.store: postgresql://...; SQLite and Redis need no
migration. Exit 0 on success, 1 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from sipguard.errors import SipguardError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("db", help="PostgreSQL record store: migrate the schema, show partitions",
                              description=__doc__.split("\n\n")[2] if __doc__ else None)
    p.add_argument("action", choices=("migrate", "status"),
                   help="migrate: schema to the latest version and partitions ahead; status: what is there")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG",
                   help="the sipguard config whose traceback.store names the database")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sipguard.config import load_config
    from sipguard.records import postgres

    config = load_config(args.config)
    url = config.traceback.store_for(config.store)
    if not postgres.is_url(url):
        raise SipguardError(f"{args.config}: traceback.store is not a postgresql:// URL: records are kept "
                            "in SQLite or Redis, which need no migration")
    try:
        return asyncio.run(_run(args.action, url, config.traceback.retention_days))
    except (OSError, RuntimeError) as exc:
        raise SipguardError(f"{postgres.redact(url)}: {exc}") from None
    except Exception as exc:  # asyncpg's errors: the server's message is the useful part
        if type(exc).__module__.startswith("asyncpg"):
            raise SipguardError(f"{postgres.redact(url)}: {exc}") from None
        raise


async def _run(action: str, url: str, retention_days: int) -> int:
    from sipguard.records import postgres

    conn = await postgres.connect(url)
    try:
        if action == "migrate":
            done = await postgres.migrate(conn)
            today = postgres.day_of(time.time())
            created = await postgres.ensure_partitions(
                conn, [today + postgres.datetime.timedelta(days=n) for n in range(postgres.AHEAD + 1)])
            if done.before == done.after:
                print(f"schema at version {done.after}: nothing to migrate")
            else:
                print(f"schema migrated from version {done.before} to {done.after}")
            for name in created:
                print(f"partition {name} created")
            return 0
        version = await postgres.schema_version(conn)
        print(f"schema version {version} (this sipguard: {postgres.LATEST})")
        if version:
            days = sorted(await postgres.partitions(conn))
            print(f"{len(days)} day partitions" + (f": {days[0]} .. {days[-1]}" if days else ""))
            keep = postgres.keep_from(time.time(), retention_days)
            print(f"retention {retention_days} days: partitions before {keep} are dropped")
        return 0
    finally:
        await conn.close()
