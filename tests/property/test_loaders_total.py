"""Every loader is total: whatever a file holds, the config, policy and dataset loaders either
load it or raise their typed error (ConfigError, file:line) - never RecursionError, ValueError,
TypeError ... that would stop a worker (README, "A bad file never stops calls").

Inputs: random bytes, random text built from YAML's punctuation (brackets, anchors, aliases,
tags), and random nested structures over the keys the config and policy files use.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sipguard.config import TOP_KEYS, load_config
from sipguard.errors import ConfigError
from sipguard.policy import check_policy, load_policy
from sipguard.policy.conditions import OPERATORS
from sipguard.policy.facts import FACT_NAMES
from sipguard.store.datasets import (
    parse_dno,
    parse_file,
    parse_lists,
    parse_ocn_map,
    parse_removed,
    parse_rmd,
)
from sipguard.yamlconf import load
from tests.policy_fixtures import REDRESS

WORK = Path(tempfile.mkdtemp(prefix="sipguard-loaders-"))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

YAML_TOKENS = st.sampled_from([
    "[", "]", "{", "}", ",", ":", ": ", "- ", "\n", "  ", "&a ", "*a", "&b ", "*b", "<<: ", "!!int ",
    "!!float ", "!!timestamp ", "!!binary ", "!!map ", "!!str ", "? ", "|", ">", "'", '"', "#", "---\n",
    ".nan", ".inf", "-.inf", "1e400", "9" * 30, "-" + "9" * 400, "workers: ", "2026-13-45", "not: ", "any: ", "all: ", "version: 1\n",
    "rules:\n", "  - name: r\n", "    when: ", "matches: ", "'(a+)+$'", "trunks: ", "store_timeout: ",
    "caller.us: ", "true", "null", "~", "\t", "\x00", "\ufeff", "\ud800", "é",
])
KEYS = st.sampled_from([*TOP_KEYS, *FACT_NAMES, *OPERATORS, "any", "all", "not", "version", "rules", "name",
                        "when", "action", "status", "tag", "sources", "id", "role", "x5u", "<<"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from(["forward", "reject", "foreign", "udp://127.0.0.1:5060", "10.0.0.0/8",
                                     "sip:127.0.0.1", "memory", "(a+)+$", "^1(202|212)"]))
STRUCTURES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=40)


def write(name: str, data: bytes) -> str:
    path = WORK / name
    path.write_bytes(data)
    return str(path)


def only_config_errors(path: str) -> None:
    """Every YAML entry point on ``path``: success or ConfigError naming the file."""
    for read in (load, load_config, lambda p: load_policy(p, REDRESS)):
        try:
            read(path)
        except ConfigError as exc:
            assert exc.path is not None and str(exc).startswith(exc.path)
    for problem in check_policy(path, REDRESS):
        assert isinstance(problem, ConfigError) and problem.path is not None


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    only_config_errors(write("bytes.yaml", data))


@SETTINGS
@given(st.lists(YAML_TOKENS, max_size=60))
def test_yaml_punctuation(tokens: list[str]) -> None:
    only_config_errors(write("tokens.yaml", "".join(tokens).encode("utf-8", "surrogatepass")))


@SETTINGS
@given(st.dictionaries(KEYS, STRUCTURES, max_size=6),
       st.one_of(st.integers(min_value=0, max_value=80), st.integers(min_value=900, max_value=3000)))
@example({"caller": {"prefix": False}}, 0)   # found by CI: a digits prefix's ValueError escaped
@example({"caller": {"prefix": None}}, 0)    # and null read as the prefix "None"
def test_nested_structures(root: dict[str, Any], depth: int) -> None:
    text = yaml.safe_dump(root, allow_unicode=True)
    only_config_errors(write("structure.yaml", text.encode("utf-8", "surrogatepass")))
    # the same document under `depth` levels of `not:` / lists
    nested = "version: 1\nrules:\n  - name: r\n    action: forward\n    when: " + "{not: " * depth \
        + yaml.safe_dump(root, default_flow_style=True, width=10**9).strip() + "}" * depth + "\n"
    only_config_errors(write("nested.yaml", nested.encode("utf-8", "surrogatepass")))


@SETTINGS
@given(st.binary(max_size=600))
def test_dataset_parsers(data: bytes) -> None:
    path = write("dataset.csv", data)
    for parse in (parse_rmd, parse_removed, parse_ocn_map, parse_dno, parse_lists):
        try:
            parse_file(parse, path)
        except ConfigError as exc:
            assert exc.path == path
