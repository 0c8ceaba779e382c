"""bench/bench_proxy.py end to end at a trickle: the harness still drives real calls through
Kamailio and sipguard (relay and verifying redirect) and reads sipp's results back, with both
relays doing the same work (Record-Route on both, or on neither) and sipguard as shipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def bench(tmp_path: Path, systems: list[str], *options: str) -> subprocess.CompletedProcess[str]:
    """bench_proxy.py at 40 calls/s for 2 s into ``tmp_path``; skips without its tools."""
    for tool in ("sipp", "gcc", "kamailio"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_proxy.py"), "--systems", " ".join(systems),
         "--rates", "40", "--duration", "2", "--quiet-wait", "0", "--fixed-rate", "40", *options,
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def test_bench_proxy_runs_calls_through_every_kind_of_system(tmp_path: Path) -> None:
    run = bench(tmp_path, ["kam-relay", "sg-proxy", "sg-redirect-verify"], "--routing", "rr plain")
    steps = {(r["system"], r["routing"]): r
             for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    # a redirect relays nothing: it runs once, whatever the routing
    assert sorted(steps) == sorted([("kam-relay", "rr"), ("kam-relay", "plain"), ("sg-proxy", "rr"),
                                    ("sg-proxy", "plain"), ("sg-redirect-verify", "rr")]), run.stdout
    for name, step in steps.items():
        assert step["error"] == "", (name, step)
        assert (step["ok"], step["failed"]) == (80, 0), (name, step)
        assert step["samples"] == 80 and 0 < step["p50"] <= step["p99"], (name, step)
    # 80 timed calls + the 2 x 20 warm-up calls, every one verified
    assert steps[("sg-redirect-verify", "rr")]["verstat"] == "TN-Validation-Passed:120"
    assert steps[("sg-proxy", "rr")]["verstat"] == "No-TN-Validation:120"
    # the same routing on both sides: Record-Route exactly when Kamailio runs record_route()
    for routing, rr in (("rr", True), ("plain", False)):
        folder = tmp_path / ("sg-proxy" if routing == "rr" else "sg-proxy-plain") / "r40"
        cfg = yaml.safe_load((folder / "sipguard.yaml").read_text())
        assert cfg["proxy"]["record_route"] is rr
        assert "log" not in cfg, "sipguard runs with its shipped decision logging"
        assert "shed_delay" not in cfg["proxy"], "and its shipped overload shedding (--sg-shed-delay: experiment)"
        decisions = [ln for ln in (folder / "sut.log").read_text().splitlines() if '"sipguard.decisions"' in ln]
        assert len(decisions) == 120, routing
        kam = (tmp_path / ("kam-relay" if routing == "rr" else "kam-relay-plain") / "r40" / "sut.cmd").read_text()
        assert ("NO_RR" in kam) is not rr
    # each sipguard step keeps CPU and context switches of its processes (the supervisor and
    # two workers) and the /metrics text, where the hand-overs between workers are counted
    procs = json.loads((tmp_path / "sg-proxy" / "r40" / "procs.json").read_text())
    assert len(procs) == 3 and [p["supervisor"] for p in procs.values()].count(True) == 1, procs
    assert all(p["cpu_s"] > 0 and len(p["switches"]) == 2 for p in procs.values()), procs
    # and of each of their threads (the event loop's, the records writer's ...)
    assert all(len(p["threads"]) >= 1 and all(len(v) == 3 for v in p["threads"].values())
               for p in procs.values()), procs
    assert 'event="steered_out"' in (tmp_path / "sg-proxy" / "r40" / "metrics.txt").read_text()
    assert "| sg-proxy | kam-relay | rr |" in run.stdout and "| sg-proxy | kam-relay | plain |" in run.stdout
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False).stdout
    assert left.strip() == "", f"processes left running: {left}"


def test_the_floor_relays_and_redirects_and_a_prefilled_file_keeps_its_history(tmp_path: Path) -> None:
    """The floor (bench/bench_floor.py) carries verified calls through sipp's relay and 302
    scenarios; --sg-prefill starts sipguard's traceback file with records (and their minute
    roll-ups), to which the step's calls are added."""
    systems = ["floor-verify", "floor-redirect-verify", "sg-redirect-verify"]
    run = bench(tmp_path, systems, "--sg-prefill", "3000")
    steps = {r["system"]: r for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    assert sorted(steps) == sorted(systems)
    for name, step in steps.items():
        assert step["error"] == "", (name, step)
        assert (step["ok"], step["failed"]) == (80, 0), (name, step)
    import sqlite3
    with sqlite3.connect(tmp_path / "sg-redirect-verify" / "r40" / "traceback.db") as db:
        assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 3000 + 120
        assert db.execute("SELECT COUNT(*) FROM records WHERE writer = 'prefill'").fetchone()[0] == 3000
        assert db.execute("SELECT SUM(calls) FROM trunk_minutes").fetchone()[0] >= 2000
    assert "| floor-redirect-verify | kam-redirect-verify | rr |" in run.stdout
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False).stdout
    assert left.strip() == "", f"processes left running: {left}"


def test_bench_core_relays_the_whole_call_flow() -> None:
    """bench/bench_core.py feeds a call's five datagrams to a real worker: every call must
    produce the six sends of a relayed call (100, INVITE, 200, ACK, BYE, 200)."""
    run = subprocess.run([sys.executable, str(REPO / "bench" / "bench_core.py"), "50", "--rounds", "1"],
                         capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "datagrams sent per call: 6.0" in run.stdout, run.stdout
    assert "us CPU per call" in run.stdout
