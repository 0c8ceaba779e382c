"""Records, metrics and the admin API of a running sipguard after real calls (issue 7)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config
from sipclient import MiniUas, UdpClient, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def http(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def observed(sipguard: Any, tmp_path: Path) -> Any:
    uas = MiniUas()
    port = free_port()
    (tmp_path / "dno.txt").write_text("+18002223333\n")
    config = base_config(uas.port, http={"listen": f"127.0.0.1:{port}"},
                         datasets={"dno": str(tmp_path / "dno.txt"), "rmd": str(ROOT / "config/demo/rmd.csv")},
                         policy=str(ROOT / "config/policy.example.yaml"),
                         blocking={"redress": {"url": "https://example.net/blocked"}},
                         traceback={"path": str(tmp_path / "traceback.db"), "spool": str(tmp_path / "spool")})
    sg = sipguard(config)
    yield sg, uas, f"http://127.0.0.1:{port}"
    uas.close()


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def test_records_metrics_and_health_after_real_calls(observed: Any) -> None:
    sg, uas, base = observed
    client = UdpClient()
    statuses = []
    for caller in ("+12127363100", "+12127363101", "+18002223333"):
        final, _ = client.call(sg.addr, caller=caller, callee="+13036231000")
        assert final is not None
        statuses.append(final.status)
    assert statuses == [200, 200, 603]

    # the traceback HTTP endpoint finds the DNO call by caller and names the upstream
    def found() -> list[dict[str, Any]]:
        status, body = http(f"{base}/traceback?caller=%2B18002223333&since=0")
        return json.loads(body)["records"] if status == 200 else []

    records = wait_for(found)
    assert len(records) == 1
    rec = records[0]
    assert (rec["trunk"], rec["provider_frn"], rec["action"], rec["status"], rec["rule"]) == \
        ("carrier-a", "0012345678", "reject", 603, "do-not-originate")

    # the CLI answers the same question from the same records
    out = subprocess.run([sys.executable, "-m", "sipguard", "traceback", "-c", str(sg.path),
                          "--caller", "+18002223333", "--since", "0", "--format", "jsonl"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert [line["call_id"] for line in lines] == [rec["call_id"]]

    # metrics count the calls sent, by action
    def metrics() -> str:
        status, body = http(f"{base}/metrics")
        text = body.decode()
        return text if status == 200 and "sipguard_invites_total" in text else ""

    text = wait_for(metrics)
    forwarded = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("sipguard_invites_total{") and 'action="forward"' in line)
    rejected = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("sipguard_invites_total{") and 'action="reject"' in line)
    assert (forwarded, rejected) == (2.0, 1.0)

    assert http(f"{base}/healthz")[0] == 200
    status, body = http(f"{base}/readyz")
    assert status == 200, body


def test_notice_added_through_the_admin_api_blocks_calls(observed: Any) -> None:
    sg, uas, base = observed
    client = UdpClient()
    final, _ = client.call(sg.addr, caller="+12127363100", callee="+13036231000")
    assert final is not None and final.status == 200
    notice = {"ref": "EB-2026-42", "caller_prefix": "1212736"}
    status, body = http(f"{base}/admin/notices", "POST", json.dumps(notice).encode())
    assert status == 201, body
    assert http(f"{base}/admin/notices", "POST", b'{"ref": "x"}')[0] == 400  # no condition
    final, _ = client.call(sg.addr, caller="+12127363100", callee="+13036231000")
    assert final is not None and final.status == 603
    # the record names the notice
    def noticed() -> list[dict[str, Any]]:
        _, body = http(f"{base}/traceback?caller=%2B12127363100&since=0")
        return [r for r in json.loads(body)["records"] if r.get("notice") == "EB-2026-42"]
    assert wait_for(noticed)
    assert http(f"{base}/admin/notices?ref=EB-2026-42", "DELETE")[0] == 200
    final, _ = client.call(sg.addr, caller="+12127363100", callee="+13036231000")
    assert final is not None and final.status == 200
