"""``sipguard report``: the daily summary of the call records as one self-contained HTML file.

    sipguard report -c CONFIG --since 1d --out report.html
    sipguard report -c CONFIG --since 2026-12-05T00:00Z --until 2026-12-06T00:00Z --out day.html

Calls by action and verification result, the attestation mix, the rules that decided calls,
the upstreams with the most rejects, and calls per hour, from the records the config names
(SQLite, Redis Stream or PostgreSQL). The file has its style and its charts inline and fetches
nothing, so it can be mailed. Times are UTC; ``--since`` takes a duration back from
``--until`` (``1d``, ``12h``, ``30m``) or a time (ISO 8601 or epoch seconds). Exit 0 with the
file written (even with no calls in the stretch), 1 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time

from sipguard.records import query
from sipguard.records.report import render
from sipguard.records.summary import collect

DESCRIPTION = ("Calls by action and verification result, attestation mix, top rules, top upstreams by "
               "rejects and calls per hour, from the records the config names, as one HTML file with "
               "its style and charts inline (nothing fetched: it can be mailed). Times are UTC. "
               "Exit 0 with the file written, 1 on errors.")
DURATION = re.compile(r"(\d{1,6})\s*([smhdw])")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_SPAN = 400 * 86400.0      # a report covers at most this much (the records are kept 18 months)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("report", help="daily summary of the call records as one HTML file",
                              description=DESCRIPTION)
    p.add_argument("-c", "--config", required=True, metavar="CONFIG", help="sipguard config file (names the records)")
    p.add_argument("--since", default="1d", metavar="T",
                   help="start: a duration back from --until (1d, 12h, 30m, 2w) or a time (ISO 8601 or "
                        "epoch; UTC when no zone is given); default 1d")
    p.add_argument("--until", metavar="T", help="end (ISO 8601 or epoch); default now")
    p.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write ('-': standard output)")
    p.add_argument("--title", default="sipguard daily report", metavar="TEXT", help="the report's heading")
    p.set_defaults(func=run)


def span(since: str, until: str | None, now: float) -> tuple[float, float]:
    """(since, until) epoch seconds from the options; BadParameter naming the option otherwise."""
    end = query.parse_time(until, "--until") if until else now
    text = since.strip().lower()
    match = DURATION.fullmatch(text)
    if match:
        start = end - int(match.group(1)) * UNIT[match.group(2)]
    else:
        try:
            start = query.parse_time(since, "--since")
        except query.BadParameter:
            raise query.BadParameter("--since", f"{since.strip()[:40]!r}: expected a duration (1d, 12h, 30m, "
                                                "2w) or a time (ISO 8601 or epoch seconds)") from None
    if start >= end:
        raise query.BadParameter("--since", "is not before --until")
    if end - start > MAX_SPAN:
        raise query.BadParameter("--since", f"the report covers at most {MAX_SPAN / 86400:.0f} days")
    return max(0.0, start), end


def run(args: argparse.Namespace) -> int:
    from sipguard.config import load_config

    config = load_config(args.config)
    now = time.time()
    since, until = span(args.since, args.until, now)
    s = asyncio.run(collect(config.store, config.traceback, since, until))
    page = render(s, args.title, generated=now)
    if args.out == "-":
        sys.stdout.write(page)
        return 0
    folder = os.path.dirname(os.path.abspath(args.out))
    # written beside the target and renamed: a mail job never picks up half a report
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.replace(tmp, args.out)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"sipguard report: {s.calls} calls from {query.iso_utc(since)} to {query.iso_utc(until)} "
          f"written to {args.out}", file=sys.stderr)
    return 0
