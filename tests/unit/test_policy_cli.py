"""``sipguard policy check`` / ``policy eval`` output and exit codes, and the fact tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sipguard.cli import policy as cli
from sipguard.errors import ConfigError
from sipguard.policy.facts import FACT_NAMES, Facts
from sipguard.policy.schema import FACT_KINDS
from tests.policy_fixtures import write_policy

DATA = Path(__file__).resolve().parents[1] / "data" / "policy"
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["policy", *argv])
    return int(args.func(args))


def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("check", str(EXAMPLE)) == 0
    assert capsys.readouterr().out == "ok: 13 rules\n"


def test_check_prints_every_problem_as_file_line_key_message(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(DATA / "several_problems.yaml")
    assert run("check", path) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    assert lines[1] == f"{path}:5: rules[0].when.caller.dno: caller.dno is true/false, got 'maybe'"


def test_check_with_config_reads_the_redress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_policy(tmp_path, "blocking: {redress: {}}\n", "config.yaml")
    assert run("check", str(EXAMPLE), "-c", config) == 1
    assert "603+ carries the operator's redress contact" in capsys.readouterr().out
    good = write_policy(tmp_path, "blocking: {redress: {url: 'https://e.net/r'}}\n" + LIMITS, "good.yaml")
    assert run("check", str(EXAMPLE), "--config", good) == 0


# the limiters the example policy's rules name
LIMITS = "limits: {per_caller: {key: caller, rate: 10/min}, per_trunk: {key: trunk, rate: 5/s}}\n"


def test_check_with_config_finds_names_the_config_does_not_define(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A rule naming a trunk or a limiter the config lacks can never fire: reported on its
    line with the name it probably meant."""
    policy = write_policy(tmp_path, """\
        version: 1
        rules:
          - name: slow-down
            when: {limited: [per_calller]}
            action: reject
            status: 503
          - name: carrier
            when:
              any:
                - trunk: carier-a
                - trunk: {in: [carrier-b, nobody]}
            action: forward
          - name: fine
            when: {trunk: carrier-a, limited: per_trunk, trunk.role: foreign}
            action: forward
        """)
    config = write_policy(tmp_path, "trunks: [{id: carrier-a}, {id: carrier-b}]\n" + LIMITS, "config.yaml")
    assert run("check", policy, "-c", config) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{policy}:4: rules[0].when.limited: no limiter named 'per_calller' in the config, so this condition "
        "never matches; did you mean 'per_caller'?",
        f"{policy}:10: rules[1].when.any[0].trunk: no trunk named 'carier-a' in the config, so this condition "
        "never matches; did you mean 'carrier-a'?",
        f"{policy}:11: rules[1].when.any[1].trunk.in: no trunk named 'nobody' in the config, so this "
        "condition never matches; the config has: carrier-a, carrier-b",
    ]
    assert run("check", policy) == 0        # without the config there is nothing to compare with


def test_eval_prints_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("eval", str(EXAMPLE), "trunk.role=foreign", "caller.us=true", "verstat=No-TN-Validation",
               "trunk.rmd=listed") == 0
    decision = json.loads(capsys.readouterr().out)
    assert (decision["action"], decision["rule"], decision["sign"]) == ("forward", "sign-unsigned", True)
    assert run("eval", str(EXAMPLE), "limited=per_trunk,per_caller", "emergency=true") == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["action"] == "forward" and decision["would"]["status"] == 503


@pytest.mark.parametrize("pair", ["caller.us=yes", "nonsense=1", "verstat"])
def test_eval_refuses_bad_facts(pair: str) -> None:
    with pytest.raises(ConfigError):
        run("eval", str(EXAMPLE), pair)


def test_every_fact_has_a_kind_and_a_field() -> None:
    assert set(FACT_KINDS) == set(FACT_NAMES)
    fields = set(Facts.__dataclass_fields__)
    assert set(FACT_NAMES.values()) <= fields
