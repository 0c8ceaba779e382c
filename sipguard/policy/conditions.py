"""Compile a rule's ``when`` mapping into one predicate closure over ``Facts``.

Grammar (CONTRACT.md, policy file):

* keys of a mapping are ANDed; ``any: [..]`` / ``all: [..]`` take lists of mappings,
  ``not: {..}`` negates a mapping;
* ``fact: value`` is equality, ``fact: [a, b]`` any-of; for list facts (``reasons``,
  ``limited``) both mean "contains";
* ``fact: {op: value, ...}`` with ops ``gt gte lt lte`` (string order), ``not`` (neither
  this value nor any of these), ``in`` (any-of), ``prefix`` (string or list of strings)
  and ``matches`` (a regex in Python's syntax, searched anywhere in the value; anchor
  with ^ and $ if you mean it); several ops in one mapping are ANDed;
* a fact without a value (None) never matches a comparison, ``not`` included; write
  ``fact: null`` to ask for "has no value". (``not:`` as a *key* negates a whole
  condition, so ``not: {attest: C}`` is true when attest is None.)

Values are checked against the fact's kind (schema.py) here, at load time. Each
condition compiles to a Python expression over ``f`` (the Facts) whose constants are
bound names, never text pasted into the source: ``f.caller_us is _v3``,
``f.trunk_rmd in _v4``. A rule's expressions are ANDed into one function, and the
engine chains every rule into one ``first_match(f)`` function, so evaluating a policy
is attribute reads and comparisons: no dict walk, no per-condition call, no parsing
(``source.ip`` addresses are parsed once per distinct address, regexes at load).

Regexes run on RE2 (google-re2), whose time is linear in the text whatever the pattern:
``(a+)+$`` cannot hang a worker. A pattern must compile in Python's ``re`` too (so
messages stay Python's), and RE2 refuses what needs backtracking (backreferences,
lookaround); each is a load error naming the line. A value is searched in its first
``MAX_MATCH_TEXT`` characters only.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable
from typing import Any, cast

import re2

from sipguard.errors import ConfigError
from sipguard.policy.facts import FACT_NAMES, Facts
from sipguard.policy.model import Cond, Predicate, Problems
from sipguard.policy.schema import FACT_KINDS, FactKind
from sipguard.yamlconf import Section

OPERATORS = ("gt", "gte", "lt", "lte", "not", "in", "prefix", "matches")
_ORDER_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_TEXT = FactKind("text")
MAX_PATTERN = 1000          # characters in one `matches:` pattern
MAX_MATCH_TEXT = 1024       # characters of a value that `matches` searches
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False    # refusals are reported as ConfigError, not on stderr
_RE2_OPTIONS.never_capture = True  # the search only answers yes/no


TRUE = Cond("True", {})
FALSE = Cond("False", {})
_names = itertools.count()


def _bind(env: dict[str, Any], value: Any) -> str:
    """A fresh, process-unique name for ``value`` (rules are later merged into one function)."""
    name = f"_v{next(_names)}"
    env[name] = value
    return name


def make_predicate(cond: Cond) -> Predicate:
    """One rule's condition as a function of the facts."""
    return cast(Predicate, eval(compile(f"lambda f: {cond.src}", "<policy>", "eval"), dict(cond.env)))


def make_first_match(conds: Iterable[Cond]) -> Callable[[Facts], int]:
    """``first_match(f)``: the index of the first condition that holds, or -1."""
    env: dict[str, Any] = {}
    lines = ["def first_match(f):"]
    for index, cond in enumerate(conds):
        env.update(cond.env)
        lines.append(f"    if {cond.src}: return {index}")
    lines.append("    return -1")
    exec(compile("\n".join(lines), "<policy>", "exec"), env)
    return cast(Callable[[Facts], int], env["first_match"])


