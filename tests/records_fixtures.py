"""Helpers for the records tests: a CallRecord factory with sensible defaults."""

from __future__ import annotations

from typing import Any

from sipguard.records.record import CallRecord

BASE_TIME = 1_700_000_000.0


def make_record(i: int = 0, **over: Any) -> CallRecord:
    values: dict[str, Any] = dict(
        time=BASE_TIME + i, call_id=f"call-{i}@198.51.100.7", source_ip="198.51.100.7", source_port=5060,
        transport="udp", trunk="carrier-a", trunk_role="foreign", provider_name="Carrier A",
        provider_frn="0012345678", provider_rmd="RMD0001234", provider_country="GB",
        rmd_snapshot="2025-01-01", caller_raw="sip:+12025550123@198.51.100.7", caller="12025550123",
        callee_raw="sip:+13125550188@gw", callee="13125550188", verstat="No-TN-Validation", attest=None,
        origid=None, x5u=None, spc=None, reasons=("no-identity",), rule=None, rule_class=None, notice=None,
        action="forward", status=None, shadow_action=None, signed=False, signed_origid=None,
        identity_dropped=False, next_hop="sip:127.0.0.1:5070", instance="test/0")
    values.update(over)
    return CallRecord(**values)


HOSTILE = '<script>alert("x")</script><img src=https://evil.example/p.gif onerror=alert(1)>'
START = BASE_TIME - BASE_TIME % 3600          # an hour boundary: a report's stretch starts here


def report_day() -> list[CallRecord]:
    """60 calls over six hours: 40 forwarded (unsigned), 12 rejected by dno on carrier-b (A attested,
    failed verification), 6 forwarded and B attested, 2 rejected by a rule with a hostile name on a
    trunk with a hostile name."""
    out = []
    for i in range(40):
        out.append(make_record(i, time=START + i * 300))
    for i in range(12):
        out.append(make_record(100 + i, time=START + 3600 + i * 60, action="reject", status=603, rule="dno",
                               rule_class="deterministic", trunk="carrier-b", attest="A",
                               verstat="TN-Validation-Failed", reasons=("bad-signature",)))
    for i in range(6):
        out.append(make_record(200 + i, time=START + 7200 + i, attest="B", verstat="TN-Validation-Passed",
                               reasons=()))
    for i in range(2):
        out.append(make_record(300 + i, time=START + 5 * 3600 + i, action="reject", status=608, rule=HOSTILE,
                               trunk=HOSTILE, caller=HOSTILE, reasons=(HOSTILE,), verstat=HOSTILE))
    return out
