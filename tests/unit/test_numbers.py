"""Golden tables: real-world number forms -> TN, positive and negative cases side by side.

Every invalid_reason code has at least one row, and every row that must be valid sits
next to a near-miss that must not be (a check that never flags anything is the classic
bug of bogon filters).
"""

from __future__ import annotations

import pytest

from sipguard import numbers
from sipguard.numbers import TN, nanp_region, npa_status, parse_tn, same_caller_callee, uri_span

# (input, e164, valid, invalid_reason, us, nanp)
FORMS: list[tuple[str | None, str | None, bool, str | None, bool, bool]] = [
    # US, every syntax
    ("tel:+1-202-456-1111;phone-context=example.com", "12024561111", True, None, True, True),
    ("tel:+12024561111", "12024561111", True, None, True, True),
    ("sip:+12024561111@gw.example.net;user=phone", "12024561111", True, None, True, True),
    ("sips:+12024561111@gw.example.net;user=phone", "12024561111", True, None, True, True),
    ("sip:2024561111@10.0.0.1", "12024561111", True, None, True, True),
    ("sip:12024561111@10.0.0.1:5060;transport=udp", "12024561111", True, None, True, True),
    ("<sip:+12024561111@gw.example.net;user=phone>", "12024561111", True, None, True, True),
    ('"White House" <sip:+12024561111@gw.example.net;user=phone>;tag=a73kszlfl',
     "12024561111", True, None, True, True),
    ("Bob <tel:+1-202-456-1111>;tag=1", "12024561111", True, None, True, True),
    ("+1 (202) 456-1111", "12024561111", True, None, True, True),
    ("+1.202.456.1111", "12024561111", True, None, True, True),
    ("12024561111", "12024561111", True, None, True, True),
    ("2024561111", "12024561111", True, None, True, True),
    ("(202) 456-1111", "12024561111", True, None, True, True),
    ("sip:%2B12024561111@gw.example.net", "12024561111", True, None, True, True),
    ("sip:user:secret@gw.example.net", None, False, "non-digits", False, False),
    # RFC 4904 trunk group params in the user part, and tel params
    ("sip:+12024561111;tgrp=TG-1;trunk-context=example.com@gw.example.net;user=phone",
     "12024561111", True, None, True, True),
    ("tel:+12024561111;npdi;rn=+12024560000", "12024561111", True, None, True, True),
    ("tel:+12024561111;verstat=TN-Validation-Passed", "12024561111", True, None, True, True),
    # toll-free and US territories count as US
    ("+18005551234", "18005551234", True, None, True, True),
    ("+17875551234", "17875551234", True, None, True, True),   # Puerto Rico
    ("+19395551234", "19395551234", True, None, True, True),   # Puerto Rico overlay
    ("+13405551234", "13405551234", True, None, True, True),   # US Virgin Islands
    ("+16715551234", "16715551234", True, None, True, True),   # Guam
    ("+16845551234", "16845551234", True, None, True, True),   # American Samoa
    ("+16705551234", "16705551234", True, None, True, True),   # Northern Mariana Islands
    # other NANP countries are NANP but not US
    ("+14165551234", "14165551234", True, None, False, True),  # Toronto
    ("+16045551234", "16045551234", True, None, False, True),  # Vancouver
    ("+18765551234", "18765551234", True, None, False, True),  # Jamaica
    ("+12425551234", "12425551234", True, None, False, True),  # Bahamas
    ("+18095551234", "18095551234", True, None, False, True),  # Dominican Republic
    ("+14415551234", "14415551234", True, None, False, True),  # Bermuda
    # international, kept with the country code
    ("+442071838750", "442071838750", True, None, False, False),
    ("tel:+44-20-7183-8750", "442071838750", True, None, False, False),
    ("011442071838750", "442071838750", True, None, False, False),
    ("442071838750", "442071838750", True, None, False, False),
    ("sip:+33142685300@carrier.fr", "33142685300", True, None, False, False),
    ("+4930123456", "4930123456", True, None, False, False),
    ("+999123456789", None, False, "unknown-country", False, False),
    ("+44123", None, False, "wrong-length", False, False),
    ("+4412345678901234", None, False, "wrong-length", False, False),
    # NANP structure
    ("+12021234567", "12021234567", False, "invalid-nxx", True, True),
    ("+12020234567", "12020234567", False, "invalid-nxx", True, True),
    ("+11024561111", "11024561111", False, "invalid-npa", False, True),
    ("10245611110", "10245611110", False, "invalid-npa", False, True),
    ("+12029115555", "12029115555", False, "n11-nxx", True, True),
    ("+14115551234", "14115551234", False, "n11-npa", False, True),
    ("+15555551234", "15555551234", False, "reserved-npa", False, True),
    ("+13705551234", "13705551234", False, "reserved-npa", False, True),
    ("+19605551234", "19605551234", False, "reserved-npa", False, True),
    ("+12915551234", "12915551234", False, "reserved-npa", False, True),
    ("+19505551234", "19505551234", False, "reserved-npa", False, True),
    ("+12105551234", "12105551234", True, None, True, True),   # 210 San Antonio: in service
    ("+12215551234", "12215551234", False, "unassigned-npa", False, True),
    ("+12025550123", "12025550123", False, "fictional", True, True),
    ("+12025550100", "12025550100", False, "fictional", True, True),
    ("+12025550199", "12025550199", False, "fictional", True, True),
    ("+12025550200", "12025550200", True, None, True, True),   # just outside 555-01XX
    ("+12025550099", "12025550099", True, None, True, True),
    ("+1202456111", None, False, "wrong-length", False, True),
    ("+120245611112", None, False, "wrong-length", False, True),
    ("202456111", None, False, "wrong-length", False, False),
    ("4561111", None, False, "wrong-length", False, False),
    ("411", None, False, "n11-service", False, True),
    ("sip:611@carrier.net", None, False, "n11-service", False, True),
    ("+1202ABC1111", None, False, "non-digits", False, False),
    ("sip:alice@example.com", None, False, "non-digits", False, False),
    ("tel:+١٢٠٢٤٥٦١١١١", None, False, "non-digits", False, False),  # Arabic-Indic digits
    ("", None, False, "no-number", False, False),
    ("   ", None, False, "no-number", False, False),
    (None, None, False, "no-number", False, False),
]


