"""``sipguard check-config`` reports every problem at once, each as ``file:line: key: message``:
every wrong value of the config (a section's reader goes on past a wrong value that has a
default), every problem of the policy, the trunks and limiters the policy names, and the
signing key by config line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sipguard.config import TOP_KEYS
from sipguard.config_check import check_config

NOW = 1_790_000_000.0

# one wrong value for every top-level key: each must be reported, whatever else is wrong
BAD = {
    "listen": "listen: ['udp://127.0.0.1:5060', 'ws://x']",
    "mode": "mode: relay",
    "next_hop": "next_hop: 'http://10.0.0.1'",
    "unknown_source": "unknown_source: maybe",
    "trusted_proxies": "trusted_proxies: [not-an-ip]",
    "trunks": "trunks: [{id: a, sources: [10.0.0.1]}, {id: b}]",
    "store": "store: 'mongo://x'",
    "store_failure": "store_failure: sometimes",
    "store_timeout": "store_timeout: 100",
    "datasets": "datasets: {dno: [1, 2]}",
    "shaken": "shaken: {iat_max_age: 0}",
    "blocking": "blocking: {redirect: 1}",
    "limits": "limits: {per_x: {key: nope, rate: 1/s}}",
    "policy": "policy: [a]",
    "traceback": "traceback: {keep: 1}",
    "http": "http: {port: 1}",
    "proxy": "proxy: {relay: 1}",
    "log": "log: {colour: 1}",
    "workers": "workers: 0",
    "tls": "tls: {cert_file: x}",
    "analytics": "analytics: {campaign: {fanout: {window: 0, callees: 50}}}",
    "upstreams": "upstreams: {score_window: 5}",
}


def write(folder: Path, text: str, name: str = "sipguard.yaml") -> str:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_every_top_level_key_has_a_wrong_value_here() -> None:
    assert set(BAD) == set(TOP_KEYS)


@pytest.mark.parametrize("key", TOP_KEYS)
def test_each_section_is_checked_on_its_own(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, BAD[key] + "\n")
    problems = check_config(path, NOW)
    assert problems and all(str(p).startswith(f"{path}:1: {key}") for p in problems), problems


def test_all_problems_at_once_in_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, "\n".join([*BAD.values(), "colour: blue"]) + "\n")
    problems = [str(p) for p in check_config(path, NOW)]
    keys = [p.split(": ")[1].split(".")[0].split("[")[0] for p in problems]
    assert set(keys) == {*TOP_KEYS, "colour"}, problems
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines)
    assert f"{path}:6: trunks[1].sources: a trunk needs at least one source address or CIDR" in problems


def test_policy_problems_and_names_follow_the_config_problems(tmp_path: Path) -> None:
    policy = write(tmp_path, """\
        version: 1
        rules:
          - name: slow-down
            when: {limited: [per_calller]}
            action: reject
            status: 503
          - name: carrier
            when: {trunk: carier-a, caller.dnoo: true}
            action: forward
        """, "policy.yaml")
    path = write(tmp_path, """\
        mode: relay
        trunks: [{id: carrier-a, sources: [10.0.0.1]}]
        limits: {per_caller: {key: caller, rate: 1/s}}
        policy: policy.yaml
        """)
    problems = [str(p) for p in check_config(path, NOW)]
    assert problems == [
        f"{path}:1: mode: 'relay' is not one of: proxy, redirect",
        f"{policy}:4: rules[0].when.limited: no limiter named 'per_calller' in the config, so this condition "
        "never matches; did you mean 'per_caller'?",
        f"{policy}:8: rules[1].when.caller.dnoo: unknown fact 'caller.dnoo'; did you mean 'caller.dno'?",
        f"{policy}:8: rules[1].when.trunk: no trunk named 'carier-a' in the config, so this condition never "
        "matches; did you mean 'carrier-a'?",
    ]


def test_a_missing_signing_key_is_named_by_config_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        shaken:
          signing:
            key: keys/missing.key
            cert: keys/missing.pem
            x5u: https://certs.example.net/s.pem
        """)
    problems = [str(p) for p in check_config(path, NOW)]
    assert problems == [f"{path}:3: shaken.signing.key: cannot read {tmp_path / 'keys' / 'missing.key'}: "
                        "No such file or directory"]


def test_the_command_prints_each_problem_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, "mode: relay\nworkers: 0\n")
    run = subprocess.run([sys.executable, "-m", "sipguard", "check-config", path], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [f"{path}:1: mode: 'relay' is not one of: proxy, redirect",
                                       f"{path}:2: workers: must be >= 1, got 0",
                                       f"sipguard check-config: 2 problems in {path}"]


def test_every_wrong_value_of_a_section_is_reported_not_only_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        proxy:
          max_pending: -5
          shed_delay: abc
          colour: 1
        shaken:
          iat_max_age: 0
          x5u_timeout: -1
        trunks:
          - 7
          - {id: b, sources: [10.0.0.1], nope: 1}
        """)
    problems = [str(p) for p in check_config(path, NOW)]
    assert problems[:3] == [
        f"{path}:2: proxy.max_pending: must be >= 1, got -5",
        f"{path}:3: proxy.shed_delay: expected a number, got 'abc'",
        f"{path}:4: proxy.colour: unknown key; expected one of: " + problems[2].split("expected one of: ")[1],
    ]
    assert f"{path}:6: shaken.iat_max_age: must be >= 1, got 0" in problems
    assert any(p.startswith(f"{path}:7: shaken.x5u_timeout: unknown key") for p in problems)
    assert f"{path}:9: trunks: item 1 should be a mapping, got 7" in problems
    assert any(p.startswith(f"{path}:10: trunks[1].nope: unknown key") for p in problems), problems
    assert len(problems) == len(set(problems)) == 7, problems


def test_serve_and_reload_still_stop_at_the_first_problem(tmp_path: Path) -> None:
    from sipguard.config import load_config
    from sipguard.errors import ConfigError

    path = write(tmp_path, "proxy:\n  max_pending: -5\n  shed_delay: abc\n")
    with pytest.raises(ConfigError, match="max_pending: must be >= 1"):
        load_config(path)


def _key_names() -> list[str]:
    """Every key the example config uses, at any depth: the vocabulary of the fuzz below."""
    import yaml

    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                names.add(str(key))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    example = Path(__file__).resolve().parents[2] / "config" / "sipguard.example.yaml"
    walk(yaml.safe_load(example.read_text()))
    return sorted(names | set(TOP_KEYS))


_NAMES = _key_names()


def _values() -> object:
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                        st.sampled_from(["udp://127.0.0.1:5060", "10.0.0.1", "1/s", "caller", "x.pem",
                                         "redis://127.0.0.1:1", "proxy", "redirect", "reject"]))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_NAMES), inner, max_size=5)),
        max_leaves=20)


def test_check_config_reports_any_wrong_file_and_never_fails_itself(tmp_path: Path) -> None:
    """Collecting (a wrong value noted and its default read on) must never turn into a crash of
    a reader that was given a default it did not expect: every outcome is a list of problems."""
    import yaml
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from sipguard.errors import ConfigError

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.dictionaries(st.sampled_from(TOP_KEYS), _values(), max_size=6))  # type: ignore[arg-type]
    def run(doc: dict[str, object]) -> None:
        path = tmp_path / "fuzz.yaml"
        path.write_text(yaml.safe_dump(doc))
        problems = check_config(str(path), NOW)
        assert all(isinstance(p, ConfigError) and p.path for p in problems), problems

    run()
