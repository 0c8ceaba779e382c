"""Helpers for the policy tests: write a policy text to a file and load it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from sipguard.policy import Policy, Redress, load_policy

REDRESS = Redress(url="https://example.net/blocked-calls", tel="+18005550100", email="noc@example.net")


def write_policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def policy_of(tmp_path: Path, text: str, redress: Redress = REDRESS) -> Policy:
    return load_policy(write_policy(tmp_path, text), redress)


def one_rule(tmp_path: Path, when: str, action: str = "action: reject\nclass: deterministic") -> Policy:
    """A policy whose only rule ``hit`` has the given ``when`` (a YAML flow mapping)."""
    body = "".join(f"    {line}\n" for line in action.splitlines())
    text = f"version: 1\nrules:\n  - name: hit\n    when: {when}\n{body}"
    return load_policy(write_policy(tmp_path, text), REDRESS)


def nested_not(depth: int) -> str:
    """A hostile policy: one rule whose condition is ``not:`` inside ``not:``, ``depth`` times."""
    return ("version: 1\nrules:\n  - name: deep\n    action: forward\n    when: "
            + "{not: " * depth + "{caller.us: true}" + "}" * depth + "\n")


def laughs(levels: int) -> str:
    """A "billion laughs" policy: each anchor is a list of nine aliases of the one before."""
    lines = ["version: 1", "x0: &a0 {caller.us: true}"]
    for i in range(1, levels):
        lines.append(f"x{i}: &a{i} " + "{any: [" + ", ".join([f"*a{i - 1}"] * 9) + "]}")
    lines += ["rules:", "  - name: boom", "    action: forward", f"    when: *a{levels - 1}"]
    return "\n".join(lines) + "\n"
