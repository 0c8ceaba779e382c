"""bench/bench_proxy.py end to end at a trickle: the harness still drives real calls through
Kamailio and sipguard (relay and verifying redirect) and reads sipp's results back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_bench_proxy_runs_calls_through_every_kind_of_system(tmp_path: Path) -> None:
    for tool in ("sipp", "gcc", "kamailio"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    systems = ["kam-relay", "sg-proxy", "sg-redirect-verify"]
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_proxy.py"), "--systems", " ".join(systems),
         "--rates", "40", "--duration", "2", "--quiet-wait", "0", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=REPO, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    steps = {r["system"]: r for r in map(json.loads, (tmp_path / "results.jsonl").read_text().splitlines())}
    assert sorted(steps) == sorted(systems), run.stdout
    for name, step in steps.items():
        assert step["error"] == "", (name, step)
        assert (step["ok"], step["failed"]) == (80, 0), (name, step)
        assert step["samples"] == 80 and 0 < step["p50"] <= step["p99"], (name, step)
    # 80 timed calls + the 2 x 20 warm-up calls, every one verified
    assert steps["sg-redirect-verify"]["verstat"] == "TN-Validation-Passed:120"
    assert steps["sg-proxy"]["verstat"] == "No-TN-Validation:120"
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
