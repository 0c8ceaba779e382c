"""docs/reference.md is what docs/make_reference.py writes from the code, so it lists every
command, option, config key, policy fact, operator, reason code, replay field and metric
there is, each with a description (the script stops on a name it cannot describe)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reference.md"


def generated() -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, str(REPO / "docs" / "make_reference.py")], capture_output=True,
                         text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_reference_is_the_generated_one() -> None:
    assert DOC.read_text() == generated(), "run: python docs/make_reference.py > docs/reference.md"


def test_the_reference_names_everything_users_see() -> None:
    from sipguard.jsonschema import config_keys
    from sipguard.observe.metrics import SPECS
    from sipguard.policy.conditions import OPERATORS
    from sipguard.policy.facts import FACT_NAMES
    from sipguard.shaken.reasons import Reason

    text = DOC.read_text()
    for section, keys in config_keys().items():
        prefix = section.replace(".*", ".NAME")
        for key in keys:
            assert f"`{prefix + '.' if prefix else ''}{key}`" in text, (section, key)
    for name in [*FACT_NAMES, *OPERATORS, *(r.value for r in Reason)]:
        assert f"`{name}`" in text, name
    for spec in SPECS:
        assert spec.name in text, spec.name
    for command in ("serve", "check-config", "policy check", "replay", "rmd import", "dno import", "list add",
                    "notice add", "traceback", "numbers refresh", "schema"):
        assert f"### sipguard {command}\n" in text, command
    for option in ("--trunk", "--any-source", "--shared-port", "--x5u-map", "--compare", "--from-nanpa"):
        assert f"`{option}" in text, option


def test_readme_and_example_config_point_to_the_reference() -> None:
    assert "docs/reference.md" in (REPO / "README.md").read_text()
    assert "docs/reference.md" in (REPO / "config" / "sipguard.example.yaml").read_text()
    assert "CONTRACT.md" not in (REPO / "config" / "sipguard.example.yaml").read_text()
