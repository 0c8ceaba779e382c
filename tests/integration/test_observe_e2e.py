"""Records, metrics and the admin API of a running sipguard after real calls (issue 7)."""

from __future__ import annotations

import json
import socket
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

    # metrics count the calls sent, by action (a worker folds its counts in every 0.5 s: wait)
    def by_action() -> tuple[float, float]:
        status, body = http(f"{base}/metrics")
        lines = body.decode().splitlines() if status == 200 else []
        forwarded = sum(float(line.rsplit(" ", 1)[1]) for line in lines
                        if line.startswith("sipguard_invites_total{") and 'action="forward"' in line)
        rejected = sum(float(line.rsplit(" ", 1)[1]) for line in lines
                       if line.startswith("sipguard_invites_total{") and 'action="reject"' in line)
        return forwarded, rejected

    wait_for(lambda: by_action() == (2.0, 1.0))
    assert by_action() == (2.0, 1.0)

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


def test_admin_http_judges_the_head_before_the_body(sipguard: Any, tmp_path: Path) -> None:
    """A running sipguard (uvloop, the config's http limits): an unauthenticated 1 MiB POST is
    a 401 before its body is sent, connections past http.max_connections a 503, bad numbers a
    400 naming the parameter."""
    uas = MiniUas()
    port = free_port()
    token = "s3cret-0123456789abcdef"
    sg = sipguard(base_config(uas.port, http={"listen": f"127.0.0.1:{port}", "token_file": "admin.token",
                                              "max_connections": 4, "read_timeout": 30},
                              traceback={"path": str(tmp_path / "traceback.db"), "spool": str(tmp_path / "spool")}),
                  run=False)
    (sg.workdir / "admin.token").write_text(token + "\n")
    sg.start()

    def exchange(raw: bytes, sock: socket.socket | None = None) -> tuple[int, dict[str, Any]]:
        sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
        with sock:
            sock.sendall(raw)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    auth = f"Authorization: Bearer {token}\r\n"
    try:
        assert wait_for(lambda: _healthz(port) == 200)    # the listener starts after the SIP side
        for _ in range(10):
            status, doc = exchange(b"POST /admin/notices HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n")
            assert status == 401 and "Bearer" in doc["error"]
        for target, parameter in (("/traceback?at=1700000000&window=inf", "window"),
                                  ("/traceback?limit=-1", "limit"), ("/traceback?limit=1e30", "limit"),
                                  ("/traceback?at=9999-12-31", "at"), ("/traceback/answer?format=pdf", "format")):
            status, doc = exchange(f"GET {target} HTTP/1.1\r\n{auth}\r\n".encode())
            assert status == 400 and doc["parameter"] == parameter, doc
        body = b'{"ref": "n", "caller": "1202", "start": NaN}'
        status, doc = exchange(f"POST /admin/notices HTTP/1.1\r\n{auth}Content-Length: {len(body)}\r\n\r\n".encode()
                               + body)
        assert status == 400 and doc["parameter"] == "start", doc
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
        try:
            status, doc = exchange(b"")
            assert status == 503 and "too many connections" in doc["error"]
        finally:
            for sock in idle:
                sock.close()
        assert wait_for(lambda: _healthz(port) == 200)
    finally:
        uas.close()


def _healthz(port: int) -> int:
    try:
        return http(f"http://127.0.0.1:{port}/healthz")[0]
    except OSError:
        return 0
