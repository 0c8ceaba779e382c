"""``sipguard list add|remove|show``: the operator's allow and block lists.

Kinds: ``number`` (caller, E.164), ``prefix`` (caller prefix), ``trunk`` (trunk id), ``spc``
(signer SPC). A block entry wins over any allow entry. Changes reach every instance on the
next call (they read the same Redis). With ``store: memory`` edit the file named in
``datasets: lists:`` instead; ``show`` then reads that file.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sipguard.errors import SipguardError
from sipguard.store.admin import add_store_args, target_of, with_store
from sipguard.store.base import LIST_KINDS, ListEntry, Store
from sipguard.store.datasets import parse_lists, read_text


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("list", help="operator allow/block lists")
    sub = parser.add_subparsers(dest="list_command", metavar="ACTION", required=True)
    for name, text in (("add", "add or change an entry"), ("remove", "remove an entry")):
        p = sub.add_parser(name, help=text)
        p.add_argument("kind", choices=LIST_KINDS, help="what the entry matches: a number, a number prefix, a trunk id or an SPC")
        p.add_argument("value", help="the number, prefix, trunk id or SPC")
        if name == "add":
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--allow", dest="list_name", action="store_const", const="allow",
                               help="put it on the allow list")
            which.add_argument("--block", dest="list_name", action="store_const", const="block",
                               help="put it on the block list")
            p.add_argument("--note", help="free text kept with the entry (who, why, ticket)")
        add_store_args(p)
    show = sub.add_parser("show", help="show the entries (optionally of one kind)")
    show.add_argument("kind", nargs="?", choices=LIST_KINDS, help="only entries of this kind")
    add_store_args(show)
    parser.set_defaults(func=run)


def _line(e: ListEntry) -> str:
    return f"{e.list_name:5} {e.kind:6} {e.value}" + (f"  # {e.note}" if e.note else "")


def run(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target.is_memory:
        path = target.datasets.get("lists")
        if args.list_command != "show" or not path:
            raise SipguardError("store is `memory`: lists live in the serving process; edit the file named "
                                "in `datasets: lists:` (lines like `block number +12025550123`), "
                                "it is reloaded when it changes")
        entries = [e for e in parse_lists(read_text(path), path) if args.kind in (None, e.kind)]
        for e in entries:
            print(_line(e))
        return 0

    async def work(store: Store) -> int:
        if args.list_command == "add":
            await store.list_add(args.kind, args.list_name, args.value, args.note)
            print(f"{args.list_name} {args.kind} {args.value}: added")
            return 0
        if args.list_command == "remove":
            if await store.list_remove(args.kind, args.value):
                print(f"{args.kind} {args.value}: removed")
                return 0
            print(f"{args.kind} {args.value}: not on any list")
            return 1
        for e in await store.list_show(args.kind):
            print(_line(e))
        return 0

    return asyncio.run(with_store(target, work))
