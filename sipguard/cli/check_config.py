"""``sipguard check-config CONFIG``: validate without starting (exit 0 valid, 1 invalid).

Every problem is printed, one ``file:line: key: message`` line each (``config_check.py``)."""

from __future__ import annotations

import argparse
import sys

from sipguard.config import load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check-config", help="validate a config file and the files it names; print every problem")
    p.add_argument("config", help="config file (YAML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sipguard.clock import SystemClock
    from sipguard.config_check import check_config

    problems = check_config(args.config, SystemClock().time())
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"sipguard check-config: {len(problems)} problem{'s' if len(problems) != 1 else ''} "
              f"in {args.config}", file=sys.stderr)
        return 1
    config = load_config(args.config)
    trunks = len(config.trunks)
    print(f"{args.config}: ok ({config.mode} mode, {len(config.listen)} listen addresses, "
          f"{trunks} trunk{'s' if trunks != 1 else ''}, store {config.store}, "
          f"policy {config.policy or 'built-in default'})")
    return 0
