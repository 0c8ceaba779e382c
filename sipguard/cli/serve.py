"""``sipguard serve -c CONFIG [--workers N]``: run the proxy."""

from __future__ import annotations

import argparse
import logging

from sipguard.config import load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run the SIP edge proxy")
    p.add_argument("-c", "--config", required=True, help="config file (YAML)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes sharing the ports (default: config 'workers', else 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sipguard.proxy.server import serve

    config = load_config(args.config)
    from sipguard.observe.logs import setup_logging

    setup_logging(config.log.level, json=True, decisions=config.log.decisions)
    logging.getLogger("sipguard").info("starting sipguard with %s", config.path)
    if args.workers is not None and args.workers < 1:
        raise SystemExit("sipguard serve: --workers must be >= 1")
    return serve(config, args.workers)
