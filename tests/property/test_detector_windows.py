"""Property tests of the campaign windows (detectors.CampaignWindows) and the threat-list parser.

Windows: whatever the traffic, no dict holds more than ``max_keys`` keys, no fanout set more
than ``callees`` members or a duplicate, a window is gone once ``window`` seconds passed, and
while nothing was evicted each answer equals that of an unbounded reference model. Parser:
any text gives entries or a ConfigError, never another exception.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.detectors import Burst, CampaignWindows, Detectors, Fanout
from sipguard.errors import ConfigError
from sipguard.threats import THREAT_KINDS, parse_threats

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_800_000_000.0

callers = st.sampled_from([f"1212555{i:04d}" for i in range(12)] + ["", "anonymous"])
callees = st.sampled_from([f"1303555{i:04d}" for i in range(8)] + [""])
events = st.lists(st.tuples(callers, callees, st.floats(0, 40, allow_nan=False)), max_size=120)


class Model:
    """Unbounded, obviously right: one window per key, opened by its first call."""

    def __init__(self, cfg: Detectors) -> None:
        self.cfg = cfg
        self.fo: dict[str, tuple[float, set[str]]] = {}
        self.bu: dict[str, tuple[float, int]] = {}

    def fanout(self, caller: str, callee: str, now: float) -> bool:
        assert self.cfg.fanout is not None
        if not caller.isdigit() or not callee.isdigit():
            return False
        start, seen = self.fo.get(caller, (now, set()))
        if now - start >= self.cfg.fanout.window:
            start, seen = now, set()
        if len(seen) < self.cfg.fanout.callees:
            seen.add(callee)
        self.fo[caller] = (start, seen)
        return len(seen) >= self.cfg.fanout.callees

    def burst(self, caller: str, now: float) -> bool:
        assert self.cfg.burst is not None
        if not caller.isdigit():
            return False
        key = caller[:self.cfg.burst.prefix]
        start, count = self.bu.get(key, (now, 0))
        if now - start >= self.cfg.burst.window:
            start, count = now, 0
        self.bu[key] = (start, count + 1)
        return count + 1 >= self.cfg.burst.calls


@SETTINGS
@given(events, st.integers(2, 5), st.integers(2, 6), st.integers(100, 120), st.integers(1, 11))
def test_windows_are_bounded_expire_and_match_the_model(trace: list[tuple[str, str, float]], callees_n: int,
                                                        calls_n: int, max_keys: int, prefix: int) -> None:
    cfg = Detectors(Fanout(60.0, callees_n), Burst(30.0, calls_n, prefix), max_keys)
    windows, model = CampaignWindows(cfg), Model(cfg)
    now = NOW
    for caller, callee, step in trace:
        now += step
        got_f = windows.fanout(caller or None, callee or None, now)
        got_b = windows.burst(caller or None, now)
        # the sampled keys (at most 14) never fill max_keys (>= 100): nothing is evicted
        assert got_f == model.fanout(caller, callee, now)
        assert got_b == model.burst(caller, now)
        assert len(windows._fanout) <= max_keys and len(windows._burst) <= max_keys
        for _, seen in windows._fanout.values():
            assert len(seen) <= callees_n and len(set(seen)) == len(seen)
    # after a full window of silence, every caller starts again from nothing
    later = now + 60.0
    for caller in {c for c, callee, _ in trace if c.isdigit()}:
        assert windows.fanout(caller, "13035559999", later) is False
    for prefix_of in {c[:prefix] for c, callee, _ in trace if c.isdigit()}:
        assert windows.burst(prefix_of + "0" * (11 - prefix), later) is False


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 10**6), st.floats(0, 5, allow_nan=False)), max_size=400),
       st.integers(100, 150))
def test_eviction_keeps_the_bound_under_many_keys(trace: list[tuple[int, float]], max_keys: int) -> None:
    cfg = Detectors(Fanout(10.0, 3), Burst(10.0, 3, 11), max_keys)
    windows = CampaignWindows(cfg)
    now = NOW
    for n, step in trace:
        now += step
        windows.fanout(f"1{n:010d}", "13035550100", now)
        windows.burst(f"1{n:010d}", now)
        assert len(windows._fanout) <= max_keys and len(windows._burst) <= max_keys
        # the dict is in window-start order: the front is the oldest window
        starts = [start for start, _ in windows._fanout.values()]
        assert starts == sorted(starts)


@SETTINGS
@given(st.text(max_size=400), st.sampled_from(["c-cist", "operator"]))
def test_any_threat_file_gives_entries_or_a_config_error(text: str, source: str) -> None:
    try:
        entries, report = parse_threats(text, "<t>", source)
    except ConfigError:
        return
    assert all(e.kind in THREAT_KINDS and e.source == source and e.value for e in entries)
    assert report.imported <= report.rows


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["frn", "name", "ip", "spc", "bad"]),
                          st.text(alphabet="0123456789ABCDEF./: abc,\"", max_size=30)), max_size=40))
def test_threat_csv_rows_are_imported_or_skipped_with_their_line(rows: list[tuple[str, str]]) -> None:
    text = "kind,value,ref\n" + "".join(f'{k},"{v.replace(chr(34), "")}",r{i}\n' for i, (k, v) in enumerate(rows))
    entries, report = parse_threats(text, "<t>", "operator")
    assert report.rows == len(rows)
    assert report.imported + len(report.skipped) == report.rows
    assert {line for line, _ in report.skipped} <= set(range(2, len(rows) + 2))
