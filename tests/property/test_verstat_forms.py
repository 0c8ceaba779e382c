"""act.verstat_of reads a name-addr value's number from its URI alone (act.forms_of), the
number-cache entry Call.of made, instead of the whole value (display name, per-call tag) that
never hits the cache: the same forms, hence the same verstat, for every value."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipguard import numbers
from sipguard.numbers import parse_tn
from sipguard.proxy import act
from sipguard.shaken.passport import tn_matches
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.result import Verification
from tests.property.test_numbers_direct import common_values, header_values

HOSTILE = "<>\"';@:, \t\r\n\x00+%é１"
displays = st.sampled_from(["", '"Caller" ', "Bob ", '"<sip:+12025550199@x>" ', '"a>b" ', "< ", '"" ', "\t",
                            '"Jos\u00e9 \\"J\\"" ', "<<"])
params = st.sampled_from(["", ";tag=77SIPpTag001", ";tag=a>b", ";tag=<sip:+13035550100@h>", ">", "<", ";x=\"<>\"",
                          ",<sip:+14155550100@h>", ";verstat=TN-Validation-Passed"])
orig_tns = st.sampled_from(["12025550123", "2025550123", "+12025550123", "442071838750", "13036231000", "", "911"])


@st.composite
def identity_values(draw: st.DrawFn) -> str:
    """PAI / From values of every shape: display names, tags, tel and sip URIs, several values
    in one, brackets out of place, hostile characters."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(header_values())
    if kind == 1:
        return draw(common_values())
    if kind == 2:
        uri = draw(st.one_of(header_values(), common_values()))
        return draw(displays) + "<" + uri + ">" + draw(params)
    return draw(st.text(alphabet=HOSTILE + "0123456789sipteluser=phone", max_size=80))


def old_verstat_of(value: str, ver: Verification) -> str:
    """verstat_of as it was: the whole value parsed."""
    if ver.verstat is Verstat.PASSED and not tn_matches(ver.orig_tn or "", parse_tn(value).forms):
        return Verstat.FAILED.value
    return ver.verstat.value


@settings(max_examples=3000, deadline=None)
@given(identity_values())
@example('"Caller" <sip:+12025550123@gw;user=phone>;tag=77SIPpTag001')
@example("<>;tag=x")
@example("<  >")
@example("<sip:+12025550123@anonymous.in>valid")
@example('"<" <sip:+12025550123@h>')
@example("<sip:+12025550123@h")
@example("sip:+12025550123@h;tag=<x>")
@example("<tel:+1-202-555-0123;verstat=TN-Validation-Passed>;tag=1")
@example("<sip:+12025550123@h>, <tel:+13035550100>")
@example("<" + "1" * 300 + ">")
def test_forms_of_is_parse_tn_forms(value: str) -> None:
    assert act.forms_of(value) == parse_tn(value).forms


@settings(max_examples=3000, deadline=None)
@given(identity_values(), orig_tns, st.sampled_from(list(Verstat)))
@example('"Caller" <sip:+12025550123@gw;user=phone>;tag=77SIPpTag001', "12025550123", Verstat.PASSED)
@example('"Caller" <sip:+12025550123@gw;user=phone>;tag=77SIPpTag001', "13036231000", Verstat.PASSED)
@example("<tel:2025550123>;tag=x", "2025550123", Verstat.PASSED)
@example("<sip:anonymous@anonymous.invalid>;tag=x", "", Verstat.PASSED)
@example("<>", "", Verstat.PASSED)
def test_verstat_of_is_the_old_one(value: str, orig: str, verstat: Verstat) -> None:
    reasons = () if verstat in (Verstat.PASSED, Verstat.NONE) else (Reason.BAD_SIGNATURE,)
    ver = Verification(verstat, attest="A", orig_tn=orig or None, reasons=reasons)
    assert act.verstat_of(value, ver) == old_verstat_of(value, ver)


def test_the_uri_is_the_number_cache_entry_call_of_made() -> None:
    """The point of forms_of: a From value with its per-call tag hits the entry of its URI (of a
    form parse_tn caches: the usual ones are read each time)."""
    numbers.clear_cache()
    uri = "sip:011442071838750@gw.example.net;user=phone"
    first = parse_tn(uri)          # what Call.of parses
    hits = numbers.cache_info()[0]
    assert act.forms_of(f'"Caller" <{uri}>;tag=77SIPpTag00{hits}') == first.forms
    assert numbers.cache_info()[0] == hits + 1
    assert numbers.cache_info()[2] == 1
