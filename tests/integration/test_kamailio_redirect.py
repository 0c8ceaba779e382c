"""Redirect model end to end: UAC -> Kamailio -> sipguard (mode: redirect) -> 302 -> UAS.

Kamailio copies the 302's PAI;verstat, Identity and tag headers onto the INVITE and routes
it on; a rejection is relayed unchanged; with sipguard down the documented fallback
applies: fail-open (routed on, "X-Sipguard-Screened: no", no verstat) by default,
503 with WITH_FAIL_CLOSED.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kamailio_fixtures import BLOCKED_CALLER, CALLEE, CALLER, REDIRECT_CFG, Kamailio, Screening
from tests.sipclient import MiniUas, UdpClient

pytestmark = pytest.mark.integration


@pytest.fixture
def redirect(tmp_path: Path, sipguard: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    screening = Screening(tmp_path / "screening")
    uas = MiniUas()
    guard = sipguard(screening.config("redirect", uas.port))
    kams: list[Kamailio] = []

    def kamailio(**defines: str | None) -> Kamailio:
        kam = Kamailio(REDIRECT_CFG, tmp_path, {"SIPGUARD_URI": f'"sip:127.0.0.1:{guard.port}"',
                                                "CORE_URI": f'"sip:127.0.0.1:{uas.port}"',
                                                "SIPGUARD_TIMEOUT": "500", **defines})
        kams.append(kam)
        return kam.start()

    client = UdpClient()
    try:
        yield {"kamailio": kamailio, "uas": uas, "guard": guard, "screening": screening, "client": client}
    finally:
        client.close()
        for kam in kams:
            kam.stop()
        uas.close()
        screening.close()


def test_accepted_call_is_routed_on_with_verstat(redirect: dict[str, Any]) -> None:
    kam = redirect["kamailio"]()
    forged = ["X-Sipguard-Verstat: TN-Validation-Passed"]
    final, _ = redirect["client"].call(kam.addr, caller=CALLER, callee=CALLEE, extra=forged,
                                       identity=[redirect["screening"].identity()],
                                       pai=f"<sip:{CALLER}@127.0.0.1;user=phone>")
    assert final is not None and final.status == 200, kam.log()
    invite = redirect["uas"].wait_invites(1)[-1]
    assert "verstat=TN-Validation-Passed" in (invite.header("P-Asserted-Identity") or "")
    assert len(invite.all("P-Asserted-Identity")) == 1
    assert invite.all("X-Sipguard-Verstat") == ["TN-Validation-Passed"]
    # the caller's own Identity goes on untouched
    assert invite.all("Identity") and invite.header("Identity").startswith("ey")


def test_unsigned_call_is_routed_on_signed_and_tagged(redirect: dict[str, Any]) -> None:
    kam = redirect["kamailio"]()
    final, _ = redirect["client"].call(kam.addr, caller=CALLER, callee=CALLEE)
    assert final is not None and final.status == 200, kam.log()
    invite = redirect["uas"].wait_invites(1)[-1]
    assert len(invite.all("Identity")) == 1
    assert invite.header("X-Call-Screen") == "gateway-signed"
    assert invite.header("X-Sipguard-Rule") == "sign-unsigned"
    assert "verstat=No-TN-Validation" in (invite.header("P-Asserted-Identity") or "")


@pytest.mark.parametrize(("caller", "status"), [(CALLER, 438), (BLOCKED_CALLER, 603)])
def test_rejection_is_relayed_unchanged(redirect: dict[str, Any], caller: str, status: int) -> None:
    kam = redirect["kamailio"]()
    identity = redirect["screening"].identity(orig=caller, signed_orig="+12127363101" if status == 438 else None)
    final, _ = redirect["client"].call(kam.addr, caller=caller, identity=[identity])
    assert final is not None and final.status == status, kam.log()
    assert final.header("Reason")
    if status == 603:
        assert final.first.endswith("Network Blocked")
    assert redirect["uas"].invites() == []


def test_sipguard_down_fails_open_by_default(redirect: dict[str, Any]) -> None:
    kam = redirect["kamailio"]()
    redirect["guard"].signal(signal.SIGTERM)
    assert redirect["guard"].proc.wait(15) == 0
    final, _ = redirect["client"].call(kam.addr, caller=CALLER, callee=CALLEE,
                                       pai=f"<sip:{CALLER};verstat=TN-Validation-Passed@127.0.0.1;user=phone>",
                                       extra=["X-Sipguard-Verstat: TN-Validation-Passed"])
    assert final is not None and final.status == 200, kam.log()
    invite = redirect["uas"].wait_invites(1)[-1]
    assert invite.header("X-Sipguard-Screened") == "no"
    assert invite.all("X-Sipguard-Verstat") == []
    assert "verstat" not in (invite.header("P-Asserted-Identity") or "")


def test_sipguard_down_fails_closed_when_chosen(redirect: dict[str, Any]) -> None:
    kam = redirect["kamailio"](WITH_FAIL_CLOSED=None)
    redirect["guard"].signal(signal.SIGTERM)
    assert redirect["guard"].proc.wait(15) == 0
    final, _ = redirect["client"].call(kam.addr, caller=CALLER, callee=CALLEE)
    assert final is not None and final.status == 503, kam.log()
    assert final.header("Retry-After")
    assert redirect["uas"].invites() == []


OTHER = "+13125550000"  # a number nobody signed for


def test_the_invite_leaving_kamailio_shows_passed_only_on_the_signed_number(redirect: dict[str, Any]) -> None:
    """PAI with a sip and a tel value of different numbers, PASSporT for the sip one, and an
    upstream From claiming Passed: what reaches the core has Passed on the signed PAI value
    only, Failed on the other, no verstat on From, and the attestation for the policy."""
    kam = redirect["kamailio"]()
    client = redirect["client"]
    forged_from = f"{CALLER};verstat=TN-Validation-Passed"
    final, _ = client.call(kam.addr, caller=forged_from, callee=CALLEE, identity=[redirect["screening"].identity()],
                           pai=f"<sip:{CALLER}@127.0.0.1;user=phone>, <tel:{OTHER}>",
                           extra=["X-Sipguard-Attest: A"])
    assert final is not None and final.status == 200, kam.log()
    invite = redirect["uas"].wait_invites(1)[-1]
    pais = [v.strip() for line in invite.all("P-Asserted-Identity") for v in line.split(",")]
    assert sorted(pais) == sorted([f"<sip:{CALLER};verstat=TN-Validation-Passed@127.0.0.1;user=phone>",
                                   f"<tel:{OTHER};verstat=TN-Validation-Failed>"]), pais
    assert "verstat" not in (invite.header("From") or ""), invite.header("From")
    assert invite.all("X-Sipguard-Verstat") == ["TN-Validation-Passed"]
    assert invite.all("X-Sipguard-Attest") == ["A"]  # sipguard's, the forged one dropped
    assert len(invite.all("Identity")) == 1 and invite.header("Identity").startswith("ey")  # the caller's


def test_unsigned_call_with_a_forged_from_verstat(redirect: dict[str, Any]) -> None:
    """No PAI: sipguard's 302 brings one with the call's verstat; the From claim is removed and
    no attestation is claimed for a call no PASSporT verified."""
    kam = redirect["kamailio"]()
    final, _ = redirect["client"].call(kam.addr, caller=f"{CALLER};verstat=TN-Validation-Passed", callee=CALLEE)
    assert final is not None and final.status == 200, kam.log()
    invite = redirect["uas"].wait_invites(1)[-1]
    assert "verstat" not in (invite.header("From") or "")
    assert invite.all("P-Asserted-Identity") == [f"<sip:{CALLER};verstat=No-TN-Validation@127.0.0.1;user=phone>"]
    assert invite.all("X-Sipguard-Attest") == []
    assert len(invite.all("Identity")) == 1  # the gateway signed it (sign-unsigned)


def test_identity_without_ppt_is_refused_through_kamailio(redirect: dict[str, Any]) -> None:
    kam = redirect["kamailio"]()
    identity = redirect["screening"].identity().replace(";ppt=shaken", "")
    final, _ = redirect["client"].call(kam.addr, caller=CALLER, callee=CALLEE, identity=[identity])
    assert final is not None and final.status == 438, kam.log()
    assert 'text="missing-ppt"' in (final.header("Reason") or "")
    assert redirect["uas"].invites() == []


@pytest.mark.parametrize(("rcdi", "found"), [("good", "verified"), ("tampered", "failed")])
def test_rcd_results_reach_the_core_through_the_302(redirect: dict[str, Any], rcdi: str, found: str) -> None:
    """A rule tags rcd from a foreign trunk (tag passports: true): the 302 carries
    X-Sipguard-Rcd, Kamailio copies it onto the INVITE, and both Identity headers the caller
    sent (shaken and rcd) leave Kamailio unaltered; a forged X-Sipguard-Rcd is dropped."""
    kam = redirect["kamailio"]()
    screening = redirect["screening"]
    identities = [screening.identity(), screening.rcd(rcdi=rcdi)]
    final, _ = redirect["client"].call(kam.addr, caller=CALLER, callee=CALLEE, identity=identities,
                                       pai=f"<sip:{CALLER}@127.0.0.1;user=phone>",
                                       extra=["X-Sipguard-Rcd: verified"])
    assert final is not None and final.status == 200, kam.log()
    invite = redirect["uas"].wait_invites(1)[-1]
    assert invite.all("X-Sipguard-Rcd") == [found]
    assert invite.header("X-Call-Screen") == "rcd-foreign"
    assert invite.header("X-Sipguard-Rule") == "flag-rcd-from-foreign-trunk"
    assert invite.all("X-Sipguard-Div") == []
    assert [v.split(";")[0] for v in invite.all("Identity")] == [v.split(";")[0] for v in identities]
