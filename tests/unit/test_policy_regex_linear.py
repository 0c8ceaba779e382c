"""Policy regexes run in linear time (RE2): a pattern cannot hang a worker, patterns that need
backtracking are refused at load with file:line, and a value is searched in a bounded prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard.policy import check_policy, load_policy
from sipguard.policy.facts import Facts
from tests.policy_fixtures import REDRESS


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.timeout(60)   # a hang guard for the starting commit, not a speed assertion
def test_catastrophic_regex_runs_in_linear_time(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nrules:\n  - name: aaa\n    action: forward\n"
                 "    when: {trunk: {matches: '^(a+)+$'}}\n")
    policy = load_policy(path, REDRESS)
    assert policy.evaluate(Facts(trunk="a" * 60 + "!")).rule is None     # 2^60 steps with backtracking
    assert policy.evaluate(Facts(trunk="a" * 60)).rule == "aaa"


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=1202)", "(?<!1)202", r"(?P<x>a)(?P=x)"])
def test_backtracking_only_regexes_are_refused_at_load(tmp_path: Path, pattern: str) -> None:
    path = write(tmp_path, "version: 1\nrules:\n  - name: r\n    action: forward\n"
                 f"    when:\n      caller: {{matches: '{pattern}'}}\n")
    problems = check_policy(path)
    assert [(p.line, p.key) for p in problems] == [(6, "rules[0].when.caller.matches")]
    assert problems[0].message.startswith("regular expression not supported (")
    assert "linear time" in problems[0].message


def test_regex_searches_a_bounded_prefix_of_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nrules:\n  - name: x\n    action: forward\n"
                 "    when: {notice: {matches: 'x'}}\n")
    policy = load_policy(path, REDRESS)
    assert policy.evaluate(Facts(notice="a" * 1000 + "x")).rule == "x"
    assert policy.evaluate(Facts(notice="a" * 5000 + "x")).rule is None
