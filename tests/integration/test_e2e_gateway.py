"""End to end, gateway duties and the policy (issues 4 and 6): real INVITEs from a foreign trunk
to a running sipguard with a signing credential, a DNO list and a policy written here.

The signing credential is the StiPki "good" leaf published on a loopback repository, so the
Identity sipguard adds can be checked by secsipidx and by sipguard's own verifier (the signed
call sent back through the same proxy must come out TN-Validation-Passed).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SipguardProcess, base_config
from cryptography.hazmat.primitives import serialization
from sipclient import MiniUas, UdpClient, invite

from tests.e2e_helpers import CALLEE, E2eShaken, call_through, reason_text, wait_for, write_policy

pytestmark = pytest.mark.integration

DNO_CALLER = "+12027621401"
REDRESS = {"url": "https://example.net/blocked-calls", "tel": "+18005550100", "email": "noc@example.net"}
SIGNING_LIMIT = {"per_caller": {"key": "caller", "rate": "1/min", "burst": 3}}
BURST_CALLER = "+13122345678"       # the only caller the rate-limit test uses

RULES: list[dict[str, Any]] = [
    {"name": "do-not-originate", "when": {"caller.dno": True}, "action": "reject", "class": "deterministic"},
    {"name": "invalid-caller", "when": {"caller.nanp": True, "caller.valid": False}, "action": "reject",
     "class": "deterministic"},
    {"name": "known-robocaller", "when": {"caller": "17182223333"}, "action": "reject", "class": "analytics"},
    {"name": "caller-burst", "when": {"limited": ["per_caller"]}, "action": "reject", "status": 486,
     "reason": "caller over its rate"},
    {"name": "sign-unsigned", "when": {"trunk.role": "foreign", "verstat": "No-TN-Validation",
                                       "caller.us": True}, "action": "forward", "sign": True},
]


class Gateway:
    def __init__(self, sg: SipguardProcess, uas: MiniUas, shaken: E2eShaken, policy: Path,
                 pub_path: Path) -> None:
        self.sg, self.uas, self.shaken, self.policy, self.pub_path = sg, uas, shaken, policy, pub_path

    def call(self, caller: str, callee: str = CALLEE, **kw: Any) -> tuple[Any, Any]:
        """One INVITE; returns (final response, the INVITE the UAS got or None)."""
        return call_through(self.sg, self.uas, caller, callee, **kw)

    def log(self) -> str:
        """The whole process log (SipguardProcess.logs() keeps only its tail)."""
        return self.sg.log_path.read_text(errors="replace")


def _gateway(tmp: Path, uas: MiniUas, shaken: E2eShaken, rules: list[dict[str, Any]],
             mode: str | None = None, **extra: Any) -> Gateway:
    assert shaken.pki is not None
    key, cert, pub = tmp / "signing.key", tmp / "signing.pem", tmp / "signing.pub"
    good = shaken.pki.key("good")
    key.write_bytes(good.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cert.write_bytes(shaken.pki.chain_pem("good"))
    pub.write_bytes(good.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp / "dno.txt").write_text(f"# numbers that only receive calls\n{DNO_CALLER}\n")
    policy = tmp / "policy.yaml"
    write_policy(policy, rules, mode=mode)
    config = base_config(
        uas.port, policy=str(policy), datasets={"dno": str(tmp / "dno.txt")}, limits=SIGNING_LIMIT,
        blocking={"redress": REDRESS},
        shaken=shaken.section(signing={"key": str(key), "cert": str(cert), "x5u": shaken.url("good"),
                                       "attest": "C", "origid": "trunk"}))
    config.update(extra)
    (tmp / "sg").mkdir()
    sg = SipguardProcess(config, tmp / "sg").start()
    return Gateway(sg, uas, shaken, policy, pub)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("e2e-gateway")
    uas = MiniUas()
    with E2eShaken(tmp / "pki") as shaken:
        gateway = _gateway(tmp, uas, shaken, RULES)
        try:
            yield gateway
        finally:
            gateway.sg.stop()
            uas.close()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Any]:
    """Factory for a gateway of the test's own (policy changes, shadow mode)."""
    made: list[Gateway] = []
    uas = MiniUas()
    with E2eShaken(tmp_path / "pki") as shaken:
        def make(rules: list[dict[str, Any]], mode: str | None = None, **extra: Any) -> Gateway:
            directory = tmp_path / f"gw{len(made)}"
            directory.mkdir()
            made.append(_gateway(directory, uas, shaken, rules, mode, **extra))
            return made[-1]
        yield make
        for gateway in made:
            gateway.sg.stop()
    uas.close()


