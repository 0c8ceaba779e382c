"""``sipguard traceback`` over a SQLite record file: table, JSONL, CSV, campaign view, errors."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from sipguard.cli import main
from sipguard.clock import ManualClock
from sipguard.records.record import TracebackConfig
from sipguard.records.writer import open_records
from tests.records_fixtures import BASE_TIME, make_record


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "sipguard.yaml"
    path.write_text("store: memory\ntraceback: {path: var/tb.db, spool: var/spool, retention_days: 30}\n")
    cfg = TracebackConfig(path=str(tmp_path / "var/tb.db"), spool=str(tmp_path / "var/spool"))

    async def fill() -> None:
        w = open_records("memory", cfg, clock=ManualClock(BASE_TIME))
        await w.start()
        for i in range(10):
            w.submit(make_record(i * 120, caller=f"1202555{i:04d}"))
        w.submit(make_record(2000, call_id="rej", action="reject", status=603, attest="C", caller="12025550009",
                             origid="5f0c6a0e-0000-4000-8000-000000000001", verstat="TN-Validation-Passed"))
        await w.aclose()

    asyncio.run(fill())
    return str(path)


def test_table_answers_an_itg_request(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    at = "2023-11-14T22:17:20Z"          # BASE_TIME + 240 s (BASE_TIME is 22:13:20 UTC)
    assert main(["traceback", "-c", config, "--caller", "+1 202-555-0002", "--callee", "3125550188",
                 "--at", at]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["time", "(UTC)", "caller"]
    assert len(out) == 2
    row = out[1]
    for expected in ("2023-11-14T22:17:20.000Z", "+12025550002", "+13125550188", "carrier-a", "Carrier A",
                     "0012345678", "RMD0001234", "GB", "No-TN-Validation", "forward"):
        assert expected in row


def test_naive_time_is_utc_and_jsonl_carries_every_field(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traceback", "-c", config, "--at", "2023-11-14 22:13:20", "--window", "130",
                 "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["time"] - BASE_TIME for x in lines] == [0, 120]
    assert lines[0]["time_utc"] == "2023-11-14T22:13:20.000Z"
    assert lines[0]["provider_rmd"] == "RMD0001234" and lines[0]["reasons"] == ["no-identity"]


def test_csv_and_call_id(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traceback", "-c", config, "--call-id", "rej", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1
    assert (rows[0]["action"], rows[0]["status"], rows[0]["attest"]) == ("reject", "603", "C")
    assert rows[0]["origid"] == "5f0c6a0e-0000-4000-8000-000000000001"


def test_top_campaign_view(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traceback", "-c", config, "--top", "callers", "--since", str(BASE_TIME),
                 "--format", "jsonl"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows == [{"callers": "12025550009", "rejected": 1, "attest_c": 1}]


def test_nothing_found_exits_3_and_says_where_it_looked(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traceback", "-c", config, "--caller", "+12025559999", "--at", str(BASE_TIME)]) == 3
    err = capsys.readouterr().err
    assert "no record found" in err and "2023-11-14T22:08:20.000Z" in err


@pytest.mark.parametrize("argv, message", [
    (["--at", "noon-ish"], "expected ISO 8601"),
    (["--since", "2023-13-01"], "expected ISO 8601"),
    (["--at", "9999-12-31"], "--at: '9999-12-31': expected a time from 1970"),
    (["--at", "nan"], "--at: 'nan': expected a time"),
    (["--since", "2024-01-01", "--until", "2023-01-01"], "--until: is before since"),
    (["--at", str(BASE_TIME), "--window", "inf"], "--window: 'inf': expected a number of seconds"),
    (["--at", str(BASE_TIME), "--window", "nan"], "--window: 'nan'"),
    (["--limit", "-1"], "--limit: '-1': expected a whole number from 1 to 100000000"),
    (["--limit", "1e30"], "--limit: '1e30'"),
    (["--top", "callers", "--limit", "0"], "--limit: '0': expected a whole number from 1 to 1000"),
    (["answer", "--at", str(BASE_TIME), "--window", "1e400"], "--window: '1e400'"),
])
def test_bad_input_is_one_clear_line(config: str, argv: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    what = [argv.pop(0)] if argv[0] == "answer" else []
    assert main(["traceback", *what, "-c", config, *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback (most recent call last)" not in err


@pytest.fixture
def answering(tmp_path: Path) -> str:
    """A config naming the trunk's provider with a contact, and records: one call forwarded and
    signed by us, one rejected."""
    path = tmp_path / "sipguard.yaml"
    path.write_text(
        "store: memory\n"
        "traceback: {path: var/tb.db, spool: var/spool, retention_days: 30}\n"
        "trunks:\n"
        "  - id: carrier-a\n"
        "    sources: [198.51.100.0/24]\n"
        "    provider: {name: Carrier A, frn: '0012345678', rmd: RMD0001234, country: GB,\n"
        "               contact: 'noc@carrier-a.example'}\n")
    cfg = TracebackConfig(path=str(tmp_path / "var/tb.db"), spool=str(tmp_path / "var/spool"))

    async def fill() -> None:
        w = open_records("memory", cfg, clock=ManualClock(BASE_TIME))
        await w.start()
        w.submit(make_record(0, signed=True, signed_origid="5f0c6a0e-0000-4000-8000-0000000000aa"))
        w.submit(make_record(60, call_id="rej", action="reject", status=603, rule="dno", callee="13125550199",
                             callee_raw="sip:+13125550199@gw", verstat="TN-Validation-Passed", attest="A",
                             spc="1234", origid="o-1", x5u="https://cr.example/a.pem", reasons=()))
        await w.aclose()

    asyncio.run(fill())
    return str(path)


def test_answer_text_names_the_upstream_its_contact_and_the_zone(answering: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    at = "2023-11-14T17:13:30-05:00"      # BASE_TIME + 10 s, as the ITG gives it (local time)
    assert main(["traceback", "answer", "-c", answering, "--caller", "202-555-0123", "--callee",
                 "+1 312 555 0188", "--at", at]) == 0
    text = capsys.readouterr().out
    assert "Result: FOUND, 1 call." in text
    assert ("Call 1: Received from Carrier A (FRN 0012345678, RMD0001234, GB) on trunk carrier-a from "
            "198.51.100.7:5060 at 2023-11-14T22:13:20.000Z; forwarded and signed by us.") in text
    assert "(2023-11-14T22:13:30.000Z; zone given: UTC-05:00)" in text
    assert "Searched: 2023-11-14T22:08:30.000Z to 2023-11-14T22:18:30.000Z (UTC)" in text
    assert "Upstream contact:   noc@carrier-a.example" in text
    assert "Signed by us:       origid 5f0c6a0e-0000-4000-8000-0000000000aa" in text


def test_answer_json_for_a_rejected_call(answering: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traceback", "answer", "-c", answering, "--call-id", "rej", "--format", "jsonl"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["answer"] == "found" and len(doc["calls"]) == 1
    call = doc["calls"][0]
    assert call["received_from"]["contact"] == "noc@carrier-a.example"
    assert call["received_from"]["rmd"] == "RMD0001234" and call["received_from"]["source"] == "198.51.100.7:5060/udp"
    assert call["identity_received"] == {"verstat": "TN-Validation-Passed", "attest": "A", "origid": "o-1",
                                         "x5u": "https://cr.example/a.pem", "signer_spc": "1234",
                                         "reasons": [], "dropped": False}
    assert call["our_action"] == {"action": "reject", "status": 603, "rule": "dno", "notice": None,
                                  "shadow_action": None, "next_hop": None}
    assert call["summary"].endswith("rejected with 603.") and call["we_signed"] == {"signed": False}


def test_answer_not_found_says_where_it_looked(answering: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traceback", "answer", "-c", answering, "--caller", "+12025559999", "--at",
                 "2023-11-14 22:13:20"]) == 3
    text = capsys.readouterr().out
    assert "Result: NOT FOUND" in text and "zone given: none given: taken as UTC" in text
    assert "Searched: 2023-11-14T22:08:20.000Z to 2023-11-14T22:18:20.000Z (UTC)" in text
    assert main(["traceback", "answer", "-c", answering, "--caller", "+12025559999", "--format", "jsonl"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["answer"] == "not found" and doc["calls"] == []


def test_answer_refuses_what_does_not_apply(answering: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traceback", "answer", "-c", answering, "--top", "callers"]) == 1
    assert "--top and --format csv do not apply" in capsys.readouterr().err
