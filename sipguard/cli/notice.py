"""``sipguard notice add|remove|list``: block rules from Commission notices (FCC orders).

A notice rule blocks the calls that match every condition it names (caller or caller prefix,
callee or callee prefix, trunk, upstream FRN, signer SPC), optionally only between --start
and --end (ISO 8601 or epoch seconds). The policy sees its reference as the fact ``notice``.
Rules are in the shared store, so every instance applies them from its next call.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
from typing import Any

from sipguard.errors import SipguardError
from sipguard.store.admin import add_store_args, target_of, with_store
from sipguard.store.base import Notice, Store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("notice", help="Commission-notice block rules")
    sub = parser.add_subparsers(dest="notice_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add or replace a rule")
    add.add_argument("--ref", required=True, help="reference of the notice/order, e.g. DA-25-694")
    caller = add.add_mutually_exclusive_group()
    caller.add_argument("--caller", metavar="N", help="block calls from this number")
    caller.add_argument("--caller-prefix", metavar="P", help="block calls from numbers starting with P")
    callee = add.add_mutually_exclusive_group()
    callee.add_argument("--callee", metavar="N", help="block calls to this number")
    callee.add_argument("--callee-prefix", metavar="P", help="block calls to numbers starting with P")
    add.add_argument("--trunk", metavar="T", help="block calls arriving on this trunk id")
    add.add_argument("--frn", metavar="F", help="upstream provider FRN (the trunk's configured FRN)")
    add.add_argument("--spc", metavar="S", help="SPC of the signing certificate")
    add.add_argument("--start", metavar="T", help="from (ISO 8601 or epoch seconds)")
    add.add_argument("--end", metavar="T", help="until, exclusive")
    add_store_args(add)
    rm = sub.add_parser("remove", help="remove a rule")
    rm.add_argument("ref", help="the reference the rule was added with")
    add_store_args(rm)
    ls = sub.add_parser("list", help="show the rules")
    add_store_args(ls)
    parser.set_defaults(func=run)


def parse_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SipguardError(f"time {text!r}: expected ISO 8601 (2025-08-06T00:00:00Z) or epoch seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _iso(t: float | None) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat() if t is not None else "-"


def describe(n: Notice) -> str:
    parts = [f"{k}={v}" for k, v in (("caller", n.caller), ("caller_prefix", n.caller_prefix),
                                     ("callee", n.callee), ("callee_prefix", n.callee_prefix),
                                     ("trunk", n.trunk), ("frn", n.frn), ("spc", n.spc)) if v]
    window = f" from {_iso(n.start)} until {_iso(n.end)}" if n.start or n.end else ""
    return f"{n.ref}: {' '.join(parts)}{window}"


def run(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target.is_memory:
        raise SipguardError("store is `memory`: notice rules need a shared store (store: redis://...) so that "
                            "every instance applies them")

    async def work(store: Store) -> int:
        if args.notice_command == "add":
            notice = Notice(args.ref, args.caller, args.caller_prefix, args.callee, args.callee_prefix,
                            args.trunk, args.frn, args.spc, parse_time(args.start), parse_time(args.end))
            await store.notice_add(notice)
            print(f"added {describe(notice)}")
            return 0
        if args.notice_command == "remove":
            if await store.notice_remove(args.ref):
                print(f"{args.ref}: removed")
                return 0
            print(f"{args.ref}: no such notice rule")
            return 1
        for n in await store.notice_list():
            print(describe(n))
        return 0

    return asyncio.run(with_store(target, work))
