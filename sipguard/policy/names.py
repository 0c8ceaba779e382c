"""Names a policy shares with the config: trunk ids (``trunk``) and limiter names (``limited``),
and the campaign detectors a ``campaign.*`` fact needs (``analytics.campaign``).

The policy file alone cannot tell ``trunk: carier-a`` from a real trunk, or
``limited: [per_calller]`` from a real limiter: both load, and the rule never fires. With
the config at hand (``policy check -c``, ``check-config``) every such value is compared with
the names the config defines, and one that is not there is a problem on its own line, with
a "did you mean". Only values compared for equality are checked (``trunk: x``, a list,
``in:``, ``not:``); a ``prefix`` or ``matches`` pattern names no one trunk.

This reads the policy file again rather than the compiled rules: the compiled form keeps
no line numbers per value. Problems the loader reports (syntax, unknown facts) are left
to it: a part this walk cannot read is skipped.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from sipguard.errors import ConfigError
from sipguard.yamlconf import Section, load

CAMPAIGN_DETECTORS = ("fanout", "burst")   # analytics.campaign.<name> -> fact campaign.<name>
MAX_NODES = 100_000   # a hostile file's width is bounded by the loader; this walk bounds its own


def check_names(path: str, trunks: Sequence[str], limiters: Sequence[str],
                detectors: Sequence[str] | None = None) -> list[ConfigError]:
    """Problems with the trunk ids and limiter names the rules of ``path`` compare with, and
    (``detectors`` given: the campaign detectors the config turns on) ``campaign.*`` facts
    whose detector is off: always null, so the condition never matches."""
    known = {"trunk": ("trunk", tuple(trunks)), "limited": ("limiter", tuple(limiters))}
    if detectors is not None:
        known.update({f"campaign.{d}": ("detector", tuple(detectors)) for d in CAMPAIGN_DETECTORS
                      if d not in detectors})
    out: list[ConfigError] = []
    try:
        root = load(path)
        rules = root.sections("rules") if isinstance(root.raw("rules"), list) else []
    except ConfigError:
        return out                     # check_policy reports it
    budget = [MAX_NODES]
    for rule in rules:
        if isinstance(rule.raw("when"), dict):
            _walk(rule.section("when"), known, out, budget, 0)
    return sorted(out, key=lambda e: e.line or 0)


def _walk(sec: Section, known: dict[str, tuple[str, tuple[str, ...]]], out: list[ConfigError],
          budget: list[int], depth: int) -> None:
    if depth > 64:
        return
    for key in sec.keys():
        budget[0] -= 1
        if budget[0] < 0:
            return
        raw = sec.raw(key)
        try:
            if key in ("any", "all") and isinstance(raw, list):
                for sub in sec.sections(key):
                    _walk(sub, known, out, budget, depth + 1)
            elif key == "not" and isinstance(raw, dict):
                _walk(sec.section(key), known, out, budget, depth + 1)
            elif key.startswith("campaign.") and key in known:
                out.append(ConfigError(f"analytics.campaign.{key[9:]} is not in the config, so {key} is "
                                       "always null and this condition never matches", sec.path,
                                       sec.line_of(key), sec.dotted(key)))
            elif key in known:
                if isinstance(raw, dict):
                    ops = sec.section(key)
                    for op in ("in", "not"):
                        if op in ops:
                            _values(ops, op, ops.raw(op), known[key], out)
                else:
                    _values(sec, key, raw, known[key], out)
        except ConfigError:
            continue                   # the loader reports what is wrong with this part


def _values(sec: Section, key: str, raw: Any, kind: tuple[str, tuple[str, ...]],
            out: list[ConfigError]) -> None:
    what, names = kind
    items = raw if isinstance(raw, list) else [raw]
    for index, value in enumerate(items):
        if not isinstance(value, str) or value in names:
            continue                   # null (no trunk) and non-text values are the loader's to judge
        line = sec.item_line(key, index) if isinstance(raw, list) else sec.line_of(key)
        close = difflib.get_close_matches(value, names, n=1)
        if close:
            hint = f"did you mean {close[0]!r}?"
        elif names:
            hint = f"the config has: {', '.join(names)}"
        else:
            hint = f"the config defines no {what}s"
        out.append(ConfigError(f"no {what} named {value!r} in the config, so this condition never "
                               f"matches; {hint}", sec.path, line, sec.dotted(key)))


def config_names(config_path: str) -> tuple[list[str], list[str], list[str]]:
    """The trunk ids, limiter names and campaign detectors ``config_path`` defines, read as
    written (the config's own problems are check-config's to report)."""
    root = load(config_path)
    trunks = []
    if isinstance(root.raw("trunks"), list):
        trunks = [str(t.get("id")) for t in root.raw("trunks") if isinstance(t, dict) and t.get("id") is not None]
    limits = root.raw("limits")
    return (trunks, [str(name) for name in limits] if isinstance(limits, dict) else [],
            configured_detectors(root.raw("analytics")))


def configured_detectors(analytics: Any) -> list[str]:
    """The campaign detectors an ``analytics:`` value (as written) turns on."""
    campaign = analytics.get("campaign") if isinstance(analytics, dict) else None
    if not isinstance(campaign, dict):
        return []
    return [d for d in CAMPAIGN_DETECTORS if campaign.get(d)]
