"""The ``sipguard`` command: one argparse subcommand per module in this package.

Each module ``sipguard.cli.<name>`` defines ``register(subparsers)``, which adds its
parser and sets ``func=run`` where ``run(args) -> int`` is the exit status. User
errors (``SipguardError``: bad config, bad data file) print one clear line to stderr
and exit 1; they never print a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sipguard import __version__, native
from sipguard.errors import SipguardError

COMMANDS = ("serve", "check_config", "policy", "replay", "rmd", "dno", "lists", "notice",
            "traceback", "report", "upstreams", "numbers", "trust", "schema", "db", "threats")


class _Version(argparse.Action):
    """``--version`` as one line (argparse's own wraps it to the terminal's width)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"sipguard {__version__}, hot path {native.describe()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipguard",
        description="SIP edge proxy that verifies STIR/SHAKEN and stops illegal robocalls.")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and which hot path runs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"sipguard.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except SipguardError as exc:
        print(f"sipguard {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
