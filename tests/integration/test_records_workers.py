"""No traceback record lost with several workers (issue 7): ``sipguard serve --workers 2`` on
a persistent redis-server, sipp calls through it, Redis killed with -9 mid-traffic and
restarted on the same port, sipguard stopped with SIGTERM. Every call sipp saw answered has
exactly one record in Redis -- the records a traceback answer (47 CFR 42.6) relies on.

Before the fix one worker could flush the other's spool files out of order and the Redis
append's per-writer high-water mark dropped the late ones (404 of 3,999 in the report).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config, need
from sipclient import free_port

from tests.redis_fixtures import REDIS_SERVER, start_redis

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")]

SCENARIOS = Path(__file__).parent / "scenarios"
CALLS = 2000
RATE = 100                # calls per second: 20 s of traffic
BEFORE_KILL = 6.0         # seconds of traffic before Redis is killed
OUTAGE = 4.0              # seconds Redis stays down


def _logged_uac(folder: Path) -> Path:
    """uac.xml, writing the Call-ID of every call answered 200 to sipp's log file."""
    text = (SCENARIOS / "uac.xml").read_text()
    logged = text.replace('<recv response="200" rrs="true"/>',
                          '<recv response="200" rrs="true"><action><log message="[call_id]"/></action></recv>', 1)
    assert logged != text
    path = folder / "uac_logged.xml"
    path.write_text(logged)
    return path


def _records(config: Path) -> Counter[str]:
    out = subprocess.run([sys.executable, "-m", "sipguard", "traceback", "-c", str(config), "--since", "0",
                          "--format", "jsonl", "-n", "100000"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return Counter(json.loads(line)["call_id"] for line in out.stdout.splitlines() if line.strip())


def test_two_workers_and_a_redis_kill_leave_every_answered_call_one_record(sipguard: Any,
                                                                           tmp_path: Path) -> None:
    sipp = need("sipp")
    redis = start_redis(("--appendonly", "yes", "--appendfsync", "always"))
    uas_port = free_port()
    uas = subprocess.Popen([sipp, "-sf", str(SCENARIOS / "uas.xml"), "-i", "127.0.0.1", "-p", str(uas_port),
                            "-t", "u1", "-nostdin", "-timeout", "120s"],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_file = tmp_path / "answered.log"
    uac: subprocess.Popen[bytes] | None = None
    try:
        config = base_config(uas_port, store=redis.url, store_failure="fail-open",
                             traceback={"path": str(tmp_path / "tb.db"), "spool": str(tmp_path / "spool"),
                                        "batch": 50, "retention_days": 7})
        sg = sipguard(config, workers=2)
        uac = subprocess.Popen([sipp, f"{sg.addr[0]}:{sg.addr[1]}", "-sf", str(_logged_uac(tmp_path)),
                                "-i", "127.0.0.1", "-p", str(free_port()), "-t", "u1", "-m", str(CALLS),
                                "-r", str(RATE), "-nostdin", "-timeout", "120s", "-trace_logs",
                                "-log_file", str(log_file)],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(BEFORE_KILL)
        redis.stop()                                   # kill -9 mid-traffic; the AOF keeps what it took
        time.sleep(OUTAGE)
        redis.start()                                  # same port, same data folder
        assert uac.wait(150) is not None
        assert sg.stop() == 0, sg.logs()               # SIGTERM: each worker drains to Redis
        spooled = sg.log_path.read_text(errors="replace").count("spooled records delivered")
        assert spooled > 0, "the outage sent no record to the spool: the test did not test anything"
        answered = {line.strip() for line in log_file.read_text().splitlines() if line.strip()}
        assert len(answered) >= CALLS // 2, f"only {len(answered)} of {CALLS} calls answered"
        records = _records(sg.path)
        missing = sorted(answered - set(records))
        doubled = sorted(call_id for call_id, n in records.items() if n > 1)
        assert not missing, f"{len(missing)} of {len(answered)} answered calls have no record: {missing[:5]}"
        assert not doubled, f"{len(doubled)} calls have more than one record: {doubled[:5]}"
        assert not [p.name for p in (tmp_path / "spool").glob("*.jsonl")]
    finally:
        for proc in (uac, uas):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        redis.stop()
