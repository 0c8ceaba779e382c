"""``sipguard dno import FILE``: a Do-Not-Originate list (numbers, NPA, NPA-NXX, thousands blocks).

Refused (exit 1, the list in force stays) when too many lines are invalid or the list
shrinks sharply against the one in force (``datasets.check_import``), unless ``--force``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sipguard.errors import SipguardError
from sipguard.store.admin import MEMORY_NOTE, add_store_args, report_lines, target_of, with_store
from sipguard.store.base import Store
from sipguard.store.datasets import check_import, parse_dno, parse_file
from sipguard.store.memory import MemoryStore


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dno", help="Do-Not-Originate list")
    sub = parser.add_subparsers(dest="dno_command", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="replace the DNO list (one number/NPA/NPA-NXX/block per line, # comments)")
    imp.add_argument("file", metavar="FILE", help="the DNO list: one number, NPA, NPA-NXX or block per line")
    imp.add_argument("--force", action="store_true",
                     help="import even if many lines are invalid or the list shrinks by more than 20%%")
    add_store_args(imp)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = target_of(args)
    entries, report = parse_file(parse_dno, args.file)
    for line in report_lines(report):
        print(line)
    if not entries:
        raise SipguardError(f"{args.file}: no usable entry; the list in force is kept")
    if target.is_memory:
        if not args.force:      # nothing in force to compare with: the share of invalid lines only
            asyncio.run(check_import(MemoryStore(), report, entries, args.file))
        print(MEMORY_NOTE)
        return 0

    async def work(store: Store) -> int:
        if not args.force:
            await check_import(store, report, entries, args.file)
        return await store.import_dno(entries)

    print(f"DNO list in force: {asyncio.run(with_store(target, work))} distinct entries")
    return 0
