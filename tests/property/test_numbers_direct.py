"""numbers._direct (the short path for the forms nearly every call carries) against
numbers._parse_full (the definition): the same TN for every input it takes, None for the rest."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipguard import numbers
from sipguard.numbers import parse_tn

# digits as the network may send them: ASCII, other scripts' digits and superscripts (isdigit()
# is true for '²' and '٣', int() of some of them fails), visual separators, whitespace
ODD = "²٣１߁\n\xa0+;@:%<>"
SEPARATORS = "-.() \t/"


@st.composite
def users(draw: st.DrawFn, odd: bool = True) -> str:
    """Mostly numbers of about the right length (the direct path's forms), spaced or not, with
    now and then a character from another script or out of place."""
    size = draw(st.sampled_from([10, 11, 10, 11, 9, 12, 7, 15, 16, 6, 3, 0]))
    chars = list(draw(st.text(alphabet="0123456789", min_size=size, max_size=size)))
    for _ in range(draw(st.integers(0, 4))):
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from(SEPARATORS)))
    if odd and draw(st.integers(0, 3)) == 0:
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from(ODD)))
    return "".join(chars)


leads = st.sampled_from(["", "+", " +", "+ ", "%2B", "1", "011", "+1", "+44", "ab"])
schemes = st.sampled_from(["sip:", "sips:", "tel:", "", "SIP:", "Tel:", "urn:", "sip: ", "mailto:"])
user_params = st.sampled_from(["", ";npdi", ";npdi;rn=+12025550000", ";rn=2025550000", ";tgrp=TG-1;trunk-context=x",
                               ":secret", ";verstat=TN-Validation-Passed", ";", "@"])
hosts = st.sampled_from(["@gw.example.net", "@127.0.0.1:5061", "@anonymous.invalid", "@ANONYMOUS.Invalid",
                         "@anonymous.invalid;user=phone", "@anonymous.invalidx", "@", "", "@a", "@h;x@y"])
uri_params = st.sampled_from(["", ";user=phone", ";transport=udp;user=phone", ";npdi", ">", "<"])
wrappers = st.sampled_from(["{}", "<{}>", '"Caller" <{}>;tag=77SIPpTag001', "Bob <{}>", "<{}", "{}>", " {} ",
                            "{}\n", "\t{}", "< {} >", '"<" <{}>', "<{}>;tag=<x>", "<>{}"])


@st.composite
def header_values(draw: st.DrawFn) -> str:
    uri = (draw(schemes) + draw(leads) + draw(users()) + draw(user_params) + draw(hosts) + draw(uri_params))
    return draw(wrappers).format(uri)


@st.composite
def common_values(draw: st.DrawFn) -> str:
    """The forms the direct path takes, and their near misses."""
    scheme = draw(st.sampled_from(["sip:", "sips:", "tel:", ""]))
    user = draw(st.sampled_from(["", "+", "1", "+1", "+44"])) + draw(users(odd=False))
    params = draw(st.sampled_from(["", ";npdi", ";npdi;rn=+12025550000", ";tgrp=TG-1;trunk-context=x"]))
    host = (draw(st.sampled_from(["@gw.example.net", "@127.0.0.1:5061", "@anonymous.invalid", "@Anonymous.INVALID"]))
            if scheme.startswith("sip") else "")
    uri = scheme + user + params + host + draw(st.sampled_from(["", ";user=phone"]))
    return draw(st.sampled_from(["{}", "<{}>", '"Caller" <{}>;tag=77SIPpTag001', "{} "])).format(uri)


def check(value: str) -> None:
    full = numbers._parse_full(value)
    direct = numbers._direct(value)
    assert direct is None or direct == full, (value, direct, full)
    assert parse_tn(value) == full


@settings(max_examples=3000)
@given(st.one_of(common_values(), header_values()))
@example("sip:+12024561111@anonymous.invalid")
@example("<sip:2024561111@ANONYMOUS.INVALID>")
@example("tel:+1-202-456-1111 ")
@example("tel:+1-202-456-1111\n")
@example("sip:0112024561111@h")
@example("0112345678")
@example("+1911")
@example("+911")
@example("12024561111²")
@example("tel:+٣٣١٤٢٦٨٥٣٠٠")
@example("")
@example("<>")
@example("<tel:+4420718387501")
@example("<2024561111")
@example("<+>")
@example("+")
def test_direct_is_the_definition_on_header_values(value: str) -> None:
    check(value)


@settings(max_examples=1000)
@given(st.text(max_size=60))
def test_direct_is_the_definition_on_any_text(value: str) -> None:
    check(value)


@pytest.mark.parametrize("value", [
    "sip:+1" + "2" * 100_000 + "@gw.example.net",
    "<sip:" + "9" * 100_000 + "@h>",
    "tel:+" + "4" * 15 + "-" * 100_000,
    "tel:+" + "4" * 15 + ";" * 100_000,
    "<" * 100_000 + "sip:+12024561111@h>",
    "sip:+12024561111@" + "h" * 100_000,
    "+" + "²" * 100_000,
])
def test_direct_is_the_definition_on_huge_values(value: str) -> None:
    check(value)


@pytest.mark.parametrize("value", [
    "sip:13955559994@127.0.0.1:5061;user=phone",        # bench_proxy's callers and callees
    "<sip:16595559922@127.0.0.1:5060;user=phone>",
    '"Caller" <sip:+12024561111@gw.example.net;user=phone>;tag=a73kszlfl',
    "sips:+12024561111@gw.example.net",
    "sip:2024561111@10.0.0.1",
    "sip:+12024561111;tgrp=TG-1;trunk-context=example.com@gw.example.net;user=phone",
    "tel:+12024561111;npdi;rn=+12024560000",
    "tel:+1-202-456-1111",
    "Bob <tel:+1-202-456-1111>;tag=1",
    "+1 (202) 456-1111",
    "2024561111",
    "sip:+442071838750@carrier.uk",
    "tel:+44-20-7183-8750",
    "+999123456789",                                     # unknown-country
    "+15555551234",                                      # reserved-npa
])
def test_common_forms_take_the_direct_path(value: str) -> None:
    direct = numbers._direct(value)
    assert direct is not None and direct == numbers._parse_full(value)
