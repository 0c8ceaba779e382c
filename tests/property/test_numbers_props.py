"""Properties of number normalisation: total, idempotent, blind to formatting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sipguard.numbers import TN, parse_tn

nanp_digits = st.from_regex(r"\A[2-9][0-9]{2}[2-9][0-9]{6}\Z", fullmatch=True)
intl_digits = st.from_regex(r"\A[2-9][0-9]{7,13}\Z", fullmatch=True)
separators = st.sampled_from(["", "-", ".", " ", "(", ")"])


@given(st.text(max_size=80))
def test_never_raises_and_is_consistent(text: str) -> None:
    tn = parse_tn(text)
    assert isinstance(tn, TN)
    assert tn.valid == (tn.invalid_reason is None)
    assert tn.e164 is None or tn.e164.isdigit()
    assert not (tn.us and not tn.nanp)


@given(st.text(alphabet="0123456789+-.() ;=@:<>\"sipteluranonymous", max_size=60))
def test_never_raises_on_uri_like_text(text: str) -> None:
    tn = parse_tn(text)
    assert tn.valid == (tn.invalid_reason is None)


@given(st.one_of(nanp_digits.map(lambda d: "1" + d), intl_digits))
def test_idempotent_on_e164(digits: str) -> None:
    first = parse_tn("+" + digits)
    if first.e164 is not None:
        again = parse_tn("+" + first.e164)
        assert again.e164 == first.e164
        assert (again.valid, again.invalid_reason, again.us) == (first.valid, first.invalid_reason, first.us)


@given(nanp_digits, st.lists(separators, min_size=10, max_size=10),
       st.sampled_from(["+1{}", "1{}", "{}", "tel:+1{}", "sip:+1{}@gw.example.net;user=phone",
                        "<sip:{}@10.0.0.1>;tag=x", "sip:1{};tgrp=a;trunk-context=b@h", "011{}"]))
def test_formatting_does_not_change_the_number(digits: str, seps: list[str], template: str) -> None:
    if template == "011{}":
        template = "+1{}"  # 011 is for numbers outside the NANP; NANP digits take +1
    spaced = "".join(d + s for d, s in zip(digits, seps, strict=True)).rstrip("-. ()")
    plain = parse_tn("+1" + digits)
    formatted = parse_tn(template.format(spaced if template.startswith(("+", "tel")) else digits))
    assert formatted.e164 == plain.e164 == "1" + digits
    assert (formatted.valid, formatted.invalid_reason, formatted.us) == (plain.valid, plain.invalid_reason,
                                                                         plain.us)


@given(intl_digits)
def test_international_forms_agree(digits: str) -> None:
    assert parse_tn("011" + digits).e164 == parse_tn("+" + digits).e164


@given(st.one_of(nanp_digits.map(lambda d: "1" + d), intl_digits), st.lists(separators, min_size=15, max_size=15),
       st.sampled_from(["{}", "tel:{}", "sip:{}@gw.example.net;user=phone", "<tel:{}>;tag=x"]))
def test_passport_forms_blind_to_formatting(digits: str, seps: list[str], template: str) -> None:
    """What a PASSporT tn must say for a number: its E.164 digits when written with "+", however
    spaced; without "+" those digits still match (as written, or as the E.164 reading)."""
    spaced = "".join(d + s for d, s in zip(digits, seps, strict=False)).rstrip("-. ()")
    plus = parse_tn(template.format("+" + spaced) if "sip:" not in template else template.format("+" + digits))
    assert plus.forms == ((plus.e164,) if plus.e164 else (digits,))
    assert digits in parse_tn(template.format(digits)).forms
