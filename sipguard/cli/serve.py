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
    p.add_argument("--shared-port", action="store_true",
                   help="start even when another process listens on the same addresses "
                        "(they share the traffic); by default a second instance is refused")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sipguard.proxy.supervisor import check_addresses_free, serve

    config = load_config(args.config)
    if not args.shared_port:
        check_addresses_free(config)
    from sipguard.observe.logs import setup_logging

    setup_logging(config.log.level, json=True, decisions=config.log.decisions)
    from sipguard.proxy.allocator import prepare

    prepare(config.proxy.allocator)   # on jemalloc: starts again (same PID) before binding anything
    log = logging.getLogger("sipguard")
    log.info("starting sipguard with %s", config.path)
    if config.policy:
        from sipguard.policy.names import check_names

        # a rule naming a trunk or limiter the config lacks never fires: said, not refused
        # (check-config and policy check -c refuse it)
        detectors = [d for d in ("fanout", "burst") if getattr(config.detectors, d) is not None]
        for problem in check_names(config.policy, [t.id for t in config.trunks], [s.name for s in config.limits],
                                   detectors):
            log.warning("%s", problem)
    if args.workers is not None and args.workers < 1:
        raise SystemExit("sipguard serve: --workers must be >= 1")
    return serve(config, args.workers)
