"""Compile a rule's ``when`` mapping into one predicate closure over ``Facts``.

Grammar (CONTRACT.md, policy file):

* keys of a mapping are ANDed; ``any: [..]`` / ``all: [..]`` take lists of mappings,
  ``not: {..}`` negates a mapping;
* ``fact: value`` is equality, ``fact: [a, b]`` any-of; for list facts (``reasons``,
  ``limited``) both mean "contains";
* ``fact: {op: value, ...}`` with ops ``gt gte lt lte`` (string order), ``not`` (neither
  this value nor any of these), ``in`` (any-of), ``prefix`` (string or list of strings)
  and ``matches`` (a Python regex, ``re.search``; anchor with ^ and $ if you mean it);
  several ops in one mapping are ANDed;
* a fact without a value (None) never matches a comparison, ``not`` included; write
  ``fact: null`` to ask for "has no value". (``not:`` as a *key* negates a whole
  condition, so ``not: {attest: C}`` is true when attest is None.)

Values are checked against the fact's kind (schema.py) here, at load time; evaluation
is plain attribute reads and comparisons: no parsing (except ``source.ip``'s address),
no dict walk.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from operator import attrgetter, ge, gt, le, lt
from typing import Any, cast

from sipguard.errors import ConfigError
from sipguard.policy.facts import FACT_NAMES, Facts
from sipguard.policy.model import Predicate, Problems
from sipguard.policy.schema import FACT_KINDS, FactKind
from sipguard.yamlconf import Section

OPERATORS = ("gt", "gte", "lt", "lte", "not", "in", "prefix", "matches")
_ORDER_OPS: dict[str, Callable[[Any, Any], bool]] = {"gt": gt, "gte": ge, "lt": lt, "lte": le}
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _always(_: Facts) -> bool:
    return True


def compile_when(sec: Section, problems: Problems) -> tuple[Predicate, bool]:
    """The predicate of a ``when`` mapping and whether it matches every call.

    Errors go to ``problems``; a part that fails compiles to "never matches" so the
    rest of the file can still be checked.
    """
    preds: list[Predicate] = []
    always = True
    for key in sec.keys():
        try:
            pred, is_always = _compile_key(sec, key, problems)
        except ConfigError as exc:
            problems.add(exc)
            pred, is_always = _never, False
        preds.append(pred)
        always = always and is_always
    return _and(preds), always


def _never(_: Facts) -> bool:
    return False


def _and(preds: list[Predicate]) -> Predicate:
    # Specialised small arities: most rules have one to three conditions.
    if not preds:
        return _always
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return lambda f: a(f) and b(f)
    if len(preds) == 3:
        a, b, c = preds
        return lambda f: a(f) and b(f) and c(f)
    items = tuple(preds)
    return lambda f: all(p(f) for p in items)


def _or(preds: list[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    items = tuple(preds)
    return lambda f: any(p(f) for p in items)


def _compile_key(sec: Section, key: str, problems: Problems) -> tuple[Predicate, bool]:
    if key in ("any", "all"):
        subs = cast("list[Section]", sec.sections(key))  # yamlconf's method named list confuses mypy
        if not subs:
            raise sec.error(key, f"{key}: needs a list of one or more conditions")
        parts = [compile_when(sub, problems) for sub in subs]
        preds = [p for p, _ in parts]
        if key == "all":
            return _and(preds), all(a for _, a in parts)
        return _or(preds), any(a for _, a in parts)
    if key == "not":
        if not isinstance(sec.raw(key), dict):
            raise sec.error(key, "not: takes a mapping of conditions, e.g. not: {caller.us: true}")
        inner, _ = compile_when(sec.section(key), problems)
        return (lambda f: not inner(f)), False
    if key not in FACT_NAMES:
        raise sec.error(key, _unknown_fact(key))
    return _compile_fact(sec, key, problems), False


def _unknown_fact(key: str) -> str:
    if key.lower() in FACT_NAMES:
        return f"unknown fact {key!r}; fact names are lower case: {key.lower()!r}"
    close = difflib.get_close_matches(key, list(FACT_NAMES) + ["any", "all", "not"], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; facts are: {', '.join(FACT_NAMES)}"
    return f"unknown fact {key!r}{hint}"


def _compile_fact(sec: Section, fact: str, problems: Problems) -> Predicate:
    kind = FACT_KINDS[fact]
    get = attrgetter(FACT_NAMES[fact])
    raw = sec.raw(fact)
    if isinstance(raw, dict):
        ops = sec.section(fact)
        if not ops.keys():
            raise sec.error(fact, f"empty comparison; use one of: {', '.join(OPERATORS)}")
        preds: list[Predicate] = []
        for op in ops.keys():
            try:
                preds.append(_compile_op(ops, op, fact, kind, get))
            except ConfigError as exc:
                problems.add(exc)
                preds.append(_never)
        return _and(preds)
    if isinstance(raw, list):
        values = _values(sec, fact, fact, kind)
        return _any_of(values, kind, get)
    return _equal(_value(sec, fact, fact, kind, raw), kind, get)


def _compile_op(ops: Section, op: str, fact: str, kind: FactKind,
                get: Callable[[Facts], Any]) -> Predicate:
    if op not in OPERATORS:
        raise ops.error(op, f"unknown operator {op!r}; use one of: {', '.join(OPERATORS)}")
    raw = ops.raw(op)
    if op == "in":
        return _any_of(_values(ops, op, fact, kind), kind, get)
    if op == "not":
        values = _values(ops, op, fact, kind) if isinstance(raw, list) else [
            _value(ops, op, fact, kind, raw)]
        return _none_of(values, kind, get)
    if kind.kind == "bool":
        raise ops.error(op, f"{op} does not apply to {fact} (true/false); write {fact}: true or false")
    if op in _ORDER_OPS:
        if kind.kind in ("ip", "list"):
            raise ops.error(op, f"{op} does not apply to {fact} ({kind.describe()})")
        value = _value(ops, op, fact, kind, raw)
        if value is None:
            raise ops.error(op, f"{op} needs a value to compare with")
        return _ordered(_ORDER_OPS[op], value, get)
    if op == "prefix":
        texts = raw if isinstance(raw, list) else [raw]
        prefixes = tuple(_prefix(ops, op, fact, kind, t) for t in texts)
        if not prefixes:
            raise ops.error(op, "prefix needs a string or a list of strings")
        return _text_test(lambda s: s.startswith(prefixes), kind, get)
    return _compile_regex(ops, op, kind, get)


def _compile_regex(ops: Section, op: str, kind: FactKind, get: Callable[[Facts], Any]) -> Predicate:
    pattern = ops.raw(op)
    if not isinstance(pattern, str):
        raise ops.error(op, f"matches needs a regular expression in quotes, got {pattern!r}")
    try:
        search = re.compile(pattern).search
    except re.error as exc:
        raise ops.error(op, f"regular expression does not compile: {exc}") from None
    return _text_test(lambda s: search(s) is not None, kind, get)


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
        return str(_convert(fact, kind, raw))
    if not isinstance(raw, str) or not raw:
        raise sec.error(key, f"prefix takes a non-empty string in quotes, got {raw!r}")
    return raw


# -- closures -----------------------------------------------------------------------------

def _equal(value: Any, kind: FactKind, get: Callable[[Facts], Any]) -> Predicate:
    if kind.kind == "list":
        return lambda f: value in get(f)
    if kind.kind == "ip":
        return _in_networks((value,), get)
    if value is None or isinstance(value, bool):
        return lambda f: get(f) is value
    return lambda f: get(f) == value


def _any_of(values: list[Any], kind: FactKind, get: Callable[[Facts], Any]) -> Predicate:
    if kind.kind == "ip":
        return _in_networks(tuple(v for v in values if v is not None), get, allow_none=None in values)
    options = frozenset(values)
    if kind.kind == "list":
        return lambda f: not options.isdisjoint(get(f))
    if len(options) == 1:
        return _equal(next(iter(options)), kind, get)
    return lambda f: get(f) in options


def _none_of(values: list[Any], kind: FactKind, get: Callable[[Facts], Any]) -> Predicate:
    if kind.kind == "list":
        options = frozenset(values)
        return lambda f: options.isdisjoint(get(f))
    if kind.kind == "ip":
        inside = _in_networks(tuple(v for v in values if v is not None), get)
        return lambda f: get(f) is not None and not inside(f)
    excluded = frozenset(values)
    return lambda f: (x := get(f)) is not None and x not in excluded


def _ordered(compare: Callable[[Any, Any], bool], value: str, get: Callable[[Facts], Any]) -> Predicate:
    return lambda f: (x := get(f)) is not None and compare(x, value)


def _text_test(test: Callable[[str], bool], kind: FactKind, get: Callable[[Facts], Any]) -> Predicate:
    if kind.kind == "list":
        return lambda f: any(test(item) for item in get(f))
    return lambda f: (x := get(f)) is not None and test(x)


def _in_networks(nets: tuple[_Net, ...], get: Callable[[Facts], Any], allow_none: bool = False) -> Predicate:
    def match(f: Facts) -> bool:
        x = get(f)
        if x is None:
            return allow_none
        try:
            address = ipaddress.ip_address(x)
        except ValueError:
            return False          # a malformed source address is in no network
        return any(address in net for net in nets)
    return match