def compile_when(sec: Section, problems: Problems) -> tuple[Cond, bool]:
    """The condition of a ``when`` mapping and whether it matches every call.

    Errors go to ``problems``; a part that fails compiles to "never matches" so the
    rest of the file can still be checked.
    """
    parts: list[tuple[int, Cond]] = []
    always = True
    for key in sec.keys():
        try:
            cond, is_always = _compile_key(sec, key, problems)
        except ConfigError as exc:
            problems.add(exc)
            cond, is_always = FALSE, False
        parts.append((_cost(key, sec.raw(key)), cond))
        always = always and is_always
    # ANDed conditions are pure, so their order is free: cheap tests first, so that most
    # rules fail on an attribute compare before any regex or address parsing runs.
    parts.sort(key=lambda part: part[0])
    return _join([cond for _, cond in parts], "and", TRUE), always


def _cost(key: str, raw: Any) -> int:
    if key in ("any", "all", "not"):
        return 5
    if FACT_KINDS.get(key, _TEXT).kind == "ip":
        return 6
    if isinstance(raw, dict):
        return 4 if "matches" in raw else 2
    return 1 if isinstance(raw, list) else 0


def _join(conds: list[Cond], op: str, empty: Cond) -> Cond:
    if not conds:
        return empty
    if len(conds) == 1:
        return conds[0]
    env: dict[str, Any] = {}
    for cond in conds:
        env.update(cond.env)
    return Cond("(" + f" {op} ".join(c.src for c in conds) + ")", env)


def _compile_key(sec: Section, key: str, problems: Problems) -> tuple[Cond, bool]:
    if key in ("any", "all"):
        subs = cast("list[Section]", sec.sections(key))  # yamlconf's method named list confuses mypy
        if not subs:
            raise sec.error(key, f"{key}: needs a list of one or more conditions")
        parts = [compile_when(sub, problems) for sub in subs]
        conds = [c for c, _ in parts]
        if key == "all":
            return _join(conds, "and", TRUE), all(a for _, a in parts)
        return _join(conds, "or", FALSE), any(a for _, a in parts)
    if key == "not":
        if not isinstance(sec.raw(key), dict):
            raise sec.error(key, "not: takes a mapping of conditions, e.g. not: {caller.us: true}")
        inner, _ = compile_when(sec.section(key), problems)
        return Cond(f"(not {inner.src})", inner.env), False
    if key not in FACT_NAMES:
        raise sec.error(key, _unknown_fact(key))
    return _compile_fact(sec, key, problems), False


