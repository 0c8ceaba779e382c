"""The ITG answer document and its text (pure parts): zones, missing details, signing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.records.answer import Request, build, render, summary, zone_of
from tests.records_fixtures import BASE_TIME, make_record


@pytest.mark.parametrize(("text", "zone"), [
    ("2025-08-06T14:03:00Z", "UTC+00:00"), ("2025-08-06T10:03-04:00", "UTC-04:00"),
    ("2025-08-06T19:33+05:30", "UTC+05:30"), ("2025-08-06 14:03", "none given: taken as UTC"),
    ("1754489000", "epoch seconds (UTC)"), (None, "none"), ("yesterday", "unknown"),
])
def test_zone_of(text: str | None, zone: str) -> None:
    assert zone_of(text) == zone


def test_an_upstream_without_details_is_still_named_as_such() -> None:
    r = make_record(provider_name=None, provider_frn=None, provider_rmd=None, provider_country=None,
                    trunk=None)
    assert summary(r) == ("Received from an unnamed upstream on trunk - from 198.51.100.7:5060 at "
                          "2023-11-14T22:13:20.000Z; forwarded.")


def test_signed_call_carries_our_signing_settings() -> None:
    r = make_record(signed=True, signed_origid="oid-1")
    doc = build(Request(None, None, None, None, "call-0@198.51.100.7", None, None), [r],
                ({}, {"attest": "C", "x5u": "https://certs.example.net/sg.pem"}), BASE_TIME + 3600)
    assert doc["calls"][0]["we_signed"] == {"signed": True, "origid": "oid-1", "attest": "C",
                                            "x5u": "https://certs.example.net/sg.pem",
                                            "note": "attestation and x5u as configured now"}
    text = render(doc)
    assert "Request: Call-ID call-0@198.51.100.7" in text
    assert "Searched: the first record to now (UTC)" in text
    assert ("Signed by us:       attestation C, origid oid-1, x5u https://certs.example.net/sg.pem "
            "(attestation and x5u as configured now)") in text
    assert "Upstream contact:   (not configured: trunks[].provider.contact)" in text

_TEXT = st.none() | st.text(max_size=20)


@settings(max_examples=300)
@given(name=_TEXT, frn=_TEXT, rmd=_TEXT, country=_TEXT, trunk=_TEXT, caller=_TEXT, raw=_TEXT,
       action=st.sampled_from(["forward", "reject"]), status=st.none() | st.integers(100, 699),
       signed=st.booleans(), reasons=st.lists(st.text(max_size=12), max_size=3), at=_TEXT)
def test_any_record_makes_an_answer(name: str | None, frn: str | None, rmd: str | None, country: str | None,
                                    trunk: str | None, caller: str | None, raw: str | None, action: str,
                                    status: int | None, signed: bool, reasons: list[str], at: str | None) -> None:
    """Whatever a stored record holds (older rows leave fields empty), the answer is made."""
    r = make_record(provider_name=name, provider_frn=frn, provider_rmd=rmd, provider_country=country,
                    trunk=trunk, caller=caller, caller_raw=raw, action=action, status=status, signed=signed,
                    reasons=tuple(reasons))
    doc = build(Request(caller, None, at, None, None, None, None), [r], ({}, None), BASE_TIME)
    text = render(doc)
    assert doc["answer"] == "found" and text.count("\nCall 1: ") == 1
    assert summary(r) in text


def test_short_codes_and_rules_not_applied_read_right() -> None:
    r = make_record(callee="911", callee_raw="sip:911@gw", rule="do-not-originate", shadow_action="reject")
    text = render(build(Request(None, None, None, None, None, None, None), [r], ({}, None), BASE_TIME))
    assert "Called number:      911 (as received: sip:911@gw)" in text
    assert ("Our action:         forward (rule do-not-originate chose reject; not applied: shadow mode "
            "or an emergency call) to sip:127.0.0.1:5070") in text


def test_signed_call_recorded_with_its_attestation_and_rule() -> None:
    r = make_record(signed=True, signed_origid="oid-1", signed_attest="B", signed_rule="sign-customers")
    doc = build(Request(None, None, None, None, "call-0@198.51.100.7", None, None), [r],
                ({}, {"attest": "C", "x5u": "https://certs.example.net/sg.pem"}), BASE_TIME + 3600)
    assert doc["calls"][0]["we_signed"] == {"signed": True, "origid": "oid-1", "attest": "B",
                                            "attest_rule": "sign-customers",
                                            "x5u": "https://certs.example.net/sg.pem"}
    assert ("Signed by us:       attestation B (decided by rule sign-customers), origid oid-1, "
            "x5u https://certs.example.net/sg.pem\n") in render(doc)
