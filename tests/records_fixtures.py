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
