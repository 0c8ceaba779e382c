"""``sipguard threats import|show``: named bad actors (FCC C-CIST designations, the operator's list).

``import FILE --source c-cist|operator`` replaces that source's entries (sipguard/threats.py
describes the file formats); a file with more than 10 % invalid rows is refused and the list
in force stays (``datasets.import_refusal``, as ``rmd import``), unless ``--force``.
``show`` lists the entries in force and, with ``-c CONFIG``, which configured trunks match.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sipguard.errors import ConfigError
from sipguard.store.admin import MEMORY_NOTE, add_store_args, report_lines, target_of, with_store
from sipguard.store.base import Store
from sipguard.store.datasets import MAX_THREAT_BYTES, import_refusal, parse_file
from sipguard.threats import THREAT_SOURCES, ThreatEntry, ThreatIndex, parse_threats


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("threats", help="threat lists: FCC C-CIST designations, the operator's own")
    sub = parser.add_subparsers(dest="threats_command", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="replace one source's threat list (CSV or JSON: kind,value,ref,note)")
    imp.add_argument("file", metavar="FILE", help="CSV (kind,value,ref,note or name,frn,ip,spc,ref,note) or JSON")
    imp.add_argument("--source", choices=THREAT_SOURCES, default="operator",
                     help="whose list this is: c-cist (FCC designations) or operator (default)")
    imp.add_argument("--force", action="store_true", help="import even if more than 10%% of the rows are invalid")
    add_store_args(imp)
    show = sub.add_parser("show", help="list the threat entries in force and the configured trunks they match")
    show.add_argument("--source", choices=THREAT_SOURCES, help="only this source's entries")
    add_store_args(show)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threats_command == "import":
        return _import(args)
    return _show(args)


def load_threat_file(path: str, source: str, force: bool = False) -> tuple[list[ThreatEntry], list[str]]:
    """Parse and check one threat file: (entries, report lines); ConfigError when refused."""
    entries, report = parse_file(lambda text, name: parse_threats(text, name, source), path, MAX_THREAT_BYTES)
    lines = report_lines(report)
    why = import_refusal(report, len(entries), 0)
    if why is not None and not force:
        raise ConfigError(f"{why}; the {source} threat list in force is kept. Check the file, or import it "
                          "anyway with --force", path)
    if not entries:
        raise ConfigError(f"no usable entry; the {source} threat list in force is kept", path)
    return entries, lines


def _import(args: argparse.Namespace) -> int:
    target = target_of(args)
    entries, lines = load_threat_file(args.file, args.source, args.force)
    for line in lines:
        print(line)
    if target.is_memory:
        print(MEMORY_NOTE)
        return 0

    async def work(store: Store) -> int:
        return await store.threats_import(entries, args.source)

    count = asyncio.run(with_store(target, work))
    print(f"{args.source} threat list in force: {count} entries")
    return 0


def _show(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target.is_memory:
        entries: list[ThreatEntry] = []
        for name, source in (("c_cist", "c-cist"), ("threats", "operator")):
            if target.datasets.get(name):
                entries += load_threat_file(target.datasets[name], source, force=True)[0]
        index = ThreatIndex(entries)
    else:
        async def work(store: Store) -> ThreatIndex:
            return store.threats
        index = asyncio.run(with_store(target, work))
    shown = [e for e in index.entries if args.source is None or e.source == args.source]
    for e in shown:
        print(f"{e.source}\t{e.kind}\t{e.value}\t{e.ref}\t{e.note}")
    print(f"{len(shown)} entries")
    if getattr(args, "config", None):
        from sipguard.config import load_config

        for trunk in load_config(args.config).trunks:
            hit = index.trunk(trunk)
            if hit is not None:
                print(f"trunk {trunk.id} matches {hit.source} {hit.kind} {hit.value}"
                      + (f" ({hit.ref})" if hit.ref else ""))
    return 0
