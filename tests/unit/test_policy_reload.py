"""Hot reload: PolicyHolder swaps whole policies under traffic and refuses broken files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sipguard.errors import ConfigError
from sipguard.policy import PolicyHolder
from sipguard.policy.facts import Facts
from tests.policy_fixtures import REDRESS


def generation(gen: str, padding: int) -> str:
    """A policy whose every rule tags X-Gen: <gen>; ``padding`` makes sizes differ."""
    rules = "".join(
        f"  - name: r{i}\n    when: {{trunk: t{i}}}\n    action: forward\n"
        f"    tag: {{headers: {{X-Gen: {gen}, X-Rule: r{i}}}}}\n" for i in range(5))
    return f"# {'#' * padding}\nversion: 1\ndefault: {{action: forward, tag: {{headers: {{X-Gen: {gen}}}}}}}\nrules:\n{rules}"


def replace_file(path: Path, text: str) -> None:
    """How editors and config managers write: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def gen_of(decision_tag: object) -> str:
    headers = dict(getattr(decision_tag, "headers", ()))
    return headers["X-Gen"]


def test_swaps_under_traffic_never_show_half_a_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(generation("A", 1))
    holder = PolicyHolder(str(path), REDRESS)
    swaps = 60
    results: list[bool | ConfigError] = []

    def reloader() -> None:
        for i in range(swaps):
            replace_file(path, generation("B" if i % 2 == 0 else "A", 2 + i % 2))
            results.append(holder.maybe_reload())

    facts = [Facts(trunk=f"t{i}") for i in range(5)] + [Facts(trunk="other")]
    seen: set[str] = set()
    thread = threading.Thread(target=reloader)
    thread.start()
    evaluations = 0
    while thread.is_alive() or evaluations == 0:
        policy = holder.current                      # read once per call, as the proxy does
        gens = {gen_of(policy.evaluate(f).tag) for f in facts}
        assert len(gens) == 1, f"one call saw rules of two policies: {gens}"
        seen |= gens
        evaluations += 1
    thread.join()
    assert results == [True] * swaps
    assert seen <= {"A", "B"}
    assert gen_of(holder.current.evaluate(Facts()).tag) == "A"     # the last file written


def test_invalid_file_keeps_the_running_policy_and_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(generation("A", 1))
    holder = PolicyHolder(str(path), REDRESS)
    running = holder.current
    assert holder.maybe_reload() is False                 # unchanged

    replace_file(path, "version: 1\nrules:\n  - name: x\n    when: {caller.us: maybe}\n    action: reject\n")
    error = holder.maybe_reload()
    assert isinstance(error, ConfigError)
    assert str(error) == f"{path}:4: rules[0].when.caller.us: caller.us is true/false, got 'maybe'"
    assert holder.current is running
    assert holder.maybe_reload() is False                 # the same broken file is reported once
    assert isinstance(holder.maybe_reload(force=True), ConfigError)   # SIGHUP retries

    replace_file(path, generation("B", 5))
    assert holder.maybe_reload() is True
    assert gen_of(holder.current.evaluate(Facts()).tag) == "B"


def test_deleted_file_keeps_the_running_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(generation("A", 1))
    holder = PolicyHolder(str(path), REDRESS)
    running = holder.current
    path.unlink()
    error = holder.maybe_reload()
    assert isinstance(error, ConfigError) and error.message.startswith("cannot read policy file")
    assert holder.maybe_reload() is False and holder.current is running
    path.write_text(generation("B", 3))
    assert holder.maybe_reload() is True


def test_hit_counters_carry_over_a_reload_by_rule_name(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(generation("A", 1))
    holder = PolicyHolder(str(path), REDRESS)
    for _ in range(3):
        holder.current.evaluate(Facts(trunk="t1"))
    holder.current.evaluate(Facts())
    replace_file(path, generation("B", 4).replace("name: r1\n", "name: renamed\n"))
    assert holder.maybe_reload() is True
    hits = holder.current.hits()
    assert hits["renamed"] == 0 and hits["default"] == 1 and "r1" not in hits


def test_holder_start_with_a_broken_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("rules: []\n")
    try:
        PolicyHolder(str(path), REDRESS)
    except ConfigError as exc:
        assert exc.key == "version"
    else:
        raise AssertionError("a policy without version loaded")
