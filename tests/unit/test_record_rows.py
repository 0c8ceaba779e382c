"""The stored row of a traceback record (records.record.to_row/from_row)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipguard.records.record import FIELDS, ROW_FIELDS, ROW_VERSION, CallRecord, from_row, to_row
from tests.records_fixtures import make_record


def test_the_current_version_lists_every_field_in_order() -> None:
    """A field added to CallRecord needs a new row version (older rows keep theirs)."""
    assert ROW_FIELDS[ROW_VERSION] == FIELDS


def test_a_row_is_a_versioned_array_that_reads_back_the_same_record() -> None:
    record = make_record(3, reasons=("no-identity", "tn-mismatch"), signed=True, status=603, attest="C")
    row = to_row(record)
    assert json.loads(row)[:3] == [ROW_VERSION, record.time, record.call_id]
    assert from_row(row) == record
    assert from_row(row.encode()) == record          # Redis hands back bytes
    assert len(row) < len(json.dumps(record.to_dict())) * 0.6


def test_version_1_rows_still_read() -> None:
    """Rows written before signed_attest/signed_rule existed read back with them empty."""
    record = make_record(4, signed=True, signed_origid="oid")
    v1 = json.dumps([1, *(getattr(record, name) for name in ROW_FIELDS[1])])
    assert from_row(v1) == record and from_row(v1).signed_rule is None


def test_version_2_and_3_rows_read_with_no_passports() -> None:
    """Rows written before each Identity header's result was recorded (version 4): passports empty."""
    record = make_record(6, signed=True, signed_attest="C", signed_rule="sign-unsigned")
    v2 = json.dumps([2, *(getattr(record, name) for name in ROW_FIELDS[2])])
    assert from_row(v2) == record and from_row(v2).passports == ()
    record = make_record(8, caller_check="valid", facts={"div_count": 1})
    v3 = json.dumps([3, *(getattr(record, name) for name in ROW_FIELDS[3])])
    assert from_row(v3) == record and from_row(v3).passports == ()
    with_results = make_record(7, passports=("shaken:passed", "div:failed:div-no-history"))
    assert from_row(to_row(with_results)).passports == ("shaken:passed", "div:failed:div-no-history")
    assert with_results.to_dict()["passports"] == ["shaken:passed", "div:failed:div-no-history"]


def test_rows_stored_as_dicts_before_versions_still_read() -> None:
    record = make_record(5)
    assert from_row(json.dumps(record.to_dict())) == record


@pytest.mark.parametrize("row", ["[]", "[99, 1.0]", '["1", 1.0]', "[1, 1.0, \"only two\"]", "7", '"text"'])
def test_anything_else_is_refused(row: str) -> None:
    with pytest.raises(ValueError, match="not a stored record"):
        from_row(row)


TEXT = st.text(max_size=12)
OPT = st.none() | TEXT


@given(st.builds(CallRecord, time=st.floats(0, 4e9), call_id=TEXT, source_ip=TEXT, source_port=st.integers(0, 65535),
                 transport=TEXT, trunk=OPT, trunk_role=OPT, provider_name=OPT, provider_frn=OPT, provider_rmd=OPT,
                 provider_country=OPT, rmd_snapshot=OPT, caller_raw=OPT, caller=OPT, callee_raw=OPT, callee=OPT,
                 verstat=TEXT, attest=OPT, origid=OPT, x5u=OPT, spc=OPT, reasons=st.lists(TEXT, max_size=3).map(tuple),
                 rule=OPT, rule_class=OPT, notice=OPT, action=TEXT, status=st.none() | st.integers(100, 699),
                 shadow_action=OPT, signed=st.booleans(), signed_origid=OPT, identity_dropped=st.booleans(),
                 next_hop=OPT, instance=OPT, signed_attest=OPT, signed_rule=OPT,
                 passports=st.lists(TEXT, max_size=3).map(tuple),
                 facts=st.none() | st.dictionaries(TEXT, st.none() | st.booleans() | st.integers() | st.floats(
                     allow_nan=False) | TEXT | st.lists(TEXT, max_size=2), max_size=3)))
def test_any_record_round_trips(record: CallRecord) -> None:
    assert from_row(to_row(record)) == record
    # the bytes json.dumps writes (to_row runs json's C encoder itself)
    assert to_row(record) == json.dumps([ROW_VERSION, *(getattr(record, name) for name in FIELDS)],
                                        separators=(",", ":"))