@pytest.mark.parametrize(("value", "e164", "valid", "reason", "us", "nanp"), FORMS)
def test_forms(value: str | None, e164: str | None, valid: bool, reason: str | None, us: bool,
               nanp: bool) -> None:
    tn = parse_tn(value)
    assert (tn.e164, tn.valid, tn.invalid_reason, tn.us, tn.nanp) == (e164, valid, reason, us, nanp)
    assert not tn.emergency
    assert tn.valid == (tn.invalid_reason is None)
    assert tn.raw == (value or "")


# (input, forms): what a PASSporT tn may say for the number (ATIS-1000074, RFC 8224 section 8.3).
# Calls from abroad carry foreign caller IDs every day, with and without "+".
PASSPORT_FORMS: list[tuple[str | None, tuple[str, ...]]] = [
    # written with "+": one form, the E.164 digits
    ("+12024561111", ("12024561111",)),
    ("tel:+1-202-456-1111;phone-context=example.com", ("12024561111",)),
    ("<sip:+12024561111;verstat=TN-Validation-Passed@gw;user=phone>", ("12024561111",)),
    ("+439991001", ("439991001",)),                         # Austria, 9 digits
    ("tel:+43-999-1001", ("439991001",)),
    ("sip:+442071838750@carrier.example;user=phone", ("442071838750",)),
    ("tel:+33-1-42-68-53-00", ("33142685300",)),            # France
    ("+4930123456", ("4930123456",)),                       # Germany, 10 digits: not NANP
    ("<sip:+81312345678@jp.example;user=phone>", ("81312345678",)),    # Japan
    ("tel:+52-55-1234-5678", ("525512345678",)),            # Mexico
    ("+8613812345678", ("8613812345678",)),                 # China, 13 digits
    ("+44123", ("44123",)),                                 # not valid: its digits, compared exactly
    # without "+": the E.164 reading and the digits as written (which one only the sender knows)
    ("439991001", ("439991001",)),
    ("sip:439991001@carrier.example", ("439991001",)),
    ("tel:439991001;phone-context=+43", ("439991001",)),
    ("442071838750", ("442071838750",)),
    ("sip:919876543210@in.example", ("919876543210",)),    # India
    ("011442071838750", ("442071838750", "011442071838750")),
    ("02071838750", ("02071838750",)),                      # UK national form
    ("0142685300", ("0142685300",)),                        # French national: no NANP "1" for it
    ("4930123456", ("14930123456", "4930123456")),
    ("2024561111", ("12024561111", "2024561111")),
    ("sip:(202) 456-1111@gw", ("12024561111", "2024561111")),
    ("12024561111", ("12024561111",)),
    ("911", ("911",)),
    # no number, no form
    ("sip:anonymous@anonymous.invalid", ()), ("sip:alice@example.com", ()), ("urn:service:sos", ()),
    ("+1202ABC1111", ()), ("", ()), (None, ()), ("+" + "1" * 40, ()),
]


@pytest.mark.parametrize(("value", "forms"), PASSPORT_FORMS)
def test_passport_forms(value: str | None, forms: tuple[str, ...]) -> None:
    assert parse_tn(value).forms == forms


ANONYMOUS = [
    "sip:anonymous@anonymous.invalid",
    '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=hyh8',
    "anonymous@anonymous.invalid",
    "<sip:anonymous@10.0.0.1>",
    "Anonymous",
    "sip:Restricted@carrier.net",
    "sip:withheld@carrier.net",
    "sip:Private@carrier.net",
    "sip:unavailable@carrier.net",
    "sip:carrier.net",               # no user part at all
    "<sip:@carrier.net>",
    "<>",
    "tel:anonymous",
    "sip:12024561111@anonymous.invalid",  # RFC 3323: the host alone marks it anonymous
]


