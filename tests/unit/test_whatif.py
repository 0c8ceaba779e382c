"""What-if over history: records made by the real pipeline, stored, read back and re-decided."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sipguard.clock import ManualClock
from sipguard.pipeline import Pipeline
from sipguard.policy.loader import load_policy
from sipguard.records.record import CallRecord, from_row, to_row
from sipguard.records.sqlite import SqliteRecords
from sipguard.records.whatif import facts_of, whatif
from sipguard.sip import parse
from tests.unit.test_pipeline import NOW, ROOT, invite, make_config

CANDIDATE = """version: 1
default: {action: forward}
rules:
  - name: no-foreign-callers
    when: {trunk.role: foreign, caller.nanp: false}
    action: reject
    status: 403
  - name: dno
    when: {caller.dno: true}
    action: reject
    class: deterministic
"""
CALLERS = ["+12127363100", "+18002223333", "+442071838750", "+12127363101", "+33142685300"]


def records_of(tmp_path: Path, config: Any, callers: list[str], source: str = "192.0.2.10") -> list[Any]:
    async def run() -> list[Any]:
        pipeline = await Pipeline.create(config, ManualClock(NOW))
        out = []
        try:
            for caller in callers:
                o = await pipeline.decide(parse(invite(caller=caller)), (source, 5060), "udp")
                out.append(o)
        finally:
            await pipeline.aclose()
        return out
    return asyncio.run(run())


def test_stored_records_give_back_the_facts_the_policy_saw(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    for o in records_of(tmp_path, config, CALLERS):
        stored = from_row(to_row(CallRecord.of(o, None, None, "t")))
        assert facts_of(stored) == o.facts


def test_whatif_counts_rules_changes_and_samples_and_says_what_it_cannot_redecide(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    outcomes = records_of(tmp_path, config, CALLERS * 3)
    records = [from_row(to_row(CallRecord.of(o, 603 if o.decision.action == "reject" else None, None, "t")))
               for o in outcomes]
    old = records[0]._replace(facts=None)
    unknown = CallRecord.of(records_of(tmp_path, config, CALLERS[:1], source="10.9.9.9")[0], 403, None, "t")
    (tmp_path / "new.yaml").write_text(CANDIDATE)
    current = load_policy(config.policy, config.redress)
    candidate = load_policy(str(tmp_path / "new.yaml"), config.redress)
    report = whatif([*records, old, unknown], current, candidate, samples=2)
    assert report.records == 17 and report.redecided == 15 and report.no_facts == 1 and report.not_policy == 1
    assert report.drift == 0                    # the current policy decides as recorded
    assert report.candidate_rules["no-foreign-callers"] == 6 and report.candidate_rules["dno"] == 3
    assert sum(report.current_rules.values()) == sum(report.candidate_rules.values()) == 15
    by_change = dict(report.transitions)
    assert sum(by_change.values()) == report.changed
    foreign = [name for name in by_change if name.endswith("-> reject 403 [no-foreign-callers]")]
    assert foreign and sum(by_change[n] for n in foreign) == 6
    assert all(len(report.samples[name]) <= 2 for name in by_change)
    doc = report.to_json()
    assert doc["rules"]["no-foreign-callers"] == {"current": 0, "candidate": 6}
    assert json.dumps(doc) and any("e.g." in line for line in report.lines())
    assert any("record version 3" in line for line in report.lines())


def test_cli_policy_whatif_reads_the_records_store(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    now = time.time()
    outcomes = records_of(tmp_path, config, CALLERS * 2)
    db = SqliteRecords(config.traceback.path)
    db.write([("w", i + 1, CallRecord.of(o, None, None, "t")._replace(time=now - 600 + i))
              for i, o in enumerate(outcomes)])
    db.close()
    (tmp_path / "new.yaml").write_text(CANDIDATE)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sipguard", "policy", "whatif", "-c", config.path, *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})

    table = cli("--policy", str(tmp_path / "new.yaml"), "--since", "1h")
    assert table.returncode == 0, table.stderr
    assert "10 record(s) read, 10 re-decided" in table.stdout and "no-foreign-callers" in table.stdout
    doc = json.loads(cli("--policy", str(tmp_path / "new.yaml"), "--since", "1h", "--format", "json").stdout)
    assert doc["redecided"] == 10 and doc["rules"]["no-foreign-callers"]["candidate"] == 4
    bad = cli("--policy", str(tmp_path / "missing.yaml"))
    assert bad.returncode == 1
    assert cli("--policy", str(tmp_path / "new.yaml"), "--since", "2000d").returncode == 1
