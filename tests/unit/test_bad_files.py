"""A bad file never stops calls: hostile config and policy files (deep nesting, alias bombs,
values YAML cannot build, huge or non-UTF-8 files, numbers that are not numbers) are refused
with ``file:line: message``, the running policy stays, and a reload compiles off the event
loop (README, "A bad file never stops calls"). Real files in tmp_path; no timing assertions."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sipguard.cli import main
from sipguard.config import load_config
from sipguard.errors import ConfigError
from sipguard.policy import PolicyHolder, check_policy, load_policy
from sipguard.policy.facts import Facts
from sipguard.yamlconf import MAX_ALIAS_NODES, MAX_DEPTH, MAX_FILE_BYTES
from tests.policy_fixtures import REDRESS, laughs, nested_not

GOOD = ("version: 1\nrules:\n  - name: us-caller\n    when: {caller.us: true}\n    action: reject\n"
        "    class: deterministic\n")


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


# -- YAML that makes the parser recurse, expand or choke ------------------------------------

def test_50000_nested_nots_are_a_line_numbered_refusal(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", nested_not(50_000))
    with pytest.raises(ConfigError) as info:
        load_policy(path, REDRESS)
    assert str(info.value) == f"{path}:5: nested more than {MAX_DEPTH} levels deep; flatten the file"
    assert [str(e) for e in check_policy(path)] == [str(info.value)]


def test_nesting_within_the_bound_still_loads(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "policy.yaml", nested_not(40)), REDRESS)   # 40 nots: even
    assert policy.evaluate(Facts(caller_us=True)).rule == "deep"
    assert policy.evaluate(Facts(caller_us=False)).rule is None


def test_50000_brackets_in_a_config_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "sipguard.yaml", "listen: ['udp://127.0.0.1:5060']\ntrunks: " + "[" * 50_000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:2: nested more than {MAX_DEPTH} levels deep")


def test_billion_laughs_is_refused_before_it_expands(tmp_path: Path) -> None:
    text = laughs(8)
    assert len(text.encode()) < 700                     # the 654-byte file, give or take
    path = write(tmp_path, "policy.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_policy(path, REDRESS)
    assert info.value.path == path and info.value.line == 7       # the first anchor past the budget
    assert f"aliases (*name) stand for more than {MAX_ALIAS_NODES} values" in info.value.message


def test_a_few_aliases_are_still_fine(tmp_path: Path) -> None:
    text = ("version: 1\nx: &us {caller.us: true}\nrules:\n  - {name: a, action: forward, when: *us}\n"
            "  - {name: b, action: forward, when: {any: [*us, {trunk: t1}]}}\n")
    with pytest.raises(ConfigError) as info:              # x: is not a policy key, but it loaded
        load_policy(write(tmp_path, "policy.yaml", text), REDRESS)
    assert info.value.key == "x" and "unknown key" in info.value.message
    config = write(tmp_path, "sipguard.yaml", "trunk_defaults: &d {role: foreign}\n")
    with pytest.raises(ConfigError, match="trunk_defaults: unknown key"):
        load_config(config)
    shared = write(tmp_path, "shared.yaml", "trunks:\n  - {id: a, role: foreign, sources: &s ['10.0.0.1', '10.0.0.2']}\n"
                   "  - {id: b, role: foreign, sources: *s}\n")
    assert [len(t.sources) for t in load_config(shared).trunks] == [2, 2]


def test_an_alias_inside_itself_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "policy.yaml", "version: 1\nrules: &r\n  - *r\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path, REDRESS)
    assert info.value.line == 2 and "alias refers to a mapping or list that contains it" in info.value.message


def test_aliases_cannot_nest_deeper_than_the_text(tmp_path: Path) -> None:
    lines = ["version: 1", "x0: &a0 {caller.us: true}"]
    lines += [f"x{i}: &a{i} {{not: *a{i - 1}}}" for i in range(1, 200)]
    path = write(tmp_path, "policy.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=f"nest the document more than {MAX_DEPTH} levels deep"):
        load_policy(path, REDRESS)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("version: 1\nmode: 2026-13-45\n", 2, "cannot read this value as timestamp: month must be in 1..12"),
    ("version: " + "9" * 5000 + "\n", 1, "cannot read this value as int: Exceeds the limit"),
    ("version: 1\nmode: !!float 'x'\n", 2, "cannot read this value as float"),
    ("version: 1\nmode: !!timestamp 'x'\n", 2, "cannot read this value as timestamp"),
    ("version: !!int 'x'\n", 1, "cannot read this value as int"),
])
def test_values_yaml_cannot_build_name_their_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = write(tmp_path, "policy.yaml", text)
    problems = check_policy(path)
    assert [(p.path, p.line) for p in problems] == [(path, line)]
    assert words in problems[0].message


def test_oversized_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    big = write(tmp_path, "big.yaml", "version: 1\n" + "#" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ConfigError, match="larger than 4 MB"):
        load_policy(big, REDRESS)
    with pytest.raises(ConfigError, match="larger than 4 MB"):
        load_config(big)
    latin = write(tmp_path, "latin.yaml", b"version: 1\nmode: shadow\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(latin)
    assert str(info.value) == f"{latin}:3: file is not UTF-8 text (byte 0xe9)"
    control = write(tmp_path, "control.yaml", b"version: 1\nmode: shadow\x00\n")
    with pytest.raises(ConfigError) as info:
        load_policy(control, REDRESS)
    assert str(info.value) == f"{control}:2: invalid YAML: character 0x0 is not allowed in YAML"


# -- the CLI checks say the same, with exit 1 ----------------------------------------------

def test_check_commands_refuse_hostile_files_with_file_line(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    policy = write(tmp_path, "policy.yaml", nested_not(50_000))
    assert main(["policy", "check", policy]) == 1
    assert capsys.readouterr().out == f"{policy}:5: nested more than {MAX_DEPTH} levels deep; flatten the file\n"
    config = write(tmp_path, "sipguard.yaml", f"policy: {policy}\n")
    assert main(["check-config", config]) == 1
    assert f"{policy}:5: nested more than" in capsys.readouterr().err
    laughing = write(tmp_path, "laughs.yaml", laughs(8))
    assert main(["policy", "eval", laughing, "caller.us=true"]) == 1
    assert f"{laughing}:7: aliases" in capsys.readouterr().err


# -- numbers that are not numbers ---------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("store_timeout: .nan\n", 1, "store_timeout", "expected a finite number, got nan"),
    ("store_timeout: .inf\n", 1, "store_timeout", "expected a finite number, got inf"),
    ("proxy:\n  transaction_timeout: -.inf\n", 2, "proxy.transaction_timeout", "expected a finite number, got -inf"),
    ("proxy:\n  max_pending: 1000000000000\n", 2, "proxy.max_pending", "must be <= 1000000000, got 1000000000000"),
    ("proxy:\n  retry_after: " + "9" * 40 + "\n", 2, "proxy.retry_after", "must be <= 1000000000, got 1e+40"),
    ("workers: -" + "9" * 400 + "\n", 1, "workers", "must be >= 1, got a 400-digit number"),
    ("shaken:\n  x5u:\n    negative_ttl: 1.0e+30\n", 3, "shaken.x5u.negative_ttl", "must be <= 1000000000, got 1e+30"),
    ("trunks:\n  - {id: a, role: foreign, sources: ['10.0.0.1'], cps: .nan}\n", 2, "trunks[0].cps",
     "expected a finite number, got nan"),
    ("traceback:\n  queue: .nan\n", 2, "traceback.queue", "expected a finite number, got nan"),
])
def test_config_numbers_must_be_finite_and_sane(tmp_path: Path, text: str, line: int, key: str, words: str) -> None:
    path = write(tmp_path, "sipguard.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.path, info.value.line, info.value.key) == (path, line, key)
    assert info.value.message == words


# -- the running policy stays, and the event loop keeps turning ----------------------------

def test_hostile_reload_keeps_the_running_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    holder = PolicyHolder(str(path), REDRESS)
    running = holder.current
    for text in (nested_not(50_000), laughs(8), "version: 1\nrules: &r\n  - *r\n", "version: 2026-13-45\n"):
        path.write_text(text)
        os.utime(path, ns=(os.stat(path).st_mtime_ns + 10**9,) * 2)
        result = holder.maybe_reload()
        assert isinstance(result, ConfigError) and result.path == str(path) and result.line is not None
        assert holder.current is running
    path.write_text(GOOD.replace("us-caller", "renamed"))
    assert holder.maybe_reload() is True and holder.current.rule_names() == ("renamed",)


def big_policy(rules: int) -> str:
    return "version: 1\nrules:\n" + "".join(
        f"  - name: r{i}\n    when: {{trunk: t{i}, caller: {{prefix: '1{i:06d}'}}}}\n    action: forward\n"
        for i in range(rules))


def test_worker_reloads_off_the_event_loop_and_survives_hostile_files(tmp_path: Path) -> None:
    """While a large policy compiles, the worker's loop keeps running other tasks (a heartbeat
    counts); a hostile policy or config is refused, logged, and what runs stays."""
    from sipguard.clock import SystemClock
    from sipguard.pipeline import Pipeline
    from sipguard.proxy.worker import Worker

    policy = tmp_path / "policy.yaml"
    policy.write_text(GOOD)
    config = tmp_path / "sipguard.yaml"
    config.write_text(f"policy: {policy}\n")

    async def main() -> None:
        cfg = load_config(str(config))
        worker = Worker(cfg)
        worker.pipeline = await Pipeline.create(cfg, SystemClock())
        holder = worker.pipeline.policy
        assert holder is not None
        beats = 0
        stop = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal beats
            while not stop.is_set():
                beats += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        policy.write_text(big_policy(3000))
        before = beats
        await worker._poll_policy()
        assert len(holder.current.rules) == 3000
        assert beats - before > 1              # the loop ran other tasks while the file compiled
        for hostile in (nested_not(50_000), laughs(8)):
            policy.write_text(hostile)
            await worker._poll_policy()
            assert len(holder.current.rules) == 3000
        config.write_text("trunks: " + "[" * 50_000 + "\n")
        await worker.reload()                  # SIGHUP with a hostile config: refused, logged
        assert worker.config is cfg and worker.pipeline.policy is holder
        stop.set()
        await task
        await worker.pipeline.aclose()

    asyncio.run(main())


def test_token_file_is_read_bounded(tmp_path: Path) -> None:
    config = write(tmp_path, "sipguard.yaml", "http:\n  listen: 0.0.0.0:9090\n  token_file: /dev/zero\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert (info.value.line, info.value.key) == (3, "http.token_file")
    assert info.value.message == "file is larger than 4096 bytes; refusing to read it: /dev/zero"


def test_a_rate_too_large_for_a_float_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, "sipguard.yaml", "limits:\n  per_caller: {key: caller, rate: " + "9" * 400 + "/s}\n")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert (info.value.line, info.value.key) == (2, "limits.per_caller.rate")
    assert info.value.message.endswith(": more than 1000000/s is not a rate limit")
