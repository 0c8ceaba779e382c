"""Edge-proxy model end to end: UAC -> Kamailio (dispatcher) -> 2 x sipguard -> UAS.

A signed call arrives with verstat, a forged one gets 438 and a blocked one 603 Network
Blocked relayed unchanged (never retried on the other sipguard), an unsigned one arrives
signed, and with sipguard #1 stopped the calls complete through sipguard #2.
"""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kamailio_fixtures import (
    BLOCKED_CALLER,
    CALLEE,
    CALLER,
    EDGE_CFG,
    Kamailio,
    Screening,
    write_dispatcher_list,
)
from tests.sipclient import MiniUas, UdpClient

pytestmark = pytest.mark.integration
FAILOVER_LINE = "trying the next one"


@pytest.fixture
def edge(tmp_path: Path, sipguard: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    screening = Screening(tmp_path / "screening")
    uas = MiniUas()
    guards = [sipguard(screening.config("proxy", uas.port), run=False) for _ in range(2)]
    for guard in guards:
        guard.start()
    ds_list = write_dispatcher_list(tmp_path / "dispatcher.list", [g.port for g in guards])
    kam = Kamailio(EDGE_CFG, tmp_path, {"DS_LIST": f'"{ds_list}"', "DS_PING_INTERVAL": "1",
                                        "SIPGUARD_TIMEOUT": "1000", "DS_ALG": "4"}).start()
    client = UdpClient()
    try:
        yield {"kam": kam, "uas": uas, "guards": guards, "screening": screening, "client": client}
    finally:
        client.close()
        kam.stop()
        uas.close()
        screening.close()


def passport_claims(identity: str) -> dict[str, Any]:
    payload = identity.split(";", 1)[0].split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_signed_call_is_forwarded_with_verstat(edge: dict[str, Any]) -> None:
    final, _ = edge["client"].call(edge["kam"].addr, caller=CALLER, callee=CALLEE,
                                   identity=[edge["screening"].identity()],
                                   pai=f"<sip:{CALLER}@127.0.0.1;user=phone>")
    assert final is not None and final.status == 200, edge["kam"].log()
    invite = edge["uas"].wait_invites(1)[-1]
    assert "verstat=TN-Validation-Passed" in (invite.header("P-Asserted-Identity") or "")
    # Kamailio stayed in the dialog, so BYE and re-INVITE come back through it
    assert any(f"127.0.0.1:{edge['kam'].port}" in rr for rr in invite.all("Record-Route"))


@pytest.mark.parametrize(("caller", "status", "reason"), [
    (CALLER, 438, "orig-mismatch"),
    (BLOCKED_CALLER, 603, None),
])
def test_rejection_is_relayed_unchanged_and_never_retried(edge: dict[str, Any], caller: str, status: int,
                                                          reason: str | None) -> None:
    # signed for another number: orig-mismatch -> 438 (RFC 8224), with its Reason
    identity = edge["screening"].identity(orig=caller, signed_orig="+12127363101" if reason else None)
    for _ in range(2):  # round robin: both sipguards get one, neither result is failed over
        final, _ = edge["client"].call(edge["kam"].addr, caller=caller, identity=[identity])
        assert final is not None and final.status == status, edge["kam"].log()
        reason_header = final.header("Reason") or ""
        if reason:
            assert reason in reason_header
        else:
            assert final.first.endswith("Network Blocked")
            assert "Q.850" in reason_header or "cause=" in reason_header
    assert edge["uas"].invites() == []
    assert FAILOVER_LINE not in edge["kam"].log()


def test_unsigned_call_arrives_signed(edge: dict[str, Any]) -> None:
    final, _ = edge["client"].call(edge["kam"].addr, caller=CALLER, callee=CALLEE)
    assert final is not None and final.status == 200, edge["kam"].log()
    invite = edge["uas"].wait_invites(1)[-1]
    identity = invite.header("Identity")
    assert identity is not None, invite.raw.decode(errors="replace")
    claims = passport_claims(identity)
    assert claims["attest"] == "C"
    assert claims["orig"]["tn"] == CALLER.lstrip("+")
    assert invite.header("X-Call-Screen") == "gateway-signed"


def test_stopped_sipguard_fails_over_to_the_other(edge: dict[str, Any]) -> None:
    first, second = edge["guards"]
    first.signal(signal.SIGTERM)
    assert first.proc.wait(15) == 0
    for n in range(4):
        final, _ = edge["client"].call(edge["kam"].addr, caller=CALLER, callee=CALLEE,
                                       identity=[edge["screening"].identity()])
        assert final is not None and final.status == 200, f"call {n}:\n{edge['kam'].log()}"
    assert len(edge["uas"].wait_invites(4)) == 4
    assert all("verstat=TN-Validation-Passed" in (m.header("P-Asserted-Identity") or m.header("From") or "")
               for m in edge["uas"].invites())
    assert second.proc.poll() is None


def test_trunks_match_the_carrier_behind_kamailio(tmp_path: Path, sipguard: Callable[..., Any]) -> None:
    """Kamailio (127.0.0.1) adds X-Sipguard-Source; sipguard trusts it only from Kamailio and
    matches the trunk on the carrier's own address (127.0.0.2), refusing a stranger (127.0.0.3)."""
    screening = Screening(tmp_path / "screening")
    uas = MiniUas()
    config = screening.config("proxy", uas.port, trusted_proxies=["127.0.0.1/32"])
    config["trunks"][0]["sources"] = ["127.0.0.2/32"]
    guard = sipguard(config)
    ds_list = write_dispatcher_list(tmp_path / "dispatcher.list", [guard.port])
    kam = Kamailio(EDGE_CFG, tmp_path, {"DS_LIST": f'"{ds_list}"', "DS_PING_INTERVAL": "1",
                                        "SIPGUARD_TIMEOUT": "1000", "DS_ALG": "4"}).start()
    carrier, stranger = UdpClient("127.0.0.2"), UdpClient("127.0.0.3")
    try:
        final, _ = carrier.call(kam.addr, caller=CALLER, callee=CALLEE,
                                extra=["X-Sipguard-Source: 127.0.0.9:5060"])  # a forged one is replaced
        assert final is not None and final.status == 200, kam.log()
        forwarded = uas.wait_invites(1)[0]
        assert forwarded.header("X-Sipguard-Source") is None  # internal to Kamailio <-> sipguard
        final, _ = stranger.call(kam.addr, caller=CALLER, callee=CALLEE)
        assert final is not None and final.status == 403
    finally:
        carrier.close()
        stranger.close()
        kam.stop()
        uas.close()
        screening.close()