def _unknown_fact(key: str) -> str:
    if key.lower() in FACT_NAMES:
        return f"unknown fact {key!r}; fact names are lower case: {key.lower()!r}"
    close = difflib.get_close_matches(key, list(FACT_NAMES) + ["any", "all", "not"], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; facts are: {', '.join(FACT_NAMES)}"
    return f"unknown fact {key!r}{hint}"


def _compile_fact(sec: Section, fact: str, problems: Problems) -> Cond:
    kind = FACT_KINDS[fact]
    attr = "f." + FACT_NAMES[fact]
    raw = sec.raw(fact)
    if isinstance(raw, dict):
        ops = sec.section(fact)
        if not ops.keys():
            raise sec.error(fact, f"empty comparison; use one of: {', '.join(OPERATORS)}")
        conds: list[Cond] = []
        for op in ops.keys():
            try:
                conds.append(_compile_op(ops, op, fact, kind, attr))
            except ConfigError as exc:
                problems.add(exc)
                conds.append(FALSE)
        return _join(conds, "and", TRUE)
    if isinstance(raw, list):
        return _any_of(_values(sec, fact, fact, kind), kind, attr)
    return _equal(_value(sec, fact, fact, kind, raw), kind, attr)


def _compile_op(ops: Section, op: str, fact: str, kind: FactKind, attr: str) -> Cond:
    if op not in OPERATORS:
        raise ops.error(op, f"unknown operator {op!r}; use one of: {', '.join(OPERATORS)}")
    raw = ops.raw(op)
    if op == "in":
        return _any_of(_values(ops, op, fact, kind), kind, attr)
    if op == "not":
        values = _values(ops, op, fact, kind) if isinstance(raw, list) else [
            _value(ops, op, fact, kind, raw)]
        return _none_of(values, kind, attr)
    if kind.kind == "bool":
        raise ops.error(op, f"{op} does not apply to {fact} (true/false); write {fact}: true or false")
    if op in _ORDER_OPS:
        if kind.kind in ("ip", "list"):
            raise ops.error(op, f"{op} does not apply to {fact} ({kind.describe()})")
        value = _value(ops, op, fact, kind, raw)
        if value is None:
            raise ops.error(op, f"{op} needs a value to compare with")
        env: dict[str, Any] = {}
        name = _bind(env, value)
        return Cond(f"({attr} is not None and {attr} {_ORDER_OPS[op]} {name})", env)
    if kind.kind == "number":
        raise ops.error(op, f"{op} does not apply to {fact} (a number); use gt, gte, lt, lte, in or not")
    if op == "prefix":
        texts = raw if isinstance(raw, list) else [raw]
        prefixes = tuple(_prefix(ops, op, fact, kind, t) for t in texts)
        if not prefixes:
            raise ops.error(op, "prefix needs a string or a list of strings")
        return _text_test("startswith", prefixes, kind, attr)
    return _compile_regex(ops, op, kind, attr)


def _compile_regex(ops: Section, op: str, kind: FactKind, attr: str) -> Cond:
    pattern = ops.raw(op)
    if not isinstance(pattern, str):
        raise ops.error(op, f"matches needs a regular expression in quotes, got {pattern!r}")
    if len(pattern) > MAX_PATTERN:
        raise ops.error(op, f"regular expression longer than {MAX_PATTERN} characters; split the rule")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ops.error(op, f"regular expression does not compile: {exc}") from None
    except RecursionError:
        raise ops.error(op, "regular expression nested too deeply") from None
    try:
        regex = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ops.error(op, f"regular expression not supported ({why}): rules must run in linear time, so "
                        "backreferences, lookahead/lookbehind and repeats over 1000 are refused") from None
    return _text_test("search", _searcher(regex), kind, attr)


def _searcher(regex: Any) -> Callable[[str], bool]:
    search = regex.search
    limit = MAX_MATCH_TEXT

    def found(text: str) -> bool:
        return search(text if len(text) <= limit else text[:limit]) is not None
    return found


# -- values -------------------------------------------------------------------------------

def _value(sec: Section, key: str, fact: str, kind: FactKind, raw: Any,
           index: int | None = None) -> Any:
    """A policy value converted to what the fact holds; ConfigError when it cannot be."""
    try:
        return _convert(fact, kind, raw)
    except ValueError as exc:
        line = sec.item_line(key, index) if index is not None else sec.line_of(key)
        raise ConfigError(str(exc), sec.path, line, sec.dotted(key)) from None


def _values(sec: Section, key: str, fact: str, kind: FactKind) -> list[Any]:
    raw = sec.raw(key)
    if not isinstance(raw, list) or not raw:
        raise sec.error(key, f"expected a list of {fact} values, got {raw!r}")
    return [_value(sec, key, fact, kind, item, i) for i, item in enumerate(raw)]


def _convert(fact: str, kind: FactKind, raw: Any) -> Any:
    if isinstance(raw, dict | list):
        raise ValueError(f"{fact} takes {kind.describe()}, not a nested list or mapping here")
    if raw is None:
        if not kind.nullable:
            raise ValueError(f"{fact} always has a value, so null never matches; expected {kind.describe()}")
        return None
    k = kind.kind
    if k == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"{fact} is true/false, got {raw!r}")
        return raw
    if k == "number":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"{fact} is {kind.describe()}, got {raw!r}")
        return raw
    if k == "digits":
        text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        if not isinstance(text, str) or not text.lstrip("+").isdigit():
            raise ValueError(f"{fact} is {kind.describe()}, got {raw!r}")
        return text.lstrip("+")
    if not isinstance(raw, str):
        raise ValueError(f"{fact} is {kind.describe()}; write {raw!r} in quotes so YAML keeps it as written")
    if k == "ip":
        try:
            return ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise ValueError(f"{raw!r} is not an IP address or network for {fact}") from None
    if kind.choices and raw not in kind.choices:
        hint = difflib.get_close_matches(raw, kind.choices, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"{raw!r} is not a value of {fact}{extra}; expected one of: {', '.join(kind.choices)}")
    return raw


