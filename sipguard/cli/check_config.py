"""``sipguard check-config CONFIG``: validate without starting (exit 0 valid, 1 invalid)."""

from __future__ import annotations

import argparse

from sipguard.config import load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check-config", help="validate a config file (and the files it names)")
    p.add_argument("config", help="config file (YAML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.signing is not None:
        from sipguard.clock import SystemClock
        from sipguard.shaken.sign import Signer

        Signer.load(config.signing, SystemClock().time())
    trunks = len(config.trunks)
    print(f"{args.config}: ok ({config.mode} mode, {len(config.listen)} listen addresses, "
          f"{trunks} trunk{'s' if trunks != 1 else ''}, store {config.store}, "
          f"policy {config.policy or 'built-in default'})")
    return 0
