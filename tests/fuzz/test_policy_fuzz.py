"""Bounded fuzzing of policy loading (sipguard/policy/loader.py over sipguard/yamlconf.py).

An operator's policy file is hostile input too (a typo, a half-saved file, a file someone
else wrote): whatever the document, ``load_policy`` gives a ``Policy`` or raises the
loader's ``ConfigError`` (file:line:key), ``check_policy`` returns ConfigErrors and raises
nothing, and a policy that loads decides every call. Nothing else may escape: a TypeError
or RecursionError would stop ``serve`` at start or at SIGHUP with a traceback instead of a
message naming the line. Documents are generated (hypothesis, policy-shaped keys and any
values) and mutated from the policy files in this repository.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.errors import ConfigError
from sipguard.policy import Policy, check_policy, load_policy
from sipguard.policy.conditions import OPERATORS
from sipguard.policy.decision import Decision
from sipguard.policy.facts import FACT_NAMES, Facts
from sipguard.policy.loader import RULE_KEYS, TOP_KEYS
from tests.fuzz.mutation import mutate
from tests.policy_fixtures import REDRESS

# The ONLY exception a policy file may cause. Anything else escaping the loader is a bug.
ALLOWED = (ConfigError,)

ROOT = Path(__file__).resolve().parents[2]
BROKEN_POLICIES = sorted((ROOT / "tests" / "data" / "policy").glob("*.yaml"))
GOOD_POLICIES = sorted((ROOT / "config" / "policies").glob("*.yaml")) + [ROOT / "config" / "policy.example.yaml"]
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MUTANTS = 600
CALLS = (Facts(), Facts(verstat="TN-Validation-Failed", attest="C", caller="12025550123", caller_us=True,
                        trunk="carrier-a", reasons=("bad-signature",), limited=("a",)))


def outcome(path: str) -> str:
    """Load ``path`` both ways; 'ok' or 'config-error'. Any other exception propagates."""
    problems = check_policy(path, REDRESS)
    assert all(isinstance(p, ConfigError) for p in problems)
    try:
        policy = load_policy(path, REDRESS)
    except ALLOWED:
        assert problems, "load_policy refused a file check_policy found nothing wrong with"
        return "config-error"
    assert isinstance(policy, Policy) and not problems
    for call in CALLS:
        assert isinstance(policy.evaluate(call), Decision)
    return "ok"


def outcome_of_text(text: bytes) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_bytes(text)
        return outcome(str(path))


# -- generated documents ----------------------------------------------------------------------
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 700), st.floats(allow_nan=True),
                   st.sampled_from(["A", "C", "reject", "forward", "enforce", "shadow", "deterministic",
                                    "heuristic", "603+", "sip:127.0.0.1:5070", "^1(", "[", "+1202", "a\"b",
                                    "TN-Validation-Failed", "bad-signature", "1.2.3.0/24", ""]),
                   st.text(max_size=12))
VALUE = st.recursive(SCALAR, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
    st.one_of(st.sampled_from(sorted(FACT_NAMES)), st.sampled_from(OPERATORS + ("any", "all", "not")),
              st.text(max_size=6)), kids, max_size=3), max_leaves=12)
CONDITION_KEY = st.one_of(st.sampled_from(sorted(FACT_NAMES)), st.sampled_from(("any", "all", "not")))
RULE = st.builds(lambda rule, when: {**rule, **when},
                 st.dictionaries(st.one_of(st.sampled_from(RULE_KEYS), st.text(max_size=6)), VALUE, max_size=6),
                 st.fixed_dictionaries({}, optional={"when": st.dictionaries(CONDITION_KEY, VALUE, max_size=4)}))
DOCUMENT = st.builds(
    lambda extra, doc: {**extra, **doc},
    st.dictionaries(st.sampled_from(TOP_KEYS) | st.text(max_size=6), VALUE, max_size=2),
    st.fixed_dictionaries({}, optional={
        "version": st.one_of(st.just(1), SCALAR), "mode": SCALAR,
        "default": st.one_of(VALUE, st.dictionaries(st.sampled_from(RULE_KEYS), VALUE, max_size=4)),
        "rules": st.one_of(st.lists(RULE, max_size=4), VALUE), "description": SCALAR}))


@FUZZ
@given(st.one_of(DOCUMENT, VALUE))
def test_generated_documents_load_or_raise_config_error(document: Any) -> None:
    outcome_of_text(yaml.safe_dump(document, allow_unicode=True).encode())


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_load_or_raise_config_error(text: bytes) -> None:
    outcome_of_text(text)


def test_mutated_policy_files_load_or_raise_config_error(tmp_path: Path) -> None:
    rng = random.Random(1_2026)
    good = [path.read_bytes() for path in GOOD_POLICIES]
    base = [path.read_bytes() for path in BROKEN_POLICIES] + good * (len(BROKEN_POLICIES) // len(good))
    path = tmp_path / "policy.yaml"
    seen: dict[str, int] = {}
    for _ in range(MUTANTS):
        path.write_bytes(mutate(rng, rng.choice(base)))
        label = outcome(str(path))
        seen[label] = seen.get(label, 0) + 1
    # both kinds of outcome are exercised (a mutant of a longer example policy breaks more
    # often: 44 of 600 still loaded with the 13-rule example of session 7)
    assert seen.get("ok", 0) > 25 and seen.get("config-error", 0) > 500, seen


# Deep nesting is a few bytes of YAML (or of JSON, which is YAML). PyYAML composes and
# constructs it recursively, and so does the condition compiler.
DEEP = {
    "flow-lists": b"version: 1\nrules: " + b"[" * 2000 + b"]" * 2000 + b"\n",
    "flow-mappings": b"version: 1\ndescription: " + b"{a: " * 3000 + b"b" + b"}" * 3000 + b"\n",
    "block-lists": b"version: 1\ndescription:\n" + b"".join(b" " * i + b"-\n" for i in range(2000)),
    "conditions": (b"version: 1\nrules:\n  - name: x\n    action: reject\n    when: " + b"{any: [" * 2000
                   + b"{caller.dno: true}" + b"]}" * 2000 + b"\n"),
}


@pytest.mark.parametrize("case", sorted(DEEP))
def test_deeply_nested_documents_raise_config_error(case: str) -> None:
    """These raised RecursionError out of the loader until yamlconf bounded the depth; now
    each is a ConfigError naming its line."""
    assert outcome_of_text(DEEP[case]) == "config-error"
