"""Replay of an Identity-bearing capture through the real pipeline (issue 8): offline
certificates (--x5u-map), the capture clock, the CLI, the pytest fixture and --compare."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipguard.testing import Message, write_capture
from tests.shaken_pki import StiPki, shaken_identity

pytestmark = pytest.mark.integration
T = 1_767_225_600.0          # 2026-01-01 00:00 UTC: the capture's time, long before "now"
X5U = "https://certs.carrier.example/good.pem"
SRC, DST = ("198.51.100.7", 5060), ("192.0.2.20", 5060)


def invite(n: int, identity: str | None, caller: str = "12127363100", branch: str | None = None) -> str:
    lines = ["INVITE sip:+13036231000@192.0.2.20;user=phone SIP/2.0",
             f"Via: SIP/2.0/UDP 198.51.100.7:5060;branch={branch or f'z9hG4bKr{n}'}",
             f"From: <sip:+{caller}@198.51.100.7;user=phone>;tag=t{n}",
             "To: <sip:+13036231000@192.0.2.20;user=phone>", f"Call-ID: replay-{n}", "CSeq: 1 INVITE",
             "Max-Forwards: 70"]
    if identity:
        lines.append(f"Identity: {identity}")
    return "\n".join(lines + ["Content-Length: 0", "", ""])


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    pki = StiPki(tmp_path / "pki", now=T)
    good = shaken_identity(pki.key("good"), X5U, orig="12127363100", dest=["13036231000"], iat=int(T))
    token, _, params = good.partition(";")
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[:-4]}AAAA;{params}"
    stale = shaken_identity(pki.key("good"), X5U, orig="12127363100", dest=["13036231000"], iat=int(T - 300))
    messages = [
        Message(invite(1, good), SRC, DST, T + 1),
        Message(invite(1, good), SRC, DST, T + 1.5),                      # retransmission: no line
        Message(invite(2, tampered), SRC, DST, T + 2),
        Message(invite(3, stale), SRC, DST, T + 3, transport="tcp", segments=3),
        Message(invite(4, None, caller="18002223333"), SRC, DST, T + 4),  # DNO caller, unsigned
        Message(invite(5, good).replace("CSeq: 1 INVITE", "CSeq: x INVITE"), SRC, DST, T + 5),
    ]
    capture = write_capture(tmp_path / "calls.pcap", messages)
    (tmp_path / "x5u-map.yaml").write_text(yaml.safe_dump({X5U: str(pki.dir / "good.pem")}))
    (tmp_path / "dno.txt").write_text("+18002223333\n")
    strict = {"version": 1, "default": {"action": "forward"}, "rules": [
        {"name": "dno", "when": {"caller.dno": True}, "action": "reject", "class": "deterministic"},
        {"name": "failed", "when": {"verstat": "TN-Validation-Failed"}, "action": "reject"}]}
    lenient = {"version": 1, "default": {"action": "forward"}, "rules": [
        {"name": "dno", "when": {"caller.dno": True}, "action": "reject", "class": "deterministic"}]}
    (tmp_path / "strict.yaml").write_text(yaml.safe_dump(strict, sort_keys=False))
    (tmp_path / "lenient.yaml").write_text(yaml.safe_dump(lenient, sort_keys=False))
    config = {"listen": ["udp://127.0.0.1:5060"], "next_hop": "sip:192.0.2.30:5060",
              "trunks": [{"id": "carrier-a", "role": "foreign", "sources": ["198.51.100.0/24"]}],
              "store": "memory", "datasets": {"dno": "dno.txt"}, "policy": "strict.yaml",
              "shaken": {"trust_anchors": pki.anchors, "crl": {"enabled": False}},
              "traceback": {"path": str(tmp_path / "tb.db")}}
    (tmp_path / "sipguard.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return {"dir": tmp_path, "capture": capture, "config": tmp_path / "sipguard.yaml",
            "map": tmp_path / "x5u-map.yaml"}


EXPECTED = [  # call, verstat, reasons, action, status
    ("replay-1", "TN-Validation-Passed", [], "forward", None),
    ("replay-2", "TN-Validation-Failed", ["bad-signature"], "reject", 438),
    ("replay-3", "TN-Validation-Failed", ["stale-iat"], "reject", 403),
    ("replay-4", "No-TN-Validation", ["no-identity"], "reject", 603),
    ("replay-5", "No-TN-Validation", ["malformed-sip"], "reject", 400),
]


def test_cli_replays_on_the_capture_clock_with_offline_certificates(setup: dict[str, Any]) -> None:
    out = subprocess.run([sys.executable, "-m", "sipguard", "replay", str(setup["capture"]), "-c",
                          str(setup["config"]), "--x5u-map", str(setup["map"]), "--format", "jsonl"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    got = [(d["call_id"], d["verstat"], d["reasons"], d["action"], d["status"]) for d in lines]
    assert got == EXPECTED
    assert lines[0]["attest"] == "A" and lines[0]["spc"] == "1234" and lines[0]["trunk"] == "carrier-a"
    assert set(lines[0]) == {"time", "call_id", "source", "trunk", "caller", "callee", "verstat", "attest",
                             "reasons", "spc", "rule", "action", "status", "signed"}


def test_clock_now_makes_the_old_capture_stale(setup: dict[str, Any]) -> None:
    out = subprocess.run([sys.executable, "-m", "sipguard", "replay", str(setup["capture"]), "-c",
                          str(setup["config"]), "--x5u-map", str(setup["map"]), "--clock", "now"],
                         capture_output=True, text=True, timeout=60, check=False)
    first = json.loads(out.stdout.splitlines()[0])
    assert first["verstat"] == "TN-Validation-Failed" and "stale-iat" in first["reasons"]


def test_pytest_fixture_returns_decisions(setup: dict[str, Any], replay: Any) -> None:
    decisions = replay(setup["capture"], config=setup["config"], x5u_map=setup["map"])
    assert [(d.action, d.status) for d in decisions] == [(e[3], e[4]) for e in EXPECTED]
    assert decisions[3].rule == "dno"


def test_compare_prints_only_changed_decisions(setup: dict[str, Any]) -> None:
    out = subprocess.run([sys.executable, "-m", "sipguard", "replay", str(setup["capture"]), "-c",
                          str(setup["config"]), "--x5u-map", str(setup["map"]),
                          "--policy", str(setup["dir"] / "lenient.yaml"),
                          "--compare", str(setup["dir"] / "strict.yaml"), "--format", "jsonl"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    changed = [json.loads(line) for line in out.stdout.splitlines() if line.strip().startswith("{")]
    ids = sorted(json.dumps(c) for c in changed)
    assert len(changed) == 2, out.stdout   # the two failed verifications: rejected before, forwarded now
    assert all("replay-2" in i or "replay-3" in i for i in ids)


def _replay_cli(setup: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sipguard", "replay", str(setup["capture"]), "-c",
                           str(setup["config"]), "--x5u-map", str(setup["map"]), *extra],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_capture_from_elsewhere_replays_as_a_trunk_or_from_any_source(setup: dict[str, Any]) -> None:
    """The capture's source (198.51.100.7) is no trunk of a config whose only trunk is
    127.0.0.1: every call is 403 unknown-source unless the user says whose traffic it is."""
    config = yaml.safe_load(setup["config"].read_text())
    config["trunks"] = [{"id": "carrier-a", "role": "foreign", "sources": ["127.0.0.1/32"]},
                        {"id": "carrier-b", "role": "foreign", "sources": ["203.0.113.0/24"]}]
    config["unknown_source"] = "reject"
    setup["config"].write_text(yaml.safe_dump(config, sort_keys=False))

    def decisions(*extra: str) -> list[dict[str, Any]]:
        out = _replay_cli(setup, *extra)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    assert {(d["status"], d["rule"]) for d in decisions()[:4]} == {(403, "unknown-source")}
    as_trunk = decisions("--trunk", "carrier-b")
    assert [(d["call_id"], d["action"], d["status"]) for d in as_trunk] == [(e[0], e[3], e[4]) for e in EXPECTED]
    assert {d["trunk"] for d in as_trunk[:4]} == {"carrier-b"}
    assert as_trunk[0]["source"] == "198.51.100.7:5060"       # the capture's own address is still shown
    anywhere = decisions("--any-source")
    assert [(d["action"], d["status"]) for d in anywhere] == [(e[3], e[4]) for e in EXPECTED]
    assert anywhere[0]["trunk"] is None
    wrong = _replay_cli(setup, "--trunk", "carier-b")
    assert wrong.returncode == 1 and "no such trunk" in wrong.stderr and "did you mean 'carrier-b'" in wrong.stderr


def test_the_table_labels_a_parse_error_by_its_reason_not_as_the_default(setup: dict[str, Any]) -> None:
    out = _replay_cli(setup, "--format", "table")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "replay-5" in line)
    assert "(malformed-sip)" in row and "(default)" not in row and "reject 400" in row
