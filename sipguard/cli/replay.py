"""``sipguard replay CAPTURE -c CONFIG``: what would sipguard have done with this traffic?

Prints one CONTRACT jsonl line per INVITE transaction (or a table with a summary), or,
with ``--compare OLD.yaml``, only the calls whose decision changes between two policies.
Capture problems go to stderr; the calls that could be read are still replayed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from typing import Any

from sipguard.errors import SipguardError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay", help="replay a pcap/pcapng capture through the pipeline",
        description="Replay the INVITEs of a capture through the same pipeline 'serve' runs.")
    p.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG", help="sipguard config file")
    p.add_argument("--policy", metavar="POLICY", help="policy file (default: the config's)")
    p.add_argument("--compare", metavar="OLD", help="old policy: print only calls decided differently")
    p.add_argument("--clock", default="capture", metavar="capture|now|EPOCH",
                   help="time used for iat, certificate validity and limits (default: capture)")
    p.add_argument("--format", choices=("jsonl", "table"), default="jsonl",
                   help="jsonl: one JSON line per call (default); table: columns and a summary")
    p.add_argument("--x5u-map", metavar="FILE", help="YAML url: PEM file, to replay offline")
    p.add_argument("--port", action="append", default=[], metavar="PORT",
                   help="only flows with this port (repeat or comma-separate)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--trunk", metavar="ID",
                        help="decide every call as coming from this trunk of the config "
                             "(a capture taken elsewhere has other source addresses)")
    source.add_argument("--any-source", action="store_true",
                        help="decide calls from no trunk as with unknown_source: allow, "
                             "instead of 403 unknown-source")
    p.set_defaults(func=run)


def _ports(values: list[str]) -> list[int] | None:
    ports: list[int] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item.isdigit() or not 0 < int(item) < 65536:
                raise SipguardError(f"--port {item!r}: expected a port number 1-65535")
            ports.append(int(item))
    return ports or None


def run(args: argparse.Namespace) -> int:
    from sipguard.config import load_config
    from sipguard.replay.runner import load_x5u_map, parse_clock, trunk_source

    parse_clock(args.clock)                       # fail fast on a bad --clock
    ports = _ports(args.port)
    if not os.path.exists(args.capture):
        raise SipguardError(f"{args.capture}: no such capture file")
    config = load_config(args.config)
    if args.any_source:
        config = dataclasses.replace(config, unknown_source="allow")
    source = trunk_source(config, args.trunk) if args.trunk else None
    x5u_map = load_x5u_map(args.x5u_map) if args.x5u_map else None
    try:
        if args.compare:
            return asyncio.run(_compare(args, config, x5u_map, ports, source))
        return asyncio.run(_replay(args, config, x5u_map, ports, source))
    except BrokenPipeError:   # `sipguard replay ... | head`
        sys.stderr.close()
        return 0


async def _replay(args: argparse.Namespace, config: Any, x5u_map: dict[str, bytes] | None,
                  ports: list[int] | None, source: tuple[str, int] | None) -> int:
    from sipguard.replay import output
    from sipguard.replay.capture import CaptureReport
    from sipguard.replay.runner import replay

    report = CaptureReport()
    progress = output.Progress(sys.stderr, os.path.getsize(args.capture), sys.stderr.isatty())
    summary = output.Summary()
    table = args.format == "table"
    if table:
        print(output.table_header())
    async for d in replay(args.capture, config, policy=args.policy, clock=args.clock,
                          x5u_map=x5u_map, ports=ports, report=report, source=source):
        summary.add(d)
        print(output.table_row(d) if table else output.jsonl_line(d))
        progress.update(report.bytes_read, summary.total)
    progress.close()
    if table:
        print()
        print("\n".join(summary.lines()))
    _report(report)
    return 0


async def _compare(args: argparse.Namespace, config: Any, x5u_map: dict[str, bytes] | None,
                   ports: list[int] | None, source: tuple[str, int] | None) -> int:
    from sipguard.replay import output
    from sipguard.replay.capture import CaptureReport
    from sipguard.replay.runner import changed, compare

    report = CaptureReport()
    progress = output.Progress(sys.stderr, os.path.getsize(args.capture), sys.stderr.isatty())
    summary = output.CompareSummary()
    async for old, new in compare(args.capture, config, args.policy, args.compare, clock=args.clock,
                                  x5u_map=x5u_map, ports=ports, report=report, source=source):
        is_changed = changed(old, new)
        summary.add(old, new, is_changed)
        if is_changed:
            print(output.compare_line(old, new, args.format))
        progress.update(report.bytes_read, summary.total)
    progress.close()
    lines = summary.lines()
    if args.format == "jsonl":
        print("\n".join(lines), file=sys.stderr)
    else:
        print()
        print("\n".join(lines))
    _report(report)
    return 0


def _report(report: Any) -> None:
    print(report.summary(), file=sys.stderr)
    for issue in report.issues[:20]:
        print(f"  {issue}", file=sys.stderr)
    if report.issue_count > 20:
        print(f"  ... and {report.issue_count - 20} more", file=sys.stderr)
