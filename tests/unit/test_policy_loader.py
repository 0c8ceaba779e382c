"""Policy files with mistakes (tests/data/policy/): each gives the exact message, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard.errors import ConfigError
from sipguard.policy import Redress, check_policy, load_policy
from tests.policy_fixtures import REDRESS, write_policy

DATA = Path(__file__).resolve().parents[1] / "data" / "policy"

BROKEN: list[tuple[str, int, str | None, str]] = [
    ('bad_mode.yaml', 2, 'mode',
     "'observe' is not one of: enforce, shadow"),
    ('bad_regex.yaml', 5, 'rules[0].when.caller.matches',
     'regular expression does not compile: missing ), unterminated subpattern at position 2'),
    ('bad_status.yaml', 6, 'rules[0].status',
     'status must be a SIP failure code (400-699) or 603+, got 299'),
    ('bad_to.yaml', 6, 'rules[0].to',
     "'http://198.51.100.1:5060' is not a SIP URI like sip:192.0.2.10:5060 or sip:sbc.example.net"),
    ('bad_version.yaml', 1, 'version',
     'unsupported policy version 2; this sipguard reads version 1'),
    ('condition_outside_when.yaml', 4, 'rules[0].caller.dno',
     'unknown rule key (conditions go under when:); expected one of: name, description, when, action, status, reason, class, retry_after, sign, tag, to'),
    ('duplicate_names.yaml', 7, 'rules[1].name',
     "duplicate rule name 'dno' (first used at line 3)"),
    ('empty_any.yaml', 5, 'rules[0].when.any',
     'any: needs a list of one or more conditions'),
    ('managed_header.yaml', 8, 'rules[0].tag.headers.Via',
     'Via is managed by sipguard; a tag cannot set it'),
    ('missing_version.yaml', 1, 'version',
     'required key is missing'),
    ('null_for_bool.yaml', 4, 'rules[0].when.caller.dno',
     'caller.dno always has a value, so null never matches; expected true/false'),
    ('order_on_bool.yaml', 5, 'rules[0].when.caller.dno.gt',
     'gt does not apply to caller.dno (true/false); write caller.dno: true or false'),
    ('quote_in_reason.yaml', 7, 'rules[0].reason',
     'reason text may not contain quotes, backslashes or control characters'),
    ('reserved_name.yaml', 3, 'rules[0].name',
     "'default' is reserved for the default action"),
    ('retry_after_without_503.yaml', 7, 'rules[0].retry_after',
     'retry_after goes with status: 503 only'),
    ('sign_on_reject.yaml', 6, 'rules[0].sign',
     'sign applies to action: forward only; this rule rejects'),
    ('status_on_forward.yaml', 6, 'rules[0].status',
     'status applies to action: reject only; this rule forwards'),
    ('unknown_action.yaml', 5, 'rules[0].action',
     "'block' is not one of: reject, forward"),
    ('unknown_fact.yaml', 4, 'rules[0].when.caller.US',
     "unknown fact 'caller.US'; fact names are lower case: 'caller.us'"),
    ('unknown_fact_typo.yaml', 6, 'rules[0].when.caller.dnoo',
     "unknown fact 'caller.dnoo'; did you mean 'caller.dno'?"),
    ('unknown_operator.yaml', 6, 'rules[0].when.caller.startswith',
     "unknown operator 'startswith'; use one of: gt, gte, lt, lte, not, in, prefix, matches"),
    ('unknown_status.yaml', 6, 'rules[0].status',
     '499 is not a SIP response code sipguard knows; use one of: 400, 401, 402, 403, 404, 405, 406, 407, 408, 410, 413, 414, 415, 416, 420, 421, 428, 433, 436, 437, 438, 480, 484, 485, 486, 487, 488, 500, 501, 502, 503, 504, 600, 603, 604, 606, 607, 608 or 603+'),
    ('unquoted_frn.yaml', 4, 'rules[0].when.trunk.frn',
     'trunk.frn is a text value; write 12345678 in quotes so YAML keeps it as written'),
    ('unreachable.yaml', 6, 'rules[1]',
     "rule 'dno' can never match: rule 'everything' (line 3) above it has no conditions and matches every call"),
    ('wrong_enum_value.yaml', 5, 'rules[0].when.trunk.rmd',
     "'unlisted' is not a value of trunk.rmd (did you mean 'listed'?); expected one of: listed, removed, absent"),
    ('wrong_type_bool.yaml', 5, 'rules[0].when.caller.us',
     "caller.us is true/false, got 'yes'"),
    ('yaml_syntax.yaml', 5, None,
     "invalid YAML: expected ',' or '}', but got ':'"),
]


@pytest.mark.parametrize(("name", "line", "key", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_policy_file(name: str, line: int, key: str | None, message: str) -> None:
    path = str(DATA / name)
    problems = check_policy(path)
    assert [(p.path, p.line, p.key, p.message) for p in problems] == [(path, line, key, message)]
    with pytest.raises(ConfigError) as info:
        load_policy(path, REDRESS)
    where = f"{path}:{line}" + (f": {key}" if key else "")
    assert str(info.value) == f"{where}: {message}"


def test_every_broken_file_is_in_the_table() -> None:
    listed = {b[0] for b in BROKEN} | {"several_problems.yaml"}
    assert {p.name for p in DATA.glob("*.yaml")} == listed


def test_check_reports_every_problem_in_file_order() -> None:
    problems = check_policy(str(DATA / "several_problems.yaml"))
    assert [(p.line, p.key) for p in problems] == [
        (2, "default.status"),
        (5, "rules[0].when.caller.dno"),
        (8, "rules[1].when.verstat"),
        (8, "rules[1].when.attest"),
        (10, "rules[1].tag.display_prefix"),
        (11, "rules[2].name"),
        (12, "rules[2].when.source.ip"),
        (14, "rules[2].class"),
    ]
    # load_policy stops at the first
    with pytest.raises(ConfigError) as info:
        load_policy(str(DATA / "several_problems.yaml"), REDRESS)
    assert info.value.line == 2


def test_603_plus_needs_a_redress_contact(tmp_path: Path) -> None:
    path = write_policy(tmp_path, """\
        version: 1
        rules:
          - name: burst
            when: {limited: per_caller}
            action: reject
            class: analytics
        """)
    assert check_policy(path) == []                     # no config given: not checked
    problems = check_policy(path, Redress())
    assert [str(p) for p in problems] == [
        f"{path}:6: rules[0].class: 603+ carries the operator's redress contact: set blocking.redress "
        "(url, tel or email) in the config"]
    with pytest.raises(ConfigError):
        load_policy(path, Redress())
    assert load_policy(path, REDRESS).rule_names() == ("burst",)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    problems = check_policy(str(tmp_path / "nope.yaml"))
    assert len(problems) == 1 and problems[0].message.startswith("cannot read file")


def test_catch_all_last_is_fine_and_nested_always_true_counts(tmp_path: Path) -> None:
    ok = write_policy(tmp_path, "version: 1\nrules:\n  - {name: a, when: {caller.dno: true}, action: reject}\n"
                      "  - {name: rest, action: forward, sign: true}\n", "ok.yaml")
    assert check_policy(ok) == []
    nested = write_policy(tmp_path, "version: 1\nrules:\n  - {name: a, when: {all: [{}]}, action: forward}\n"
                          "  - {name: b, when: {caller.dno: true}, action: reject}\n", "nested.yaml")
    assert [p.key for p in check_policy(nested)] == ["rules[1]"]


ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [ROOT / "config" / "policy.example.yaml", *sorted((ROOT / "config" / "policies").glob("*.yaml"))]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_shipped_examples_are_valid(example: Path) -> None:
    assert len(EXAMPLES) == 4
    assert check_policy(str(example), REDRESS) == []
