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
                 next_hop=OPT, instance=OPT, signed_attest=OPT, signed_rule=OPT, caller_check=OPT,
                 spc_owner=OPT, trunk_rmd=OPT, trunk_implementation=OPT,
                 passports=st.lists(TEXT, max_size=3).map(tuple),
                 facts=st.none() | st.dictionaries(TEXT, st.none() | st.booleans() | st.integers() | st.floats(
                     allow_nan=False) | TEXT | st.lists(TEXT, max_size=2), max_size=3)))
def test_any_record_round_trips(record: CallRecord) -> None:
    assert from_row(to_row(record)) == record
    # the bytes json.dumps writes (to_row runs json's C encoder itself)
    assert to_row(record) == json.dumps([ROW_VERSION, *(getattr(record, name) for name in FIELDS)],
                                        separators=(",", ":"))


# Written by the code before CallRecord was a tuple (main 728c90d): a stored row (SQLite's
# ``data``, PostgreSQL's and Redis's row) and a spool line, byte for byte as they are on disk.
OLD_ROW = ('[4,1765000000.123456,"caf\\u00e9-\\udcff@h","198.51.100.7",5060,"udp","carrier-a","foreign","Carrier A",'
           '"0012345678","RMD0001234","GB","2025-01-01","sip:+12025550123@198.51.100.7","12025550123",'
           '"sip:+13125550188@gw","13125550188","TN-Validation-Passed","A",null,null,"789X",[],null,null,null,'
           '"forward",null,null,true,"oid",false,"sip:127.0.0.1:5070","test/0","A","sign-all","valid","own","listed",'
           '"complete",{"caller_us":true,"div_count":1,"limited":["per-trunk"]},["shaken:passed"]]')
OLD_SPOOL_LINE = (
    '{"w":"host-1-abc","s":7,"r":{"time":1765000000.123456,"call_id":"caf\\u00e9-\\udcff@h","source_ip":"198.51.100.7",'
    '"source_port":5060,"transport":"udp","trunk":"carrier-a","trunk_role":"foreign","provider_name":"Carrier A",'
    '"provider_frn":"0012345678","provider_rmd":"RMD0001234","provider_country":"GB","rmd_snapshot":"2025-01-01",'
    '"caller_raw":"sip:+12025550123@198.51.100.7","caller":"12025550123","callee_raw":"sip:+13125550188@gw",'
    '"callee":"13125550188","verstat":"TN-Validation-Passed","attest":"A","origid":null,"x5u":null,"spc":"789X",'
    '"reasons":[],"rule":null,"rule_class":null,"notice":null,"action":"forward","status":null,"shadow_action":null,'
    '"signed":true,"signed_origid":"oid","identity_dropped":false,"next_hop":"sip:127.0.0.1:5070",'
    '"instance":"test/0","signed_attest":"A","signed_rule":"sign-all","caller_check":"valid","spc_owner":"own",'
    '"trunk_rmd":"listed","trunk_implementation":"complete","facts":{"caller_us":true,"div_count":1,'
    '"limited":["per-trunk"]},"passports":["shaken:passed"]}}')


def test_rows_and_spool_lines_of_the_code_before_read_back_and_are_written_the_same() -> None:
    """The record format is a contract (18 months of rows, spool files left by a stopped
    version): what the earlier code wrote reads back, and the same record is written byte for
    byte as it was."""
    from sipguard.records.spool import decode, encode

    expected = make_record(9, time=1765000000.123456, call_id="caf\u00e9-\udcff@h", attest="A",
                           verstat="TN-Validation-Passed", reasons=(), spc="789X", signed=True, signed_origid="oid",
                           signed_attest="A", signed_rule="sign-all", caller_check="valid", spc_owner="own",
                           trunk_rmd="listed", trunk_implementation="complete",
                           facts={"caller_us": True, "div_count": 1, "limited": ["per-trunk"]},
                           passports=("shaken:passed",))
    assert from_row(OLD_ROW) == expected and to_row(from_row(OLD_ROW)) == OLD_ROW
    assert to_row(expected) == OLD_ROW
    assert decode(OLD_SPOOL_LINE) == ("host-1-abc", 7, expected)
    assert encode(decode(OLD_SPOOL_LINE)) == OLD_SPOOL_LINE
