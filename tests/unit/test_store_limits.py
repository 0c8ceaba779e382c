"""The ``limits:`` config section and the Python GCRA (same semantics as lookup.lua)."""

from __future__ import annotations

import pytest

from sipguard.errors import ConfigError
from sipguard.store.base import LimitSpec, LookupKeys, parse_limits, parse_rate
from sipguard.store.limits import Gcra, applicable
from sipguard.yamlconf import parse, section_of


def limits(text: str, cps: dict[str, float] | None = None) -> tuple[LimitSpec, ...]:
    root = section_of(parse(text, "cfg.yaml"), "cfg.yaml")
    return parse_limits(root.section("limits"), cps or {})


@pytest.mark.parametrize(("text", "per_second"), [
    ("10/s", 10.0), ("10/min", 10 / 60), ("36/h", 0.01), ("2.5 / sec", 2.5), ("1/minute", 1 / 60),
    ("10", None), ("/s", None), ("10/day", None), ("ten/s", None),
])
def test_parse_rate(text: str, per_second: float | None) -> None:
    got = parse_rate(text)
    assert got == pytest.approx(per_second) if per_second is not None else got is None


def test_contract_example() -> None:
    specs = limits("limits:\n  per_caller: {key: caller, rate: 10/min, burst: 5}\n"
                   "  per_trunk:  {key: trunk, rate: 50/s}\n  pair: {key: [trunk, caller], rate: 1/s}\n")
    assert (specs[0].name, specs[0].key, specs[0].burst) == ("per_caller", ("caller",), 5)
    assert specs[0].rate == pytest.approx(1 / 6)
    assert (specs[1].key, specs[1].rate, specs[1].burst) == (("trunk",), 50.0, 50)   # default burst: 1 s worth
    assert (specs[2].key, specs[2].burst) == (("trunk", "caller"), 1)


def test_trunk_cps() -> None:
    (spec,) = limits("limits:\n  per_trunk: {key: trunk, rate: trunk.cps}\n", {"a": 5.0, "b": 20.0})
    assert spec.rate_for("a") == 5.0 and spec.rate_for("b") == 20.0
    assert spec.rate_for("c") is None and spec.rate_for(None) is None


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("limits:\n  x: {rate: 1/s}\n", 2, "limits.x.key", "required"),
    ("limits:\n  x:\n    key: color\n    rate: 1/s\n", 3, "limits.x.key", "'color' is not one of"),
    ("limits:\n  x:\n    key: caller\n    rate: fast\n", 4, "limits.x.rate", "expected N/s"),
    ("limits:\n  x:\n    key: caller\n    rate: 0/s\n", 4, "limits.x.rate", "N > 0"),
    ("limits:\n  x:\n    key: caller\n    rate: 1/s\n    burst: 0\n", 5, "limits.x.burst", ">= 1"),
    ("limits:\n  x:\n    key: caller\n    rate: 1/s\n    size: 3\n", 5, "limits.x.size", "unknown key"),
    ("limits:\n  x:\n    key: caller\n    rate: trunk.cps\n", 4, "limits.x.rate", "needs"),
    ("limits:\n  x:\n    key: [caller, caller]\n    rate: 1/s\n", 3, "limits.x.key", "twice"),
])
def test_errors_name_file_line_key(text: str, line: int, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        limits(text, {"a": 1.0} if "caller, caller" not in text and "trunk.cps" in text else {})
    err = info.value
    assert (err.path, err.line, err.key) == ("cfg.yaml", line, key)
    assert words in err.message


def test_gcra_burst_and_refill() -> None:
    g = Gcra()
    # rate 1/s, burst 3: three at once, then one per second
    assert [g.hit("k", 1.0, 3, 100.0) for _ in range(4)] == [False, False, False, True]
    assert g.hit("k", 1.0, 3, 100.5) is True
    assert g.hit("k", 1.0, 3, 101.0) is False
    assert g.hit("k", 1.0, 3, 101.0) is True
    assert g.hit("other", 1.0, 3, 101.0) is False
    # a refused call does not push the bucket further out
    assert g.hit("k", 1.0, 3, 102.0) is False


def test_gcra_idle_buckets_are_swept() -> None:
    g = Gcra()
    for n in range(100):
        g.hit(f"k{n}", 0.1, 1, 0.0)
    g.hit("late", 0.1, 1, 50.0)
    assert len(g) == 1


def test_applicable_skips_unknown_fields() -> None:
    specs = (LimitSpec("c", ("caller",), 1.0, 1), LimitSpec("s", ("spc",), 1.0, 1),
             LimitSpec("p", ("trunk", "callee"), 2.0, 4), LimitSpec("t", ("trunk",), 1.0, 1, {"x": 3.0}))
    keys = LookupKeys("t1", None, None, "192.0.2.1", "+12025550123", "+13035550100", None)
    got = applicable(specs, keys)
    assert [(i, v) for i, v, _, _ in got] == [(0, "12025550123"), (2, "t1|13035550100")]
    assert got[1][2:] == (0.5, 4)
