"""The decision line: ``logs.decision_line`` gives the bytes of the generic JSON encoder for any
record, and ``DecisionLines`` writes the lines in order, within ``FLUSH_AFTER`` of their
decision, all of them at a flush or at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import weakref
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from records_fixtures import make_record

from sipguard.observe import logs

TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from("\x00\x1f\"\\\u2028\ud800\udfff\u00e9"), max_size=12)
ODD = st.one_of(st.none(), st.integers(), st.booleans(), st.floats(allow_nan=False), TEXT, st.tuples(TEXT))
OPT_TEXT = st.none() | TEXT


def expected(record: Any, created: float, level: int) -> str:
    """What the generic path writes: JsonFormatter's object through json.dumps."""
    out = {"ts": logs._timestamp(created), "level": logging.getLevelName(level).lower(),
           "logger": logs.DECISION_LOGGER, "msg": f"{record.action} {record.call_id}"}
    out.update({name: getattr(record, name) for name in logs.DECISION_FIELDS})
    return json.dumps(out, separators=(",", ":"), default=str)


@settings(max_examples=400, deadline=None)
@given(call_id=TEXT, source_ip=TEXT, source_port=st.integers(0, 65535), trunk=OPT_TEXT, caller=OPT_TEXT,
       callee=OPT_TEXT, verstat=TEXT, attest=OPT_TEXT, reasons=st.lists(TEXT, max_size=3).map(tuple),
       rule=OPT_TEXT, action=TEXT, status=st.none() | st.integers(100, 699), shadow_action=OPT_TEXT,
       signed=st.booleans(), next_hop=OPT_TEXT, created=st.floats(0, 4e9), level=st.sampled_from([10, 20]))
def test_decision_line_is_what_json_dumps_writes(created: float, level: int, **fields: Any) -> None:
    record = make_record(**fields)
    assert logs.decision_line(record, created, level) == expected(record, created, level)


# the decision fields' declared types (records/record.py; CallRecord.of builds every record the
# fan-out logs from an Outcome of these types): "text", "opt" (text or None), "int", "opt-int",
# "bool", "texts" (a tuple of text)
KINDS = {"call_id": "text", "source_ip": "text", "source_port": "int", "trunk": "opt", "caller": "opt",
         "callee": "opt", "verstat": "text", "attest": "opt", "reasons": "texts", "rule": "opt",
         "action": "text", "status": "opt-int", "shadow_action": "opt", "signed": "bool", "next_hop": "opt"}


def admits(kind: str, value: Any) -> bool:
    if value is None:
        return kind in ("opt", "opt-int")
    if kind in ("text", "opt"):
        return type(value) is str
    if kind in ("int", "opt-int"):
        return type(value) is int
    if kind == "bool":
        return type(value) is bool
    return type(value) is tuple and all(type(v) is str for v in value)


def test_the_kinds_name_every_decision_field() -> None:
    assert set(KINDS) == set(logs.DECISION_FIELDS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(field=st.sampled_from(logs.DECISION_FIELDS), value=ODD)
def test_any_value_of_a_fields_type_gives_the_same_bytes(field: str, value: Any) -> None:
    # a value of the field's declared type but of any shape (None where allowed, empty, odd
    # text, big or negative numbers): the generic encoder's bytes. The record is a tuple and
    # takes anything (compiled too); the fan-out logs only records CallRecord.of made, so a
    # value of another type is not a case to encode.
    assume(admits(KINDS[field], value))
    record = make_record()._replace(**{field: value})
    assert logs.decision_line(record, 1765000000.5, logging.INFO) == expected(record, 1765000000.5, logging.INFO)


@contextlib.contextmanager
def ours_alone() -> Iterator[io.StringIO]:
    """sipguard's handler the only one (pytest's capture handlers, set for the test's call, put
    back after), writing to the stream yielded."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    logs.setup_logging("info", json=True, decisions="info", stream=stream)
    try:
        yield stream
    finally:
        for h in list(root.handlers):
            if getattr(h, "_sipguard", False):
                root.removeHandler(h)
        root.handlers = saved
        root.setLevel(logging.WARNING)


def test_lines_wait_for_the_timer_and_keep_their_order() -> None:
    async def scenario() -> None:
        logs.log_decision(make_record(1))
        logs.log_decision(make_record(2))
        assert out.getvalue() == ""                      # one write for both, soon
        logging.getLogger("sipguard.test").warning("between")
        logs.log_decision(make_record(3))
        await asyncio.sleep(logs.FLUSH_AFTER * 3)
        assert [json.loads(x).get("call_id", "w") for x in out.getvalue().splitlines()] == [
            "call-1@198.51.100.7", "call-2@198.51.100.7", "w", "call-3@198.51.100.7"]

    with ours_alone() as out:
        asyncio.run(scenario())


def test_a_full_buffer_is_written_at_once_and_shutdown_writes_the_rest() -> None:
    async def scenario() -> None:
        for i in range(logs.MAX_PENDING + 1):
            logs.log_decision(make_record(i))
        assert out.getvalue().count("\n") == logs.MAX_PENDING

    with ours_alone() as out:
        asyncio.run(scenario())                          # the loop ends before the timer fires
        assert out.getvalue().count("\n") == logs.MAX_PENDING
        handler = logs.installed()
        assert handler is not None                       # what exit (and a worker's end) runs:
        logging.shutdown([weakref.ref(handler)])
        lines = out.getvalue().splitlines()
        assert len(lines) == logs.MAX_PENDING + 1
        assert json.loads(lines[-1])["call_id"] == f"call-{logs.MAX_PENDING}@198.51.100.7"


def test_a_line_left_by_a_closed_loop_goes_out_with_the_next_loops() -> None:
    async def one(i: int, wait: float) -> None:
        logs.log_decision(make_record(i))
        await asyncio.sleep(wait)

    with ours_alone() as out:
        asyncio.run(one(1, 0))                           # ends before its timer fires
        asyncio.run(one(2, logs.FLUSH_AFTER * 3))
        assert [json.loads(x)["call_id"] for x in out.getvalue().splitlines()] == [
            "call-1@198.51.100.7", "call-2@198.51.100.7"]


def test_without_an_event_loop_a_line_is_written_at_once() -> None:
    with ours_alone() as out:
        logs.log_decision(make_record(5))
        assert json.loads(out.getvalue())["call_id"] == "call-5@198.51.100.7"


def test_setting_up_again_after_the_stream_closed_writes_what_waits_and_nothing_else() -> None:
    async def one() -> None:
        logs.log_decision(make_record(9))

    with ours_alone() as out:
        asyncio.run(one())                               # left waiting: its loop closed
        logs.setup_logging("info", json=True, decisions="info", stream=out)
        assert json.loads(out.getvalue())["call_id"] == "call-9@198.51.100.7"
        out.close()                                      # e.g. bench_core's log file, closed at its end
        logs.setup_logging("info", json=True, decisions="info", stream=io.StringIO())
