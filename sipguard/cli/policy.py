"""``sipguard policy check FILE``: validate a policy file; ``sipguard policy eval``: what-if.

``check`` prints every problem as ``FILE:LINE: key: message`` and exits 1, or prints
``ok: N rules`` and exits 0. With ``-c CONFIG`` it also reads ``blocking.redress`` from
the config, so a 603+ rule without a redress contact is reported, and the trunk ids and
limiter names the config defines, so a rule naming another one is reported
(``policy/names.py``).

``eval FILE fact=value ...`` evaluates the policy on hand-written facts and prints the
decision as JSON: what would this policy do to a call that looks like this?
    sipguard policy eval config/policy.yaml trunk.role=foreign caller.us=true verstat=No-TN-Validation

``whatif -c CONFIG --policy NEW.yaml --since 7d`` replays the stored call records of the
window through NEW.yaml and the config's policy (records/whatif.py says what is re-decided
and what cannot be) and prints the calls per rule under each, what changes, and samples.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from sipguard.errors import ConfigError
from sipguard.policy.facts import FACT_NAMES, Facts
from sipguard.policy.loader import check_policy, count_rules, load_policy
from sipguard.policy.model import Redress
from sipguard.policy.schema import FACT_KINDS
from sipguard.yamlconf import load

# Without -c, 603+ decisions show this contact rather than failing for want of one.
_PLACEHOLDER = Redress(url="https://redress.invalid/set-blocking.redress-in-the-config")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("policy", help="check a policy file, or try it on facts")
    cmds = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    check = cmds.add_parser("check", help="validate a policy file (exit 0 valid, 1 invalid)")
    check.add_argument("file", help="policy file (YAML)")
    check.add_argument("-c", "--config", help="config file: also check that the trunks and limiters the "
                       "rules name exist, and that 603+ rejections have a redress contact")
    check.set_defaults(func=run)
    ev = cmds.add_parser("eval", help="print the decision the policy takes on the given facts")
    ev.add_argument("file", help="policy file (YAML)")
    ev.add_argument("facts", nargs="*", metavar="FACT=VALUE",
                    help="e.g. caller.dno=true limited=per_caller,per_trunk emergency=true")
    ev.add_argument("-c", "--config", help="config file (for blocking.redress; without it 603+ shows a "
                    "placeholder contact)")
    ev.set_defaults(func=run)
    wi = cmds.add_parser("whatif", help="re-decide the stored call records with a candidate policy; print what "
                                        "would change")
    wi.add_argument("-c", "--config", required=True, help="config file (names the records and the current policy)")
    wi.add_argument("--policy", required=True, metavar="NEW", help="the candidate policy file (YAML)")
    wi.add_argument("--current", metavar="OLD", help="compare with this policy instead of the config's")
    wi.add_argument("--since", default="7d", metavar="T", help="a duration back from --until (7d, 24h, 90m; "
                    "default 7d) or a time (ISO 8601, epoch); at most traceback.retention_days")
    wi.add_argument("--until", metavar="T", help="end of the window (default: now)")
    wi.add_argument("--samples", type=int, default=5, metavar="N", help="calls shown per change (default 5, 0-100)")
    wi.add_argument("--format", choices=("table", "json"), default="table",
                    help="table (default) or json: the report as one JSON document")
    wi.set_defaults(func=run)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.policy_command == "whatif":
        return _whatif(args)
    redress = _redress(args.config) if args.config else None
    if args.policy_command == "eval":
        return _eval(args.file, args.facts, redress or _PLACEHOLDER)
    problems = check_policy(args.file, redress)
    if args.config:
        from sipguard.policy.names import check_names, config_names

        problems = sorted(problems + check_names(args.file, *config_names(args.config)), key=lambda e: e.line or 0)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"ok: {count_rules(args.file)} rules")
    return 0


def _whatif(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from sipguard.config import load_config
    from sipguard.errors import SipguardError
    from sipguard.records import query, upstreams, whatif

    if not 0 <= args.samples <= 100:
        raise SipguardError(f"--samples {args.samples}: expected 0 to 100")
    config = load_config(args.config)
    win = upstreams.window({"since": args.since, "until": args.until}, time.time(), config.traceback.retention_days)
    current_path = args.current or config.policy
    current = load_policy(current_path, config.redress) if current_path else None
    candidate = load_policy(args.policy, config.redress)
    records = query.iterate(config.store, config.traceback, win.since, win.until)
    report = asyncio.run(whatif.whatif_async(records, current, candidate, args.samples))
    if args.format == "json":
        print(json.dumps({"since": query.iso_utc(win.since), "until": query.iso_utc(win.until),
                          "current": current_path, "candidate": args.policy, **report.to_json()}, indent=2))
    else:
        print(f"records from {query.iso_utc(win.since)} to {query.iso_utc(win.until)} (UTC); current: "
              f"{current_path or 'the built-in default'}; candidate: {args.policy}")
        print("\n".join(report.lines()))
    return 0


def _redress(config: str) -> Redress:
    return Redress.from_section(load(config).section("blocking").section("redress"))


def _eval(path: str, pairs: list[str], redress: Redress) -> int:
    policy = load_policy(path, redress)
    facts = Facts(**dict(_fact(pair) for pair in pairs))
    decision = policy.evaluate(facts)
    print(json.dumps(asdict(decision), indent=2))
    return 0


def _fact(pair: str) -> tuple[str, Any]:
    """``name=value`` from the command line to a Facts field and its typed value."""
    name, sep, text = pair.partition("=")
    if not sep:
        raise ConfigError(f"{pair!r}: write facts as name=value", "command line", key=name)
    if name == "emergency":
        return "emergency", _bool(name, text)
    if name not in FACT_NAMES:
        raise ConfigError(f"unknown fact; facts are: {', '.join(FACT_NAMES)}", "command line", key=name)
    kind = FACT_KINDS[name]
    value: Any
    if text in ("", "null") and kind.nullable and kind.kind != "list":
        value = None                  # unknown (e.g. campaign.fanout with its detector off)
    elif kind.kind == "bool":
        value = _bool(name, text)
    elif kind.kind == "list":
        value = tuple(item for item in text.split(",") if item)
    elif text in ("", "null") and kind.nullable:
        value = None
    elif kind.kind == "number":
        if not (text.isascii() and text.isdigit() and len(text) <= 9):
            raise ConfigError(f"{name} is a whole number, got {text!r}", "command line", key=name)
        value = int(text)
    else:
        value = text.lstrip("+") if kind.kind == "digits" else text
    return FACT_NAMES[name], value


def _bool(name: str, text: str) -> bool:
    if text not in ("true", "false"):
        raise ConfigError(f"{name} is true/false, got {text!r}", "command line", key=name)
    return text == "true"
