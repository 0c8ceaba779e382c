"""Read a policy file (YAML, via yamlconf so every error names file:line:key) and
compile it into a ``Policy``.

One compiler serves both entry points: ``check_policy`` returns every problem it finds
(``sipguard policy check``), ``load_policy`` raises the first one. Problems found:
YAML syntax, unknown top-level/rule keys, missing or unsupported ``version``, unknown
facts (with a "did you mean"), values of the wrong type for their fact, unknown
operators, regexes that do not compile, unknown actions, bad status codes, keys that
belong to the other action (sign on a reject ...), bad tags and next-hop URIs, duplicate
or reserved rule names, and rules that can never match because an earlier rule matches
every call. Whatever the file holds, the only exception that leaves this module is
ConfigError: yamlconf bounds the file's size, depth and aliases, and a compile that still
runs out of stack or memory is reported as a problem of the file.
"""

from __future__ import annotations

import re
from typing import cast

from sipguard.errors import ConfigError
from sipguard.policy.actions import ACTIONS, FORWARD_KEYS, REJECT_KEYS, compile_action
from sipguard.policy.conditions import compile_when, make_predicate
from sipguard.policy.decision import FORWARD, Decision
from sipguard.policy.engine import DEFAULT_RULE, Policy
from sipguard.policy.facts import FACT_NAMES, Facts
from sipguard.policy.model import CompiledRule, Decide, Problems, Redress
from sipguard.yamlconf import Section, input_failure, load

SUPPORTED_VERSIONS = (1,)
MODES = ("enforce", "shadow")
TOP_KEYS = ("version", "mode", "default", "rules", "description")
RULE_KEYS = ("name", "description", "when", "action", *dict.fromkeys((*REJECT_KEYS, *FORWARD_KEYS)))
DEFAULT_KEYS = ("action", *dict.fromkeys((*REJECT_KEYS, *FORWARD_KEYS)))
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")      # names become metric labels and record fields


def load_policy(path: str, redress: Redress) -> Policy:
    """Load and compile ``path``; ConfigError (file, line, key) on the first problem."""
    policy, problems = _compile(path, redress)
    if problems.errors:
        raise problems.errors[0]
    assert policy is not None
    return policy


def check_policy(path: str, redress: Redress | None = None) -> list[ConfigError]:
    """Every problem in ``path``, in file order. With ``redress`` (from the config), a
    603+ rule without a redress contact is a problem too."""
    _, problems = _compile(path, redress)
    return sorted(problems.errors, key=lambda e: e.line or 0)


def count_rules(path: str) -> int:
    """Rules in a valid policy file (for ``policy check``'s "ok: N rules")."""
    policy, _ = _compile(path, None)
    return len(policy.rules) if policy is not None else 0


def _compile(path: str, redress: Redress | None) -> tuple[Policy | None, Problems]:
    problems = Problems()
    try:
        return _compile_root(load(path), redress, problems), problems
    except ConfigError as exc:
        problems.add(exc)
    except (RecursionError, MemoryError, UnicodeError) as exc:
        problems.add(input_failure(exc, path))
    except SyntaxError:            # the generated matcher: Python's parser has its own limits
        problems.add(ConfigError("conditions are nested too deeply or too many to compile; "
                                 "split them into more rules", path))
    return None, problems


def _compile_root(root: Section, redress: Redress | None, problems: Problems) -> Policy:
    path = root.path
    for key in root.keys():
        if key not in TOP_KEYS:
            problems.add(root.error(key, f"unknown key; expected one of: {', '.join(TOP_KEYS)}"))
    version = _version(root, problems)
    shadow = _mode(root, problems) == "shadow"
    default = _default(root, redress, problems)
    rules = _rules(root, redress, problems)
    return Policy(path, version, shadow, tuple(rules), default)


def _mode(root: Section, problems: Problems) -> str:
    try:
        return str(root.choice("mode", MODES, default="enforce"))
    except ConfigError as exc:
        problems.add(exc)
        return "enforce"


def _version(root: Section, problems: Problems) -> int:
    try:
        version = root.int("version")
    except ConfigError as exc:
        problems.add(exc)
        return 0
    if isinstance(version, int) and version not in SUPPORTED_VERSIONS:
        problems.add(root.error("version", f"unsupported policy version {version}; this sipguard "
                                f"reads version {', '.join(map(str, SUPPORTED_VERSIONS))}"))
    return int(version)


def _default(root: Section, redress: Redress | None, problems: Problems) -> Decide:
    if "default" not in root:
        return _forward_all
    try:
        sec = root.section("default")
        sec.check_keys(DEFAULT_KEYS)
        _, _, decide = compile_action(sec, None, redress, problems)
    except ConfigError as exc:
        problems.add(exc)
        return _forward_all
    return decide


def _forward_all(_facts: Facts) -> Decision:
    return FORWARD


def _rules(root: Section, redress: Redress | None, problems: Problems) -> list[CompiledRule]:
    try:
        sections = cast("list[Section]", root.sections("rules"))  # see conditions.py
    except ConfigError as exc:
        problems.add(exc)
        return []
    rules: list[CompiledRule] = []
    first_line: dict[str, int] = {}
    catch_all: CompiledRule | None = None
    for index, sec in enumerate(sections):
        line = root.item_line("rules", index) or 0
        name, rule = _rule(sec, index, line, redress, problems)
        if name is not None and name in first_line:
            problems.add(sec.error("name", f"duplicate rule name {name!r} (first used at line "
                                   f"{first_line[name]})"))
        if name is not None:
            first_line.setdefault(name, line)
        if rule is None:
            continue
        if catch_all is not None:
            problems.add(ConfigError(
                f"rule {rule.name!r} can never match: rule {catch_all.name!r} (line {catch_all.line}) "
                "above it has no conditions and matches every call", sec.path, line, sec.prefix))
        elif rule.catch_all:
            catch_all = rule
        rules.append(rule)
    return rules


def _rule(sec: Section, index: int, line: int, redress: Redress | None,
          problems: Problems) -> tuple[str | None, CompiledRule | None]:
    for key in sec.keys():
        if key not in RULE_KEYS:
            hint = " (conditions go under when:)" if key in FACT_NAMES else ""
            problems.add(sec.error(key, f"unknown rule key{hint}; expected one of: {', '.join(RULE_KEYS)}"))
    name = _name(sec, problems)
    try:
        if "when" in sec and sec.raw("when") is not None and not isinstance(sec.raw("when"), dict):
            raise sec.error("when", "when: takes a mapping of conditions, e.g. when: {caller.dno: true}")
        condition, always = compile_when(sec.section("when"), problems)
        action, rule_class, decide = compile_action(sec, name, redress, problems)
    except ConfigError as exc:
        problems.add(exc)
        return name, None
    try:
        match = make_predicate(condition)
    except (RecursionError, SyntaxError, MemoryError):
        problems.add(sec.error("when", "conditions are nested too deeply"))
        return name, None
    return name, CompiledRule(name or f"rule-{index + 1}", line, action, rule_class, match, decide,
                              always, condition)


def _name(sec: Section, problems: Problems) -> str | None:
    try:
        name = sec.str("name")
    except ConfigError as exc:
        problems.add(exc)
        return None
    if not _NAME.fullmatch(name):
        problems.add(sec.error("name", f"rule name {name!r}: use letters, digits and - _ . : only "
                               "(it becomes a metric label)"))
    elif name == DEFAULT_RULE:
        problems.add(sec.error("name", f"{DEFAULT_RULE!r} is reserved for the default action"))
    return name


__all__ = ["ACTIONS", "Redress", "check_policy", "count_rules", "load_policy"]
