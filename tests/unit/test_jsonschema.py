"""The JSON Schemas editors use (``sipguard schema config|policy``, docs/schema/) accept every
shipped config and policy, refuse a misspelt key where the loader does, and the files in
docs/schema/ are what the command prints."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from sipguard.jsonschema import config_keys, render

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "config").glob("sipguard*.yaml"))
POLICIES = [REPO / "config" / "policy.example.yaml", *sorted((REPO / "config" / "policies").glob("*.yaml"))]


def schema(which: str) -> dict:  # type: ignore[type-arg]
    return json.loads(render(which))


@pytest.mark.parametrize("which", ["config", "policy"])
def test_the_published_files_are_what_the_command_prints(which: str) -> None:
    published = REPO / "docs" / "schema" / f"{which}.schema.json"
    assert published.read_text() == render(which), "run: sipguard schema {which} > docs/schema/{which}.schema.json"
    jsonschema.Draft202012Validator.check_schema(json.loads(published.read_text()))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), schema("config"))


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_shipped_policies_are_valid(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), schema("policy"))


@pytest.mark.parametrize("data", [
    {"listen": ["udp://127.0.0.1:5060"], "trunks": [{"id": "a", "sources": ["10.0.0.1"], "sorces": []}]},
    {"shaken": {"x5u": {"timout": 2}}},
    {"proxy": {"drain_timout": 3}},
    {"limits": {"per_caller": {"key": "caller", "rate": "1/s", "bust": 3}}},
    {"workers": "two"},
])
def test_a_misspelt_config_key_or_wrong_type_is_refused(data: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema("config"))


@pytest.mark.parametrize("rule", [
    {"name": "x", "when": {"caller.dnoo": True}, "action": "reject"},
    {"name": "x", "when": {"caller.dno": "maybe"}, "action": "reject"},
    {"name": "x", "when": {"verstat": {"equals": "TN-Validation-Failed"}}, "action": "reject"},
    {"name": "x", "when": {"attest": "D"}, "action": "forward"},
    {"name": "x", "action": "reject", "status": 999},
    {"name": "x", "action": "drop"},
])
def test_a_wrong_policy_rule_is_refused(rule: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "rules": [rule]}, schema("policy"))


def test_config_keys_come_from_the_readers() -> None:
    from sipguard.config import PROXY_KEYS, TOP_KEYS, TRUNK_KEYS

    keys = config_keys()
    assert keys[""] == list(TOP_KEYS) and keys["trunks[]"] == list(TRUNK_KEYS) and keys["proxy"] == list(PROXY_KEYS)
    assert "trunk_fetch_burst" in keys["shaken.x5u"]
