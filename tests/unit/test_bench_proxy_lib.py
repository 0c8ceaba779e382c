"""bench/bench_proxy_lib.py: the sipp output parsing and step verdicts the proxy benchmark reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_proxy_lib import Step, _elapsed, percentile, read_rtts, read_stat, switches, threads  # noqa: E402

STAT_HEAD = "StartTime;ElapsedTime(C);SuccessfulCall(C);FailedCall(C);Retransmissions(C)"


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:00:15", 15.0),
    ("00:01:02:500000", 62.5),
    ("01:00:00.250", 3600.25),
    ("", 0.0),
    ("garbage", 0.0),
])
def test_elapsed(text: str, seconds: float) -> None:
    assert _elapsed(text) == pytest.approx(seconds)


def test_switches_counts_the_waits_and_preemptions_of_a_process() -> None:
    """procs.json's wake-ups: this process waits (a sleep is a voluntary switch); a gone
    process counts nothing."""
    import os
    import time

    before = switches(os.getpid())
    time.sleep(0.01)
    after = switches(os.getpid())
    assert after[0] > before[0] and after[1] >= before[1]
    assert switches(2 ** 22 + 7) == (0, 0)


def test_threads_splits_cpu_and_waits_by_thread() -> None:
    """procs.json's per-thread split: a named thread that sleeps is found with its own waits,
    apart from the main thread; a gone process has no threads."""
    import os
    import threading
    import time

    go, done = threading.Event(), threading.Event()

    def sleeper() -> None:
        go.wait()
        for _ in range(5):
            time.sleep(0.002)
        done.set()
        time.sleep(0.2)

    t = threading.Thread(target=sleeper, name="sleeper")
    t.start()
    try:
        time.sleep(0.05)
        before = threads(os.getpid())
        go.set()
        done.wait(5)
        after = threads(os.getpid())
    finally:
        t.join()
    assert any(k.split(" ", 1)[0] == str(os.getpid()) for k in after)   # the main thread's id is the pid
    mine = [k for k in after if k.split(" ", 1)[0] == str(t.native_id)]
    assert len(mine) == 1, after
    assert after[mine[0]][1] - before[mine[0]][1] >= 5      # its five sleeps, at least
    assert all(len(v) == 3 and v[0] >= 0 for v in after.values())
    assert threads(2 ** 22 + 7) == {}


def test_read_stat_takes_the_last_line(tmp_path: Path) -> None:
    f = tmp_path / "s.csv"
    f.write_text(f"{STAT_HEAD}\nx;00:00:05;100;0;0\nx;00:00:15;2990;10;42\n")
    assert read_stat(f) == {"ok": 2990, "failed": 10, "retrans": 42, "elapsed": 15.0}


@pytest.mark.parametrize("content", [None, "", STAT_HEAD + "\n"])
def test_read_stat_missing_or_empty(tmp_path: Path, content: str | None) -> None:
    f = tmp_path / "s.csv"
    if content is not None:
        f.write_text(content)
    assert read_stat(f)["ok"] == 0


def test_read_rtts_keeps_rtd1_of_timed_uacs_and_their_span(tmp_path: Path) -> None:
    (tmp_path / "uac_call_plain_1_rtt.csv").write_text(
        "Date_ms;response_time_ms;rtd_no\n1000.0;0.7;1\n1001.0;0.3;2\n3000.0;2.5;1\nbad;line;1\n")
    (tmp_path / "uac_call_plain_2_rtt.csv").write_text("Date_ms;response_time_ms;rtd_no\n2000.0;1.5;1\n")
    values, span = read_rtts(tmp_path)
    assert values == [0.7, 1.5, 2.5]
    assert span == pytest.approx(2.0)


@pytest.mark.parametrize(("values", "pct", "expected"), [
    ([], 50, 0.0),
    ([1.0], 99, 1.0),
    ([float(i) for i in range(1, 101)], 50, 50.0),
    ([float(i) for i in range(1, 101)], 99, 99.0),
    ([float(i) for i in range(1, 1001)], 99, 990.0),
])
def test_percentile(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == expected


@pytest.mark.parametrize(("fields", "clean", "target", "collapsed"), [
    ({"achieved": 1990, "failed_pct": 0.0, "p99": 8.0}, True, True, False),
    ({"achieved": 1990, "failed_pct": 0.0, "p99": 30.0}, True, False, False),
    ({"achieved": 1990, "failed_pct": 0.2, "p99": 8.0}, False, False, False),
    ({"achieved": 1800, "failed_pct": 0.0, "p99": 8.0}, False, False, False),
    ({"achieved": 1500, "failed_pct": 0.0, "p99": 8.0}, False, False, True),
    ({"achieved": 1990, "failed_pct": 5.0, "p99": 900.0}, False, False, True),
    ({"error": "did not start"}, False, False, True),
])
def test_step_verdicts(fields: dict[str, object], clean: bool, target: bool, collapsed: bool) -> None:
    step = Step("sg-proxy", 2000, **fields)  # type: ignore[arg-type]
    assert (step.clean(), step.target(), step.collapsed()) == (clean, target, collapsed)
    assert step.row().startswith("| sg-proxy | 2000 |")


def test_rows_and_summary_say_which_routing_and_pair_the_same_work() -> None:
    """A plain step (neither system record-routes) is labelled as such; the summary pairs each
    sipguard system with its Kamailio counterpart at the fixed rate, per routing, with the
    capacity ratio (Kamailio's CPU per call over sipguard's) and the best clean rate."""
    import bench_proxy

    ok = {"achieved": 1000.0, "failed_pct": 0.0, "p99": 2.0, "ok": 10000}
    assert Step("sg-proxy", 2000, routing="plain").row().startswith("| sg-proxy (no RR) | 2000 |")
    assert Step("sg-redirect-verify", 2000, routing="plain").row().startswith("| sg-redirect-verify | 2000 |")
    steps = [Step("kam-relay", 1000, sut_us_per_call=100.0, **ok),  # type: ignore[arg-type]
             Step("sg-proxy", 1000, sut_us_per_call=400.0, **ok),  # type: ignore[arg-type]
             Step("sg-proxy", 1000, sut_us_per_call=500.0, **ok),  # type: ignore[arg-type]
             Step("kam-relay", 1000, routing="plain", sut_us_per_call=80.0, **ok),  # type: ignore[arg-type]
             Step("sg-proxy", 1000, routing="plain", sut_us_per_call=320.0, **ok)]  # type: ignore[arg-type]
    text = bench_proxy.summary(steps, 1000)
    assert "| sg-proxy | kam-relay | rr | 400, 500 | 450 | 100 | 100 | 0.22 | 1000 | 1000 |" in text, text
    assert "| sg-proxy | kam-relay | plain | 320 | 320 | 80 | 80 | 0.25 | 1000 | 1000 |" in text, text
    assert "sg-verify" not in text
