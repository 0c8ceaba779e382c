"""``sipguard dno import FILE``: a Do-Not-Originate list (numbers, NPA, NPA-NXX, thousands blocks)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sipguard.errors import SipguardError
from sipguard.store.admin import MEMORY_NOTE, add_store_args, report_lines, target_of, with_store
from sipguard.store.base import Store
from sipguard.store.datasets import parse_dno, read_text


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("dno", help="Do-Not-Originate list")
    sub = parser.add_subparsers(dest="dno_command", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="replace the DNO list (one number/NPA/NPA-NXX/block per line, # comments)")
    imp.add_argument("file", metavar="FILE", help="the DNO list: one number, NPA, NPA-NXX or block per line")
    add_store_args(imp)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = target_of(args)
    entries, report = parse_dno(read_text(args.file), args.file)
    for line in report_lines(report):
        print(line)
    if not entries:
        raise SipguardError(f"{args.file}: no usable entry; the list in force is kept")
    if target.is_memory:
        print(MEMORY_NOTE)
        return 0

    async def work(store: Store) -> int:
        return await store.import_dno(entries)

    print(f"DNO list in force: {asyncio.run(with_store(target, work))} distinct entries")
    return 0