@pytest.mark.parametrize("value", ANONYMOUS)
def test_anonymous(value: str) -> None:
    tn = parse_tn(value)
    assert tn.anonymous and not tn.valid and tn.invalid_reason == "anonymous"
    assert tn.e164 is None and not tn.us


EMERGENCY = ["911", "+1911", "1911", "tel:911", "sip:911@psap.example.net", "sip:+1911@gw;user=phone",
             "<sip:911@10.0.0.1>", "urn:service:sos", "urn:service:sos.fire", "URN:Service:SOS.police",
             "<urn:service:sos>"]


@pytest.mark.parametrize("value", EMERGENCY)
def test_emergency(value: str) -> None:
    tn = parse_tn(value)
    assert tn.emergency and tn.valid and tn.invalid_reason is None


@pytest.mark.parametrize("value", ["urn:service:sossy", "urn:service:counseling", "9111", "+19115551234"])
def test_not_emergency(value: str) -> None:
    assert not parse_tn(value).emergency


@pytest.mark.parametrize(("npa", "region"), [
    ("212", "US"), ("416", "CA"), ("876", "JM"), ("787", "PR"), ("340", "VI"), ("671", "GU"),
    ("684", "AS"), ("670", "MP"), ("809", "DO"), ("800", "US"), ("600", "CA"),
    ("555", None), ("911", None), ("221", None), ("000", None), ("abc", None),
])
def test_nanp_region(npa: str, region: str | None) -> None:
    assert nanp_region(npa) == region


def test_npa_status_covers_every_npa() -> None:
    statuses = {npa_status(f"{n:03d}") for n in range(200, 1000)}
    assert statuses <= {"geographic", "non-geographic", "reserved", "unassigned"}
    assert npa_status("212") == "geographic" and npa_status("800") == "non-geographic"
    assert npa_status("555") == "reserved" and npa_status("099") == "unassigned"


@pytest.mark.parametrize(("a", "b", "same"), [
    ("sip:+12024561111@a;user=phone", "tel:2024561111", True),
    ("12024561111", "+1 202 456 1112", False),
    ("sip:anonymous@anonymous.invalid", "sip:anonymous@anonymous.invalid", False),
    ("", "", False),
    ("+442071838750", "011442071838750", True),
])
def test_same_caller_callee(a: str, b: str, same: bool) -> None:
    assert same_caller_callee(parse_tn(a), parse_tn(b)) is same


def test_cached_result_is_the_same_object() -> None:
    # A form the short path does not take (011, names, anonymous ...): one dict lookup, not a parse.
    assert parse_tn("sip:011442071838750@gw") is parse_tn("sip:011442071838750@gw")


def test_the_usual_forms_are_read_each_time_not_cached() -> None:
    # Nearly every call brings new numbers: the short path (numbers._direct) costs what a cache
    # look-up did, and its entries would only hold memory (bench/RESULTS.md, session 15).
    numbers.clear_cache()
    first, second = parse_tn("sip:+12024561111@gw"), parse_tn("sip:+12024561111@gw")
    assert first == second and first is not second and first.e164 == "12024561111"
    assert numbers.cache_info()[2] == 0


def test_never_raises_on_odd_input() -> None:
    for value in ["<", ">", "<sip:", "sip:", "tel:", "urn:", ";;;", "@", "+", "++1", "\x00", "sip:@",
                  '"unterminated <sip:1@x', "tel:+;x", "sip:;@", "%", "sip:%2@x"]:
        tn = parse_tn(value)
        assert isinstance(tn, TN)
        assert tn.valid == (tn.invalid_reason is None)


def test_long_values_are_parsed_but_not_cached() -> None:
    value = '"' + "x" * 400 + '" <sip:+12024561111@gw.example.net;user=phone>;tag=1'
    first, second = parse_tn(value), parse_tn(value)
    assert first.e164 == "12024561111" and first.valid
    assert first == second and first is not second
    numbers.clear_cache()
    value = '"' + "x" * 400 + '" <sip:011442071838750@gw.example.net;user=phone>;tag=1'
    first, second = parse_tn(value), parse_tn(value)
    assert first.e164 == "442071838750" and first == second and first is not second
    assert numbers.cache_info()[2] == 0


@pytest.mark.parametrize(("value", "span"), [
    ("sip:+12025550100@gw", (0, 19)),                          # no <: the whole value
    ('"A <b>" <sip:+12025550100@gw>;tag=x', (4, 5)),          # the first < and the > after it
    ("<sip:+12025550100@gw>;tag=1", (1, 20)),
    ("Bob <sip:+12025550100@gw", (5, -1)),                    # no >: read to the end
    ("", (0, 0)),
])
def test_uri_span_is_where_a_header_value_is_read(value: str, span: tuple[int, int]) -> None:
    assert uri_span(value) == span
    start, end = span
    if start and end >= 0:   # parse_tn reads the value and its span alike
        assert parse_tn(value).e164 == parse_tn(value[start:end]).e164
