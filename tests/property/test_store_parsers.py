"""Dataset parsers never crash on arbitrary input, and the DNO fast path agrees with the slow one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.errors import ConfigError
from sipguard.store.datasets import dno_digits, parse_dno, parse_removed, parse_rmd

DNO_CHARS = st.text(alphabet="0123456789+ -().#,x1", max_size=20)


@given(DNO_CHARS)
def test_dno_line_same_answer_fast_or_slow(line: str) -> None:
    if "," in line or "#" in line:
        return
    try:
        entries, report = parse_dno(line + "\n")
    except ConfigError:
        return
    value = line.strip()
    want = dno_digits(value) if value else None
    assert entries == ([want] if want else [])
    if value and want is None:
        assert report.skipped and report.skipped[0][0] == 1


@settings(max_examples=200)
@given(st.text(max_size=400))
def test_rmd_parser_total(text: str) -> None:
    try:
        records, report = parse_rmd("number,frn,implementation,other_frns\n" + text)
    except ConfigError:
        return
    assert report.imported == len(records)
    assert all(r.rmd or r.frns for r in records)
    assert all(len(f) == 10 and f.isdigit() for r in records for f in r.frns)


@given(st.text(max_size=200))
def test_removed_parser_total(text: str) -> None:
    try:
        parse_removed(text)
    except ConfigError:
        pass
