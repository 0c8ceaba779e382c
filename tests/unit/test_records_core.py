"""CallRecord (de)serialisation, TracebackConfig parsing, the spool file format and locks."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from sipguard import yamlconf
from sipguard.errors import ConfigError
from sipguard.records.record import FIELDS, CallRecord, TracebackConfig, normalise_tn
from sipguard.records.spool import Spool, decode, encode
from tests.records_fixtures import make_record


def test_round_trip_keeps_every_field() -> None:
    record = make_record(3, reasons=("stale-iat", "bad-signature"), status=603, action="reject", attest="C")
    again = CallRecord.from_dict(record.to_dict())
    assert again == record
    assert list(record.to_dict()) == list(FIELDS)


def test_from_dict_tolerates_missing_optional_fields() -> None:
    r = CallRecord.from_dict({"time": 5, "call_id": "x", "action": "forward", "verstat": "No-TN-Validation"})
    assert (r.time, r.trunk, r.reasons, r.signed, r.status) == (5.0, None, (), False, None)


@pytest.mark.parametrize("value, expected", [
    ("+1 (202) 555-0123", "12025550123"),
    ("2025550123", "12025550123"),
    ("tel:+12025550123", "12025550123"),
    ("+44 20 7183 8750", "442071838750"),
    ("", None),
    (None, None),
])
def test_normalise_tn(value: str | None, expected: str | None) -> None:
    assert normalise_tn(value) == expected


def test_config_defaults_and_paths(tmp_path: Path) -> None:
    cfg = TracebackConfig.from_section(yamlconf.section_of(yamlconf.parse("{}"), "c.yaml"), str(tmp_path))
    assert cfg.retention_days == 548
    assert cfg.path == str(tmp_path / "var/traceback.db")
    assert cfg.spool == str(tmp_path / "var/spool")
    sec = yamlconf.section_of(yamlconf.parse("retention_days: 30\npath: /data/tb.db\n"), "c.yaml", "traceback")
    cfg = TracebackConfig.from_section(sec, str(tmp_path))
    assert (cfg.retention_days, cfg.path, cfg.retention_seconds) == (30, "/data/tb.db", 30 * 86400.0)


@pytest.mark.parametrize("text, key", [
    ("retention_days: 0\n", "traceback.retention_days"),
    ("retention_days: lots\n", "traceback.retention_days"),
    ("retension_days: 3\n", "traceback.retension_days"),
    ("queue: -1\n", "traceback.queue"),
])
def test_config_errors_name_file_line_key(text: str, key: str) -> None:
    sec = yamlconf.section_of(yamlconf.parse(text, "c.yaml"), "c.yaml", "traceback")
    with pytest.raises(ConfigError) as info:
        TracebackConfig.from_section(sec, "/")
    assert (info.value.path, info.value.line, info.value.key) == ("c.yaml", 1, key)


def test_spool_entries_round_trip_and_torn_line(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), "w1")
    entries = [("w1", i, make_record(i)) for i in range(1, 4)]
    assert spool.append(entries) == 3
    with open(spool.active_path, "a") as fh:   # a crash in the middle of a write
        fh.write(encode(("w1", 4, make_record(4)))[:40])
    claimed = spool.claim()
    assert [os.path.basename(c.path) for c in claimed] == ["ready-w1-000001.jsonl"]
    assert Spool.read(claimed[0]) == entries
    Spool.done(claimed[0])
    assert not spool.has_files()
    assert decode(encode(entries[0])) == entries[0]


def test_claim_skips_live_writers_and_takes_dead_ones_in_order(tmp_path: Path) -> None:
    live = Spool(str(tmp_path), "live")
    live.append([("live", 1, make_record(1))])           # holds its lock
    dead = tmp_path / "records-dead.jsonl"
    dead.write_text(encode(("dead", 9, make_record(9))) + "\n")
    (tmp_path / "ready-dead-000001.jsonl").write_text(encode(("dead", 8, make_record(8))) + "\n")
    me = Spool(str(tmp_path), "me")
    claimed = me.claim()
    names = [os.path.basename(c.path) for c in claimed]
    assert names == ["ready-dead-000001.jsonl", "records-dead.jsonl"]   # seq order of the dead writer
    # a second claimer meanwhile gets nothing: we hold the locks
    other = Spool(str(tmp_path), "other")
    assert other.claim() == []
    for c in claimed:
        Spool.done(c)
    assert sorted(os.listdir(tmp_path)) == ["records-live.jsonl", "writer-live.lock"]   # the dead one's lock went
    live.close()


def test_released_file_can_be_claimed_again(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), "w")
    spool.append([("w", 1, make_record(1))])
    first = spool.claim()
    Spool.release(first[0])
    with open(first[0].path) as fh:                      # the lock went with release()
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    again = spool.claim()
    assert [c.path for c in again] == [first[0].path]
    assert Spool.read(again[0])[0][1] == 1
    Spool.done(again[0])