def _claims(identity: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, payload = identity.split(";", 1)[0].split(".")[:2]
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(head), decode(payload)


def test_unsigned_us_call_is_signed_with_attest_c(gw: Gateway) -> None:
    final, fwd = gw.call("+12127363100")
    assert final is not None and final.status == 200, gw.sg.logs()[-2000:]
    identities = fwd.all("Identity")
    assert len(identities) == 1
    ident = identities[0]
    assert ident.endswith(f";info=<{gw.shaken.url('good')}>;alg=ES256;ppt=shaken")
    header, claims = _claims(ident)
    assert header == {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": gw.shaken.url("good")}
    assert claims["attest"] == "C"
    assert claims["orig"] == {"tn": "12127363100"} and claims["dest"] == {"tn": [CALLEE[1:]]}
    assert abs(claims["iat"] - time.time()) < 30
    # origid stable per trunk: a second call from the same trunk carries the same one
    _, fwd2 = gw.call("+12127363101")
    assert _claims(fwd2.all("Identity")[0])[1]["origid"] == claims["origid"]

    # sipguard's own verifier: the signed call sent back through the proxy verifies
    final, again = gw.call("+12127363100", identity=[ident])
    assert final is not None and final.status == 200
    assert again.all("Identity") == [ident]                          # not signed twice
    assert "verstat=TN-Validation-Passed" in (again.header("From") or "")


@pytest.mark.skipif(shutil.which("secsipidx") is None, reason="secsipidx is not installed")
def test_signed_identity_passes_secsipidx_check(gw: Gateway, tmp_path: Path) -> None:
    final, fwd = gw.call("+12127363102")
    assert final is not None and final.status == 200
    path = tmp_path / "identity.txt"
    path.write_text(fwd.all("Identity")[0])
    ok = subprocess.run(["secsipidx", "-check", "-fidentity", str(path), "-fpubkey", str(gw.pub_path),
                         "-expire", "60"], capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # and the check can fail: another key does not verify it
    other = tmp_path / "other.pub"
    assert gw.shaken.pki is not None
    other.write_bytes(gw.shaken.pki.key("expired").public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    bad = subprocess.run(["secsipidx", "-check", "-fidentity", str(path), "-fpubkey", str(other),
                          "-expire", "60"], capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode != 0


@pytest.mark.parametrize("caller", ["+14163921000", "+442079460958", "+33142685300"],
                         ids=["canada", "uk", "france"])
def test_non_us_caller_is_not_signed(gw: Gateway, caller: str) -> None:
    final, fwd = gw.call(caller)
    assert final is not None and final.status == 200, gw.sg.logs()[-1500:]
    assert fwd.all("Identity") == []
    assert "verstat=No-TN-Validation" in (fwd.header("From") or "")


def test_dno_caller_gets_603_q850_cause_21(gw: Gateway) -> None:
    final, fwd = gw.call(DNO_CALLER)
    assert final is not None and final.first == "SIP/2.0 603 Decline"
    reason = final.header("Reason") or ""
    assert reason.startswith("Q.850;cause=21")
    assert fwd is None


@pytest.mark.parametrize("caller", ["+12125550123", "+11235551234", "+1212736310"],
                         ids=["fictional-555-01xx", "npa-starting-with-1", "too-short"])
def test_invalid_caller_gets_603(gw: Gateway, caller: str) -> None:
    final, fwd = gw.call(caller)
    assert final is not None and final.status == 603, gw.sg.logs()[-1500:]
    assert fwd is None


def test_analytics_rule_answers_603_network_blocked_with_redress(gw: Gateway) -> None:
    final, fwd = gw.call("+17182223333")
    assert final is not None and final.first == "SIP/2.0 603 Network Blocked"
    reason = final.header("Reason") or ""
    assert reason.startswith("Q.850;cause=21")
    text = reason_text(reason) or ""
    for contact in REDRESS.values():
        assert contact in text
    assert fwd is None


@pytest.mark.parametrize("ruri_user", ["911", "+1911"])
def test_emergency_call_from_dno_number_is_forwarded(gw: Gateway, ruri_user: str) -> None:
    ruri = f"sip:{ruri_user}@{gw.sg.addr[0]}:{gw.sg.addr[1]};user=phone"
    final, fwd = gw.call(DNO_CALLER, callee=ruri_user, ruri=ruri)
    assert final is not None and final.status == 200, gw.sg.logs()[-1500:]
    assert fwd is not None


def test_sos_urn_request_uri_from_dno_number_is_forwarded(gw: Gateway) -> None:
    final, fwd = gw.call(DNO_CALLER, callee="911", ruri="urn:service:sos")
    assert final is not None and final.status == 200, final.first if final else None
    assert fwd is not None


def test_sos_urn_in_to_from_dno_number_is_forwarded(gw: Gateway) -> None:
    client = UdpClient()
    call_id = uuid.uuid4().hex
    try:
        data = invite(gw.sg.addr, client.addr, caller=DNO_CALLER, callee="sos", call_id=call_id)
        head, body = data.split(b"\r\n\r\n", 1)
        lines = [b"To: <urn:service:sos>" if line.startswith(b"To:") else line for line in head.split(b"\r\n")]
        client.send(b"\r\n".join(lines) + b"\r\n\r\n" + body, gw.sg.addr)
        final, _ = client.final()
    finally:
        client.close()
    assert final is not None and final.status == 200, gw.log()[-1500:]
    assert [m for m in gw.uas.invites() if m.header("Call-ID") == call_id]


def test_caller_over_its_burst_gets_the_rules_answer(gw: Gateway) -> None:
    statuses = [gw.call(BURST_CALLER)[0].status for _ in range(5)]
    assert statuses == [200, 200, 200, 486, 486]
    final, _ = gw.call(BURST_CALLER)
    assert final.first == "SIP/2.0 486 Busy Here"
    assert reason_text(final.header("Reason")) == "caller over its rate"
    # other callers are not limited by this one's bucket
    assert gw.call("+12127363199")[0].status == 200


def test_shadow_mode_forwards_everything(fresh: Any) -> None:
    gw = fresh(RULES, mode="shadow")
    for caller in (DNO_CALLER, "+12125550123", "+17182223333"):
        final, fwd = gw.call(caller)
        assert final is not None and final.status == 200, (caller, gw.sg.logs()[-1500:])
        assert fwd is not None
    # the decision the policy would have taken is recorded in the decision log
    def shadowed() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in gw.log().splitlines() if '"sipguard.decisions"' in line]
        return [r for r in lines if r.get("shadow_action") == "reject"]
    wait_for(lambda: len(shadowed()) >= 3, timeout=3)
    records = shadowed()
    assert {(r["rule"], r["action"], r["caller"]) for r in records} >= {
        ("do-not-originate", "forward", DNO_CALLER[1:]), ("known-robocaller", "forward", "17182223333")}


def _replace_policy(gw: Gateway, rules: list[dict[str, Any]]) -> None:
    """Write the new file next to the old and rename it over: what deploy tools do."""
    tmp = gw.policy.with_suffix(".new")
    write_policy(tmp, rules)
    os.replace(tmp, gw.policy)


def _reloads(gw: Gateway, count: int) -> bool:
    """Wait until the log shows `count` policy reloads."""
    return wait_for(lambda: gw.log().count("policy reloaded") >= count, timeout=5)


def test_policy_hot_reload_under_traffic(fresh: Any) -> None:
    caller = "+12127363150"
    gw = fresh([{"name": "v0", "when": {"caller": "19999999999"}, "action": "reject", "status": 480}])
    answers: list[int | None] = []
    stop = threading.Event()

    def traffic() -> None:
        client = UdpClient()
        try:
            while not stop.is_set():
                final, _ = client.call(gw.sg.addr, caller=caller, callee=CALLEE)
                answers.append(final.status if final is not None else None)
        finally:
            client.close()

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        for version in range(1, 7):
            # alternate between two complete policies; each one answers the call differently
            status = 480 if version % 2 else 486
            _replace_policy(gw, [{"name": f"v{version}", "when": {"caller": caller[1:]}, "action": "reject",
                                  "status": status}])
            assert _reloads(gw, version)
            time.sleep(0.1)
        _replace_policy(gw, [{"name": "final", "when": {"caller": caller[1:]}, "action": "reject",
                              "status": 603}])
        assert _reloads(gw, 7)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
    assert answers and None not in answers                       # every call got an answer
    assert set(answers) <= {200, 480, 486, 603}
    assert {480, 486} <= set(answers)                            # both versions decided calls
    final, fwd = gw.call(caller)
    assert final is not None and final.status == 603 and fwd is None


def test_broken_policy_is_refused_and_old_one_keeps_working(fresh: Any) -> None:
    gw = fresh(RULES)
    assert gw.call(DNO_CALLER)[0].status == 603
    text = gw.policy.read_text()
    gw.policy.write_text(text.replace("caller.dno", "caller.dnoo", 1))
    assert wait_for(lambda: "policy not reloaded" in gw.log(), timeout=5), gw.log()[-1500:]
    log = gw.log()
    assert f"{gw.policy}:" in log and "caller.dnoo" in log            # file:line and the problem
    assert gw.call(DNO_CALLER)[0].status == 603                      # the old policy still decides
    assert gw.call("+12127363160")[0].status == 200
    # fixing the file is picked up again
    gw.policy.write_text(text.replace("caller.dno", "caller.anonymous", 1))
    assert wait_for(lambda: "policy reloaded" in gw.log(), timeout=5)
    assert gw.call(DNO_CALLER)[0].status == 200


def test_failed_arriving_signature_is_not_re_signed_by_default(gw: Gateway) -> None:
    """64.6302(b): the failing Identity goes on unaltered; the gateway adds none (sign_failed: false)."""
    ident = gw.shaken.identity(orig="12127369999")           # orig-mismatch
    final, fwd = gw.call("+12127363170", identity=[ident])
    assert final is not None and final.status == 200
    assert fwd.all("Identity") == [ident]
    assert "verstat=TN-Validation-Failed" in (fwd.header("From") or "")


def test_anonymous_caller_is_not_signed(gw: Gateway) -> None:
    final, fwd = gw.call("anonymous")
    assert final is not None and final.status == 200, gw.log()[-1500:]
    assert fwd.all("Identity") == []


def test_redirect_mode_302_carries_the_signature(fresh: Any, tmp_path: Path) -> None:
    gw = fresh(RULES, mode=None)
    config = dict(gw.sg.config)
    config.pop("listen")
    config["mode"] = "redirect"
    (tmp_path / "redirect").mkdir()
    sg = SipguardProcess(config, tmp_path / "redirect").start()
    try:
        client = UdpClient()
        final, _ = client.call(sg.addr, caller="+12127363180", callee=CALLEE)
        client.close()
        assert final is not None and final.status == 302
        idents = final.all("Identity")
        assert len(idents) == 1 and _claims(idents[0])[1]["attest"] == "C"
        assert "verstat=No-TN-Validation" in (final.header("P-Asserted-Identity") or "")
        client = UdpClient()
        final, _ = client.call(sg.addr, caller=DNO_CALLER, callee=CALLEE)
        client.close()
        assert final is not None and final.first == "SIP/2.0 603 Decline"
    finally:
        sg.stop()


def test_trunk_over_its_contracted_rate_gets_503_retry_after(fresh: Any) -> None:
    rules = [{"name": "trunk-over-contract", "when": {"limited": ["per_trunk"]}, "action": "reject",
              "status": 503, "retry_after": 10}]
    trunk = {"id": "carrier-a", "role": "foreign", "sources": ["127.0.0.1/32"], "cps": 0.2,
             "provider": {"name": "Carrier A", "frn": "0012345678", "rmd": "RMD0001234", "country": "GB"}}
    gw = fresh(rules, trunks=[trunk], limits={"per_trunk": {"key": "trunk", "rate": "trunk.cps"}})
    finals = [gw.call(f"+1212736{3200 + n}")[0] for n in range(4)]   # 4 calls in far less than 5 s
    assert finals[0].status == 200
    refused = [f for f in finals if f.status == 503]
    assert refused, [f.status for f in finals]
    assert all(f.header("Retry-After") == "10" for f in refused)
