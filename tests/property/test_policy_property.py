"""The compiled policy agrees with a plain reference reading of the grammar.

Random ``when`` mappings (equality, any-of, not, prefix, order, nested any/all/not) over
a few facts of each kind, evaluated on random facts: the generated code must say what
the documented semantics say.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.policy import Redress, load_policy
from sipguard.policy.facts import Facts

FIELDS = {"attest": "attest", "caller": "caller", "caller.us": "caller_us", "limited": "limited", "trunk": "trunk"}
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "attest": st.sampled_from(["A", "B", "C"]),
    "caller": st.sampled_from(["1212", "12125", "1312", "44"]),
    "caller.us": st.booleans(),
    "limited": st.sampled_from(["a", "b", "c"]),
    "trunk": st.sampled_from(["t1", "t2", "x"]),
}
FACT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "attest": st.sampled_from([None, "A", "B", "C"]),
    "caller": st.sampled_from([None, "1212", "12125551234", "13125551234", "4420"]),
    "caller.us": st.booleans(),
    "limited": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3).map(tuple),
    "trunk": st.sampled_from([None, "t1", "t2", "x"]),
}
NULLABLE = {"attest", "caller", "trunk"}


@st.composite
def one_test(draw: st.DrawFn) -> tuple[str, Any]:
    fact = draw(st.sampled_from(sorted(FIELDS)))
    value = VALUES[fact]
    shape = draw(st.sampled_from(["eq", "anyof", "not", "prefix", "gt", "lte", "null"]))
    if fact == "caller.us" and shape in ("prefix", "gt", "lte"):
        shape = "eq"
    if fact == "limited" and shape in ("gt", "lte", "null"):
        shape = "anyof"
    if shape == "null" and fact not in NULLABLE:
        shape = "eq"
    if shape == "eq":
        return fact, draw(value)
    if shape == "null":
        return fact, None
    if shape == "anyof":
        return fact, draw(st.lists(value, min_size=1, max_size=3))
    if shape == "not":
        return fact, {"not": draw(st.lists(value, min_size=1, max_size=2))}
    if shape == "prefix":
        return fact, {"prefix": draw(value)[:2]}
    return fact, {shape: draw(value)}


conditions = st.recursive(
    st.lists(one_test(), min_size=1, max_size=3).map(dict),
    lambda inner: st.one_of(
        st.builds(lambda c: {"not": c}, inner),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=6,
)


def reference(when: dict[str, Any], facts: dict[str, Any]) -> bool:
    """The grammar as CONTRACT.md and conditions.py's docstring state it."""
    for key, spec in when.items():
        if key == "not":
            ok = not reference(spec, facts)
        elif key == "any":
            ok = any(reference(c, facts) for c in spec)
        elif key == "all":
            ok = all(reference(c, facts) for c in spec)
        else:
            ok = _fact(key, spec, facts[key])
        if not ok:
            return False
    return True


def _fact(fact: str, spec: Any, x: Any) -> bool:
    is_list = fact == "limited"
    if isinstance(spec, dict):
        return all(_op(op, v, x, is_list) for op, v in spec.items())
    options = spec if isinstance(spec, list) else [spec]
    return bool(set(options) & set(x)) if is_list else x in options


def _op(op: str, v: Any, x: Any, is_list: bool) -> bool:
    if op == "not":
        return not (set(v) & set(x)) if is_list else x is not None and x not in v
    if op == "prefix":
        return any(i.startswith(v) for i in x) if is_list else x is not None and x.startswith(v)
    if x is None:
        return False
    return {"gt": x > v, "lte": x <= v}[op]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(when=conditions, facts=st.fixed_dictionaries(FACT_VALUES))
def test_compiled_policy_agrees_with_the_reference(when: dict[str, Any], facts: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        # JSON is YAML: quoting every value keeps digits as text, as a careful author would.
        path.write_text("version: 1\nrules:\n  - name: hit\n    action: forward\n    when: "
                        + json.dumps(when) + "\n")
        policy = load_policy(str(path), Redress(url="https://e.net/r"))
    call = Facts(**{FIELDS[k]: v for k, v in facts.items()})
    assert (policy.evaluate(call).rule == "hit") is reference(when, facts)
