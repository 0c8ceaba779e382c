"""``sipguard rmd import|map-ocn|show|changes``: the FCC Robocall Mitigation Database in the store.

``import`` diffs the new snapshot against the one in force: every filing whose status or
implementation changed is kept in the store's change log (RMD watch), and those of the
configured upstreams are printed. ``changes`` lists the log (``--upstreams``: only theirs);
the serving process counts them in metrics and logs the upstreams' (proxy/worker.py).

``import`` refuses (exit 1, the snapshot in force stays) a file with too many invalid rows
or with far fewer filings than the snapshot in force (``datasets.check_import``), unless
``--force``: a one-row garbage file would otherwise mark every real provider REMOVED.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from sipguard.errors import SipguardError
from sipguard.records.measures import parse_duration
from sipguard.records.query import iso_utc, parse_time
from sipguard.store.admin import (
    MEMORY_NOTE,
    add_store_args,
    report_lines,
    target_of,
    upstream_lines,
    with_store,
)
from sipguard.store.base import RmdChange, RmdRecord, Store
from sipguard.store.datasets import (
    check_import,
    parse_file,
    parse_ocn_map,
    parse_removed,
    parse_rmd,
    read_text,
    snapshot_of,
)
from sipguard.store.memory import MemoryStore
from sipguard.store.tables import upstream_changes


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("rmd", help="Robocall Mitigation Database: import, OCN map, lookup")
    sub = parser.add_subparsers(dest="rmd_command", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="import the FCC RMD CSV export (atomic snapshot swap)")
    imp.add_argument("file", metavar="FILE.csv", help="the RMD export downloaded from the FCC (CSV)")
    imp.add_argument("--removed", metavar="FILE", help="list of removed providers (RMD numbers / FRNs)")
    imp.add_argument("--snapshot", metavar="DATE", help="snapshot date (default: the file's date)")
    imp.add_argument("--force", action="store_true",
                     help="import even if many rows are invalid or far fewer filings than in force")
    add_store_args(imp)
    ocn = sub.add_parser("map-ocn", help="load the operator's SPC/OCN -> RMD/FRN map (CSV: spc,rmd,frn)")
    ocn.add_argument("file", metavar="FILE.csv", help="CSV with the columns spc,rmd,frn")
    add_store_args(ocn)
    changes = sub.add_parser("changes", help="filings whose RMD status or implementation changed at an import")
    changes.add_argument("--since", metavar="T", help="changes imported after this: a duration (30d, 24h) or a time "
                         "(ISO 8601, epoch); default: all kept")
    changes.add_argument("--upstreams", action="store_true", help="only the filings of the config's trunks")
    changes.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N changes (default 1000)")
    changes.add_argument("--format", choices=("table", "jsonl"), default="table", help="table (default) or jsonl")
    add_store_args(changes)
    show = sub.add_parser("show", help="show one provider's status by RMD number or FRN")
    show.add_argument("ident", metavar="RMD|FRN", help="an RMD number (RMD0001234) or a 10-digit FRN")
    add_store_args(show)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rmd_command == "import":
        return _import(args)
    if args.rmd_command == "map-ocn":
        return _map_ocn(args)
    if args.rmd_command == "changes":
        return _changes(args)
    return _show(args)


def _import(args: argparse.Namespace) -> int:
    target = target_of(args)
    snapshot = args.snapshot or snapshot_of(args.file)
    records, parsed = parse_file(lambda text, path: parse_rmd(text, path, snapshot), args.file)
    removed: list[RmdRecord] = []
    if args.removed:
        removed, removed_report = parse_file(parse_removed, args.removed)
        for line in report_lines(removed_report):
            print(line)
    if not records and not removed:
        raise SipguardError(f"{args.file}: no usable row; the snapshot in force is kept")

    async def work(store: Store) -> None:
        if not args.force:
            try:
                await check_import(store, parsed, records, args.file)
            except SipguardError:
                for line in report_lines(parsed):
                    print(line)
                raise
        report = await store.import_rmd(records, snapshot, removed)
        report.rows, report.skipped, report.duplicates = parsed.rows, parsed.skipped, parsed.duplicates
        report.warnings = parsed.warnings
        for line in report_lines(report) + await upstream_lines(store, target):
            print(line)
        if report.changes:
            print(f"{len(report.changes)} filing(s) changed since snapshot {report.changes[0].previous or '-'} "
                  "(sipguard rmd changes lists them)")
        for trunk, c in upstream_changes(report.changes, target.upstreams):
            print(f"  upstream trunk {trunk}: {_describe(c)}")

    if target.is_memory:
        # validate only: load into a throw-away memory store to report what the server would see
        asyncio.run(work(MemoryStore()))
        print(MEMORY_NOTE)
        return 0
    asyncio.run(with_store(target, work))
    return 0


def _map_ocn(args: argparse.Namespace) -> int:
    target = target_of(args)
    rows, report = parse_file(parse_ocn_map, args.file)
    for line in report_lines(report):
        print(line)
    if target.is_memory:
        print(MEMORY_NOTE)
        return 0

    async def work(store: Store) -> int:
        return await store.map_ocn(rows)

    print(f"OCN map in force: {asyncio.run(with_store(target, work))} SPC(s)")
    return 0


def _describe(c: RmdChange) -> str:
    return (f"{c.rmd} (FRN {c.frn or '-'}) {c.change}: {c.old_status}/{c.old_implementation or '-'} -> "
            f"{c.new_status}/{c.new_implementation or '-'} in snapshot {c.snapshot} (imported {iso_utc(c.time)})")


def _changes(args: argparse.Namespace) -> int:
    target = target_of(args)
    if not 1 <= args.limit <= 1_000_000:
        raise SipguardError(f"--limit {args.limit}: expected 1 to 1000000")
    since = None
    if args.since:
        seconds = parse_duration(args.since)
        since = time.time() - seconds if seconds is not None else parse_time(args.since, "--since")
    if target.is_memory:
        raise SipguardError("store is `memory`: the changes live in the serving process, which counts them "
                            "(sipguard_rmd_changes_total) and logs those of its upstreams; a Redis store keeps "
                            "them for this command")

    async def work(store: Store) -> list[RmdChange]:
        return await store.rmd_changes(since, args.limit)

    changes = asyncio.run(with_store(target, work))
    pairs = upstream_changes(changes, target.upstreams)
    trunk_of = {id(c): trunk for trunk, c in pairs}
    rows = pairs if args.upstreams else [(trunk_of.get(id(c)), c) for c in changes]
    for trunk, c in rows:
        if args.format == "jsonl":
            print(json.dumps({**c.to_json(), "trunk": trunk}))
        else:
            print((f"[trunk {trunk}] " if trunk else "") + _describe(c))
    if args.format == "table":
        print(f"{len(rows)} change(s)" + (" of configured upstreams" if args.upstreams else "")
              + (f" since {iso_utc(since)}" if since is not None else ""))
    return 0


def _show(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target.is_memory:
        if not target.datasets.get("rmd"):
            raise SipguardError("store is `memory` and no `datasets: rmd:` file is configured")
        async def from_file() -> dict[str, str] | None:
            memory = MemoryStore()
            path = target.datasets["rmd"]
            await memory.import_rmd(parse_rmd(read_text(path), path)[0], snapshot_of(path))
            return await memory.rmd_show(args.ident)
        found = asyncio.run(from_file())
    else:
        async def work(store: Store) -> dict[str, str] | None:
            return await store.rmd_show(args.ident)
        found = asyncio.run(with_store(target, work))
    if found is None:
        print(f"{args.ident}: absent (not in the RMD snapshot in force)")
        return 1
    print(f"{args.ident}: {found['status']}, implementation {found['implementation'] or 'unknown'}, "
          f"RMD {found['rmd'] or '-'}, FRN {found['frn'] or '-'}, snapshot {found['snapshot'] or '-'}")
    return 0
