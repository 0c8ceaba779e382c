"""``sipguard upstreams``: know your upstream, per trunk and per signer, from the call records.

    sipguard upstreams -c CONFIG                       # the last 7 days, as tables
    sipguard upstreams -c CONFIG --since 24h --format jsonl
    sipguard upstreams -c CONFIG --since 2026-12-01T00:00Z --until 2026-12-02T00:00Z

Measures and the score formula: README "Know your upstream", records/measures.py. The
same answer as ``GET /upstreams`` (``--format jsonl``: one JSON object per trunk, then one
per signer). Exit 0, 1 on errors, 3 when the window holds no call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import IO, Any

from sipguard.records import upstreams

NOT_FOUND = 3
CLI_MAX_N = 100_000
DESCRIPTION = ("Per trunk and per signer (SPC): calls, attestation mix, share verified/failed/unsigned, "
               "invalid, unallocated and DNO caller IDs (per attestation in jsonl), calls signed with "
               "another provider's SPC while the upstream's RMD filing claims complete STIR/SHAKEN, RMD "
               "status, and trunk.score. Exit 0, 1 on errors, 3 when the window holds no call.")
TRUNKS = (("trunk", 16), ("calls", 9), ("A", 6), ("B", 6), ("C", 6), ("none", 6), ("verif", 6), ("failed", 6),
          ("unsig", 6), ("inval", 6), ("unall", 6), ("dno", 6), ("A-bad", 6), ("othSPC", 6), ("rmd", 8),
          ("impl", 8), ("score", 5))
SIGNERS = (("spc", 16), ("calls", 9), ("A", 6), ("B", 6), ("C", 6), ("verif", 6), ("failed", 6), ("inval", 6),
           ("unall", 6), ("dno", 6), ("A-bad", 6), ("own", 6), ("other", 6))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("upstreams", help="per trunk and per signer measures and trunk.score, from the records",
                              description=DESCRIPTION)
    p.add_argument("-c", "--config", required=True, metavar="CONFIG", help="sipguard config file (names the records)")
    p.add_argument("--since", metavar="T", default=upstreams.DEFAULT_SINCE,
                   help="a duration back from --until (7d, 24h, 90m, 3600s, 2w; default 7d) or a time "
                        "(ISO 8601, epoch); at most traceback.retention_days")
    p.add_argument("--until", metavar="T", help="end of the window (default: now)")
    p.add_argument("-n", metavar="N", help=f"trunks and signers shown, the busiest first (default "
                                           f"{upstreams.DEFAULT_N}, at most {CLI_MAX_N})")
    p.add_argument("--format", choices=("table", "jsonl"), default="table",
                   help="table (default) or jsonl: one JSON object per trunk, then per signer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sipguard.config import load_config

    config = load_config(args.config)
    win = upstreams.window({"since": args.since, "until": args.until, "n": args.n}, time.time(),
                           config.traceback.retention_days, CLI_MAX_N)
    doc = asyncio.run(upstreams.report(config.store, config.traceback, win, config.upstreams.score_min_calls))
    if args.format == "jsonl":
        for row in doc["upstreams"] + doc["signers"]:
            print(json.dumps(row))
    else:
        print_tables(doc, sys.stdout)
    return 0 if doc["upstreams"] or doc["signers"] else NOT_FOUND


def _pct(row: dict[str, Any], count: int) -> str:
    return f"{100 * count / row['calls']:.1f}" if row["calls"] else "-"


def print_tables(doc: dict[str, Any], out: IO[str]) -> None:
    print(f"from {doc['since']} to {doc['until']} (UTC); shares in % of the calls "
          "(caller classes: of the calls whose class is known)", file=out)
    print(f"\nupstreams ({len(doc['upstreams'])} of {doc['upstreams_total']}):", file=out)
    _row([name for name, _ in TRUNKS], TRUNKS, out)
    for r in doc["upstreams"]:
        att = r["attest"]
        _row([r["trunk"], str(r["calls"]), *(_pct(r, att[a]) for a in ("A", "B", "C", "none")),
              *(f"{100 * r[k + '_share']:.1f}" for k in ("verified", "failed", "unsigned", "invalid",
                                                         "unallocated", "dno")),
              str(r["a_bad"]), str(r["other_spc_complete"]), r["rmd"] or "-", r["implementation"] or "-",
              "-" if r["score"] is None else str(r["score"])], TRUNKS, out)
    print(f"\nsigners ({len(doc['signers'])} of {doc['signers_total']}):", file=out)
    _row([name for name, _ in SIGNERS], SIGNERS, out)
    for r in doc["signers"]:
        att = r["attest"]
        _row([r["spc"], str(r["calls"]), *(_pct(r, att[a]) for a in ("A", "B", "C")),
              *(f"{100 * r[k + '_share']:.1f}" for k in ("verified", "failed", "invalid", "unallocated", "dno")),
              str(r["a_bad"]), str(r["spc_owner"].get("own", 0)), str(r["other_spc"])], SIGNERS, out)
    print("\nA-bad: A-attested calls with an invalid, unallocated or DNO caller ID; othSPC: calls signed "
          "with another provider's SPC while the RMD filing claimed complete STIR/SHAKEN", file=out)


def _row(values: list[str], columns: tuple[tuple[str, int], ...], out: IO[str]) -> None:
    print(" ".join(v[:w].ljust(w) for v, (_, w) in zip(values, columns, strict=True)).rstrip(), file=out)
