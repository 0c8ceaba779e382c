"""CallRecord (de)serialisation, TracebackConfig parsing, the spool file format and locks."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

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


def _child_writer(folder: str, ready: Any, go: Any) -> None:
    """A worker that spooled three files (rotation numbers past six digits), then dies by kill -9."""
    spool = Spool(folder, "child")
    spool._rotations = 999_998
    seq = 0
    for _ in range(3):
        spool.append([("child", seq + i, make_record(seq + i)) for i in range(1, 4)])
        seq += 3
        if seq < 9:
            spool.claim()                                   # rotated away; the flush "failed"
    ready.set()
    go.wait(30)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_writers_files_are_taken_over_whole_and_in_order(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, go = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_child_writer, args=(str(tmp_path), ready, go))
    child.start()
    try:
        assert ready.wait(30)
        me = Spool(str(tmp_path), "me")
        assert me.claim() == []                             # alive: its files are its own
        go.set()
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        claimed = me.claim()
        assert [os.path.basename(c.path) for c in claimed] == [
            "ready-child-999999.jsonl", "ready-child-1000000.jsonl", "records-child.jsonl"]
        assert [s for c in claimed for _, s, _ in Spool.read(c)] == list(range(1, 10))
        assert Spool(str(tmp_path), "other").claim() == []  # one taker at a time
        for c in claimed:
            Spool.done(c)
        assert os.listdir(tmp_path) == []                   # its lock went with its last file
    finally:
        go.set()
        child.join(5)


def test_writer_locks_come_and_go_with_the_files(tmp_path: Path) -> None:
    folder = str(tmp_path)
    clean = Spool(folder, "clean")
    clean.append([("clean", 1, make_record(1))])
    (own,) = clean.claim()
    Spool.done(own)
    clean.close()                                           # nothing left: no lock file either
    assert os.listdir(folder) == []
    stopped = Spool(folder, "stopped")
    stopped.append([("stopped", 1, make_record(1))])
    stopped.close()                                         # SIGTERM during an outage: files stay
    assert sorted(os.listdir(folder)) == ["records-stopped.jsonl", "writer-stopped.lock"]
    (tmp_path / "writer-ghost.lock").write_text("")         # a writer killed with nothing spooled
    me = Spool(folder, "me")
    claimed = me.claim()
    assert [os.path.basename(c.path) for c in claimed] == ["records-stopped.jsonl"]
    Spool.release(claimed[0])                               # the store failed: the file waits
    assert sorted(os.listdir(folder)) == ["records-stopped.jsonl", "writer-stopped.lock"]
    (again,) = Spool(folder, "next").claim()
    Spool.done(again)
    assert os.listdir(folder) == []


def test_a_writer_waits_out_another_workers_look_at_its_lock(tmp_path: Path) -> None:
    """The race the PostgreSQL outage test met in CI: writer w1 creates its lock file for its
    first spooled batch while another worker's ``claim`` has just listed the folder and holds
    that lock for a moment, in case w1 is dead. w1 must wait for it, not refuse the batch."""
    import threading

    lock_path = tmp_path / "writer-w1.lock"
    taker = open(lock_path, "ab")                           # the other worker's check, under way
    fcntl.flock(taker.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def let_go() -> None:                                   # no files behind it: lock removed, let go
        os.unlink(lock_path)
        taker.close()

    timer = threading.Timer(0.05, let_go)
    timer.start()
    try:
        spool = Spool(str(tmp_path), "w1")
        assert spool.append([("w1", 1, make_record(1))]) == 1
    finally:
        timer.join()
    assert sorted(os.listdir(tmp_path)) == ["records-w1.jsonl", "writer-w1.lock"]
    assert Spool(str(tmp_path), "other").claim() == []      # w1 holds its lock: its files are its own
    spool.close()


def test_a_lock_held_for_good_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sipguard.records import spool as spool_module

    monkeypatch.setattr(spool_module, "OWN_WAIT", 0.02)
    with open(tmp_path / "writer-twin.lock", "ab") as twin:  # a live writer with the same id
        fcntl.flock(twin.fileno(), fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another process holds this writer's lock"):
            Spool(str(tmp_path), "twin").append([("twin", 1, make_record(1))])


def test_a_file_locked_by_an_earlier_versions_writer_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "records-old.jsonl"
    path.write_text(encode(("old", 1, make_record(1))) + "\n")
    with open(path) as held:                                # that version locked each file it wrote
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert Spool(str(tmp_path), "me").claim() == []
    (taken,) = Spool(str(tmp_path), "me").claim()
    assert Spool.read(taken)[0][1] == 1
    Spool.done(taken)
    assert os.listdir(tmp_path) == []


def test_sqlite_stores_a_call_id_with_undecodable_bytes_and_the_records_after_it(tmp_path: Path) -> None:
    """A Call-ID's bytes that are not UTF-8 reach the record as lone surrogates (the SIP parser
    keeps every byte); SQLite could not encode them, the batch failed at every retry and every
    later record stayed in the spool. The indexed column takes U+FFFD, the record every byte."""
    from sipguard.records.sqlite import SqliteRecords

    db = SqliteRecords(str(tmp_path / "tb.db"))
    hostile = make_record()._replace(call_id="evil-\udcff\x00-1")
    db.write([("w1", 1, hostile), ("w1", 2, make_record()._replace(call_id="next-call"))])
    [found] = db.find(None, None, "evil-\udcff\x00-1", None, None, 10)
    assert found.call_id == "evil-\udcff\x00-1"
    assert [r.call_id for r in db.find(None, None, "next-call", None, None, 10)] == ["next-call"]
