"""numbers._direct (the short path for the forms nearly every call carries) against
numbers._parse_full (the definition): the same TN for every input it takes, None for the rest;
and where the extension is built, its C reading (sipguard/sip/_fast.c, tn) against
numbers._direct_py (the Python definition of the short path): the same TN or None for any text."""

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
    direct = numbers._direct(value)     # in C where the extension is built
    assert direct == numbers._direct_py(value), value
    assert direct is None or direct == full, (value, direct, full)
    assert parse_tn(value) == full


# what a gateway or an attacker may put where a number goes: other scripts' digits (Arabic-Indic,
# Extended Arabic-Indic, fullwidth, Devanagari, superscripts, circled), fullwidth and other pluses,
# lone surrogates, NUL and control characters, characters that lower to ASCII (Kelvin sign,
# dotted I), unusual spaces, and the characters the reading stops at
HOSTILE = ("٠١٢٣٤٥٦٧٨٩۰۱۹０１２９＋﹢⁺²³¹①०९߁"
           "\ud800\udbff\udc00\udfff\x00\x01\x07\x1b\x7f\x85\u200b\u2028\ufeff\r\n\x0b\x0c"
           "KİıſÅ\xa0\u3000 \t-.()/+;@:<>%\"'")


@st.composite
def hostile_values(draw: st.DrawFn) -> str:
    """A value of the usual forms with hostile characters put in, some replaced, cut anywhere."""
    chars = list(draw(st.one_of(common_values(), header_values())))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(chars)))
        char = draw(st.one_of(st.sampled_from(HOSTILE), st.characters(blacklist_categories=())))
        if chars and at < len(chars) and draw(st.booleans()):
            chars[at] = char
        else:
            chars.insert(at, char)
    if draw(st.integers(0, 4)) == 0:
        chars = chars[:draw(st.integers(0, len(chars)))]
    return "".join(chars)


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


@settings(max_examples=2000)
@given(st.one_of(hostile_values(), st.text(st.characters(blacklist_categories=()), max_size=60),
                 st.text(alphabet=HOSTILE + "0123456789sipte", max_size=40)))
@example("tel:+\uff11\uff12\uff10\uff12\uff14\uff15\uff16\uff11\uff11\uff11\uff11")  # fullwidth digits
@example("tel:\uff0b12024561111")                # fullwidth plus
@example("+\u0661\u0662\u0660\u0662\u0664\u0665\u0666\u0661\u0661\u0661\u0661")  # Arabic-Indic
@example("sip:+12024561111\ud800@h")
@example("sip:+12024561111@anonymous.invalid\ud800")
@example("sip:+12024561111@anonymous.\u0130nvalid")
@example("sip:+12024561111@anonymous.invalid\x00")
@example("sip:+1202456111\x001@h")
@example("\x00")
@example("<sip:+12024561111@h")
@example("<")
@example("tel:")
@example("sip:")
@example("sips:@")
@example("+1")
@example("+4420718")
@example("+442071838")
@example("+1234567")
@example("tel:+999-1234567")
@example("2024561111;")
@example("2024561111\u2028")
def test_c_reading_is_the_python_one_on_hostile_text(value: str) -> None:
    check(value)


def test_every_npa_and_country_code_reads_as_the_python() -> None:
    """The table C reads (numbers._TABLE) says what the NPA table and the country codes say, for
    every three digits: each NPA with exchange codes that pass and fail each check, and each
    three digits after a + (the country codes)."""
    for i in range(1000):
        npa = f"{i:03d}"
        for rest in ("2345678", "5550100", "5550199", "5550200", "2115678", "0345678", "1345678", "9115678"):
            for value in (f"+1{npa}{rest}", f"{npa}{rest}", f"sip:1{npa}{rest}@h"):
                check(value)
        for value in (f"+{npa}4567", f"+{npa}456789012", f"tel:+{npa}-4567-8901-23"):
            check(value)


@pytest.mark.parametrize("value", [
    "sip:+1" + "2" * 100_000 + "@gw.example.net",
    "<sip:" + "9" * 100_000 + "@h>",
    "tel:+" + "4" * 15 + "-" * 100_000,
    "tel:+" + "4" * 15 + ";" * 100_000,
    "<" * 100_000 + "sip:+12024561111@h>",
    "sip:+12024561111@" + "h" * 100_000,
    "+" + "²" * 100_000,
    "tel:+" + "٣" * 100_000,
    "tel:+1202456111" + "\ud800" * 100_000,
    "sip:+12024561111" + "\x00" * 100_000 + "@h",
    "<sip:+12024561111@h" + " " * 100_000,
    "+1202" + "-" * 100_000 + "4561111",
    "+12024561111;" + "x" * 100_000,
    "sip:" + "@" * 100_000,
    "",
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


def test_the_c_reading_refuses_other_arguments() -> None:
    _fast = pytest.importorskip("sipguard.sip._fast")
    with pytest.raises(TypeError):
        _fast.tn(b"2024561111", numbers._TABLE)
    with pytest.raises(TypeError):
        _fast.tn("2024561111", numbers._TABLE[:999])
    with pytest.raises(TypeError):
        _fast.tn("2024561111")
    assert numbers._C_TN is _fast.tn   # the tree built: numbers reads in C
    assert _fast.tn("sip:+12024561111@h", numbers._TABLE) == (("12024561111",), 1)
    assert _fast.tn("2024561111", numbers._TABLE) == (("12024561111", "2024561111"), 1)
    assert _fast.tn("2025550123", numbers._TABLE) == (("12025550123", "2025550123"), 7 * 2 + 1)  # fictional, US
    assert _fast.tn("+442071838750", numbers._TABLE) == (("442071838750",), numbers._WORLD)
    assert _fast.tn("sip:anonymous@anonymous.invalid", numbers._TABLE) is None
