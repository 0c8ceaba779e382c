"""The ITG answer document and its text (pure parts): zones, missing details, signing."""

from __future__ import annotations

import pytest

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
