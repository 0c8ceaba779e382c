"""``sipguard traceback``: answer an ITG traceback request from the call records.

    sipguard traceback -c CONFIG --caller +12025550123 --callee 3125550188 --at "2025-08-06 14:03"
    sipguard traceback -c CONFIG --call-id abc@10.0.0.1 --format jsonl
    sipguard traceback -c CONFIG --top callers --since 2025-08-06T00:00Z
    sipguard traceback answer -c CONFIG --caller 2025550123 --callee 3125550188 --at "2025-08-06T10:03-04:00"

A request names one time: ``--at`` searches ``--window`` seconds (default 300) either
side. Times are ISO 8601 or epoch seconds; a time without a zone is UTC, and every
output is in UTC. The table names the upstream (trunk, provider name, FRN, RMD number,
country), the verification result and what sipguard did: what the ITG portal asks.
Exit 0 with records found, 1 on errors, 3 when nothing matched.

``traceback answer`` writes the answer to one hop of an ITG request: for each call, who
handed it to us (provider name, FRN, RMD number, country, the contact configured for the
trunk), on which trunk and when, the identity that arrived, what we did and whether we
signed; or "not found" with the window searched. Text ready for the ITG portal, or one
JSON document with ``--format jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from typing import IO, TYPE_CHECKING

from sipguard.records import answer, query
from sipguard.records.record import FIELDS, CallRecord

if TYPE_CHECKING:
    from sipguard.config import Config

NOT_FOUND = 3
# --help text: the module docstring's paragraph without its reStructuredText quotes
DESCRIPTION = ("A request names one time: --at searches --window seconds (default 300) either side. "
               "Times are ISO 8601 or epoch seconds; a time without a zone is UTC, and every output "
               "is in UTC. The table names the upstream (trunk, provider name, FRN, RMD number, "
               "country), the verification result and what sipguard did: what the ITG portal asks. "
               "Exit 0 with records found, 1 on errors, 3 when nothing matched.")
TABLE = (("time (UTC)", 24), ("caller", 15), ("callee", 15), ("trunk", 12), ("provider", 18),
         ("FRN", 10), ("RMD", 12), ("ctry", 4), ("verstat", 22), ("att", 3), ("origid", 36),
         ("action", 7), ("status", 6))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("traceback", help="find call records (ITG traceback, campaign view)",
                              description=DESCRIPTION)
    p.add_argument("what", nargs="?", choices=("answer",),
                   help="answer: the ITG answer for one hop (text, or JSON with --format jsonl)")
    p.add_argument("-c", "--config", required=True, metavar="CONFIG", help="sipguard config file (names the records)")
    p.add_argument("--caller", metavar="TN", help="calling number, any usual spelling")
    p.add_argument("--callee", metavar="TN", help="called number")
    p.add_argument("--at", metavar="T", help="the time of the call in the request (ISO 8601 or epoch; UTC "
                                              "when no zone is given)")
    p.add_argument("--window", metavar="S", help="seconds either side of --at (default 300, at most 31 days)")
    p.add_argument("--since", metavar="T", help="records from this time on (--at wins when given)")
    p.add_argument("--until", metavar="T", help="records before this time (default: no end)")
    p.add_argument("--call-id", metavar="ID", help="the record of this Call-ID")
    p.add_argument("--top", choices=query.TOP_BY,
                   help="campaign view: heaviest sources of rejected or C-attested calls")
    p.add_argument("-n", "--limit", metavar="N",
                   help="at most N records (default 1000) or N rows with --top (default 20)")
    p.add_argument("--format", choices=("table", "jsonl", "csv"), default="table",
                   help="table (default), jsonl (one JSON record per line) or csv")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sipguard.config import load_config

    config = load_config(args.config)
    # the same checks as the HTTP /traceback: a bad value is one line naming its option, exit 1
    try:
        q = query.question({"caller": args.caller, "callee": args.callee, "at": args.at, "window": args.window,
                            "since": args.since, "until": args.until, "call_id": args.call_id, "top": args.top,
                            ("n" if args.top else "limit"): args.limit}, max_limit=query.CLI_MAX_LIMIT)
    except query.BadParameter as exc:
        option = "--limit" if exc.name == "n" else "--" + exc.name.replace("_", "-")
        raise query.BadParameter(option, exc.detail) from None
    if args.what == "answer" and (args.top or args.format == "csv"):
        raise query.QueryError("traceback answer: --top and --format csv do not apply "
                               "(text by default, JSON with --format jsonl)")
    if q.top:
        rows = asyncio.run(query.top(config.store, config.traceback, q.top, q.since, q.until, q.n))
        write_top(rows, q.top, args.format, sys.stdout)
        return 0 if rows else NOT_FOUND
    records = asyncio.run(query.find(
        config.store, config.traceback, caller=q.caller, callee=q.callee, since=q.since,
        until=q.until, call_id=q.call_id, at=q.at, window=q.window, limit=q.limit))
    if args.what == "answer":
        write_answer(config, records, q, args.format, sys.stdout)
        return 0 if records else NOT_FOUND
    write_records(records, args.format, sys.stdout)
    if not records:
        low, high = q.range()
        print(f"sipguard traceback: no record found (searched {query.iso_utc(low) or 'the beginning'} to "
              f"{query.iso_utc(high) or 'now'} UTC)", file=sys.stderr)
        return NOT_FOUND
    return 0


def write_answer(config: Config, records: list[CallRecord], q: query.Question, fmt: str, out: IO[str]) -> None:
    low, high = q.range()
    request = answer.Request(q.caller, q.callee, q.at_text, q.at, q.call_id, low, high)
    doc = answer.build(request, records, answer.context_of(config), time.time())
    out.write(json.dumps(doc) + "\n" if fmt == "jsonl" else answer.render(doc))


def write_records(records: list[CallRecord], fmt: str, out: IO[str]) -> None:
    if fmt == "jsonl":
        for r in records:
            out.write(json.dumps({"time_utc": query.iso_utc(r.time), **r.to_dict()}) + "\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(("time_utc", *FIELDS))
        for r in records:
            d = r.to_dict()
            d["reasons"] = " ".join(r.reasons)
            d["passports"] = " ".join(r.passports)
            w.writerow((query.iso_utc(r.time), *("" if d[k] is None else d[k] for k in FIELDS)))
    elif records:
        out.write(_row([name for name, _ in TABLE]) + "\n")
        for r in records:
            out.write(_row([query.iso_utc(r.time), answer.plus(r.caller), answer.plus(r.callee), r.trunk,
                            r.provider_name, r.provider_frn, r.provider_rmd, r.provider_country,
                            r.verstat, r.attest, r.origid, r.action, r.status]) + "\n")


def write_top(rows: list[tuple[str, int, int]], by: str, fmt: str, out: IO[str]) -> None:
    if fmt == "jsonl":
        for key, rejected, attest_c in rows:
            out.write(json.dumps({by: key, "rejected": rejected, "attest_c": attest_c}) + "\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow((by, "rejected", "attest_c"))
        w.writerows(rows)
    elif rows:
        out.write(f"{by:<24} {'rejected':>9} {'attest C':>9}\n")
        for key, rejected, attest_c in rows:
            out.write(f"{key:<24} {rejected:>9} {attest_c:>9}\n")


def _row(values: list[object]) -> str:
    cells = []
    for (_, width), value in zip(TABLE, values, strict=True):
        text = "-" if value is None else str(value)
        cells.append(text if len(text) <= width else text[:width - 1] + "…")
        cells[-1] = cells[-1].ljust(width)
    return " ".join(cells).rstrip()

