"""``sipguard check-config`` reports every problem at once, each as ``file:line: key: message``:
one per section of the config (a section's reader stops at its first), every problem of the
policy, the trunks and limiters the policy names, and the signing key by config line."""

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