def _prefix(sec: Section, key: str, fact: str, kind: FactKind, raw: Any) -> str:
    if kind.kind == "digits":
        digits = _value(sec, key, fact, kind, raw)   # ConfigError with file:line, never ValueError
        if digits is None:
            raise sec.error(key, f"prefix takes {kind.describe()}, got {raw!r}")
        return str(digits)
    if not isinstance(raw, str) or not raw:
        raise sec.error(key, f"prefix takes a non-empty string in quotes, got {raw!r}")
    return raw


# -- expressions --------------------------------------------------------------------------

def _equal(value: Any, kind: FactKind, attr: str) -> Cond:
    env: dict[str, Any] = {}
    if kind.kind == "ip":
        return _in_networks((value,), attr)
    name = _bind(env, value)
    if kind.kind == "list":
        return Cond(f"({name} in {attr})", env)
    if value is None or isinstance(value, bool):
        return Cond(f"({attr} is {name})", env)
    return Cond(f"({attr} == {name})", env)


def _any_of(values: list[Any], kind: FactKind, attr: str) -> Cond:
    if kind.kind == "ip":
        return _in_networks(tuple(v for v in values if v is not None), attr, allow_none=None in values)
    options = frozenset(values)
    if len(options) == 1 and kind.kind != "list":
        return _equal(next(iter(options)), kind, attr)
    env: dict[str, Any] = {}
    name = _bind(env, options)
    if kind.kind == "list":
        return Cond(f"(not {name}.isdisjoint({attr}))", env)
    return Cond(f"({attr} in {name})", env)


def _none_of(values: list[Any], kind: FactKind, attr: str) -> Cond:
    if kind.kind == "ip":
        inside = _in_networks(tuple(v for v in values if v is not None), attr)
        return Cond(f"({attr} is not None and not {inside.src})", inside.env)
    env: dict[str, Any] = {}
    name = _bind(env, frozenset(values))
    if kind.kind == "list":
        return Cond(f"{name}.isdisjoint({attr})", env)
    return Cond(f"({attr} is not None and {attr} not in {name})", env)


def _text_test(method: str, arg: Any, kind: FactKind, attr: str) -> Cond:
    """``startswith(prefixes)`` on the text, or a regex search (``arg(text)``); for list facts, on any item."""
    env: dict[str, Any] = {}
    name = _bind(env, arg)
    if method == "search":
        test = f"{name}({{x}})"
    else:
        test = f"{{x}}.startswith({name})"
    if kind.kind == "list":
        return Cond(f"any({test.format(x='_x')} for _x in {attr})", env)
    return Cond(f"({attr} is not None and {test.format(x=attr)})", env)


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> _Address | None:
    """Parsed once per distinct source address: trunks send from few addresses."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in_networks(nets: tuple[_Net, ...], attr: str, allow_none: bool = False) -> Cond:
    def inside(x: str | None) -> bool:
        if x is None:
            return allow_none
        address = _address(x)
        if address is None:
            return False          # a malformed source address is in no network
        return any(address in net for net in nets)
    env: dict[str, Any] = {}
    name = _bind(env, inside)
    return Cond(f"{name}({attr})", env)
