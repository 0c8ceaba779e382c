"""The "no record lost" check of issues 7 and 19, shared by the Redis and PostgreSQL tests:
sipp calls through ``sipguard serve --workers 2``, the record store taken down mid-traffic and
brought back, sipguard stopped with SIGTERM; then every call sipp saw answered must have exactly
one record, read back with ``sipguard traceback``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import need
from sipclient import free_port

SCENARIOS = Path(__file__).parent / "integration" / "scenarios"


@dataclass(frozen=True)
class Outage:
    calls: int          # calls sipp places
    rate: int           # calls per second
    before: float       # seconds of traffic before the store goes down
    length: float       # seconds the store stays down
    down: Callable[[], None]
    up: Callable[[], None]


def logged_uac(folder: Path) -> Path:
    """uac.xml, writing the Call-ID of every call answered 200 to sipp's log file."""
    text = (SCENARIOS / "uac.xml").read_text()
    logged = text.replace('<recv response="200" rrs="true"/>',
                          '<recv response="200" rrs="true"><action><log message="[call_id]"/></action></recv>', 1)
    assert logged != text
    path = folder / "uac_logged.xml"
    path.write_text(logged)
    return path


def records_by_call(config: Path) -> Counter[str]:
    """Call-ID -> how many records ``sipguard traceback`` finds for it."""
    out = subprocess.run([sys.executable, "-m", "sipguard", "traceback", "-c", str(config), "--since", "0",
                          "--format", "jsonl", "-n", "100000"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return Counter(json.loads(line)["call_id"] for line in out.stdout.splitlines() if line.strip())


def every_answered_call_has_one_record(sipguard: Any, tmp_path: Path, config_of: Callable[[int], dict[str, Any]],
                                       outage: Outage) -> None:
    """Run the traffic through two workers across ``outage`` and check the records.

    ``config_of(uas_port)`` gives the sipguard config; its traceback spool must be ``tmp_path/spool``."""
    sipp = need("sipp")
    uas_port = free_port()
    uas = subprocess.Popen([sipp, "-sf", str(SCENARIOS / "uas.xml"), "-i", "127.0.0.1", "-p", str(uas_port),
                            "-t", "u1", "-nostdin", "-timeout", "120s"],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_file = tmp_path / "answered.log"
    uac: subprocess.Popen[bytes] | None = None
    try:
        sg = sipguard(config_of(uas_port), workers=2)
        uac = subprocess.Popen([sipp, f"{sg.addr[0]}:{sg.addr[1]}", "-sf", str(logged_uac(tmp_path)),
                                "-i", "127.0.0.1", "-p", str(free_port()), "-t", "u1", "-m", str(outage.calls),
                                "-r", str(outage.rate), "-nostdin", "-timeout", "120s", "-trace_logs",
                                "-log_file", str(log_file)],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(outage.before)
        outage.down()
        time.sleep(outage.length)
        outage.up()
        assert uac.wait(150) is not None
        assert sg.stop() == 0, sg.logs()               # SIGTERM: each worker drains to the store
        spooled = sg.log_path.read_text(errors="replace").count("spooled records delivered")
        assert spooled > 0, "the outage sent no record to the spool: the test did not test anything"
        answered = {line.strip() for line in log_file.read_text().splitlines() if line.strip()}
        assert len(answered) >= outage.calls // 2, f"only {len(answered)} of {outage.calls} calls answered"
        records = records_by_call(sg.path)
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
