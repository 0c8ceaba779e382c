"""The decision line, compiled with the hot path (sipguard/native.py): its bytes
(``decision_line``) and its way to the handler ``observe/logs.py`` installed
(``log_decision``). Apart from logs.py because that one subclasses ``logging``'s classes and
is not compiled; logs.py sets ``STATE`` at setup.
"""

from __future__ import annotations

import asyncio
import json as _json
import logging
import operator
import time
from json.encoder import encode_basestring_ascii as _text  # '"..."', escaped as json.dumps does
from typing import Any

from sipguard.records.record import CallRecord

DECISION_LOGGER = "sipguard.decisions"
# the record fields a decision line carries (the full record is in the traceback store)
DECISION_FIELDS = ("call_id", "source_ip", "source_port", "trunk", "caller", "callee", "verstat", "attest",
                   "reasons", "rule", "action", "status", "shadow_action", "signed", "next_hop")
_decision_values = operator.attrgetter(*DECISION_FIELDS)
# one encoder for every line (json.dumps with default= builds a new one per call)
_encode = _json.JSONEncoder(separators=(",", ":"), default=str).encode
_decisions = logging.getLogger(DECISION_LOGGER)
# Decision lines written straight to the stream wait at most this long (and at most
# MAX_PENDING lines) to go out in one write: a worker killed outright (SIGKILL, OOM) loses
# the lines of its last FLUSH_AFTER seconds; a stop (SIGTERM, exit) writes them all.
FLUSH_AFTER = 0.05
MAX_PENDING = 100
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


class DecisionLog:
    """Where decision lines go: ``level`` (0: off) and its name in a line, and ``handler``,
    the ``logs.DecisionLines`` setup_logging installed for JSON lines (None: through
    ``logging``). Set by ``logs.set_decisions`` and ``setup_logging``, not per call."""

    def __init__(self) -> None:
        self.level = logging.INFO
        self.name = "info"
        self.handler: Any = None


STATE = DecisionLog()


def _timestamp(created: float) -> str:
    """``ts`` of a line: ISO-8601 UTC with milliseconds, as ``LogRecord`` computes them; the
    part to the second is kept until the second changes."""
    second = int(created)
    if second != _second.at:
        _second.at, _second.text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    ms = int((created - second) * 1000)
    return _second.text + (_MILLIS[ms] if 0 <= ms < 1000 else f".{ms:03d}Z")


class _Second:
    """The second ``_timestamp`` wrote last, as text."""

    def __init__(self) -> None:
        self.at = -1
        self.text = ""


_second = _Second()


def log_decision(record: CallRecord) -> None:
    """``record``'s decision line, if decision lines are on: appended to the handler's pending
    lines for its timer on the running event loop (written at once when no flush is due on a
    running loop and this thread runs none, or when MAX_PENDING wait), or through ``logging``
    when another handler or a filter is on the way. The append takes no lock: only the loop's
    thread appends, and ``write_pending`` (under the handler's lock) takes the lines it saw
    and leaves those added meanwhile."""
    level = STATE.level
    if not level:
        return
    handler = _sole_handler(level)
    if handler is None:
        fields = dict(zip(DECISION_FIELDS, _decision_values(record), strict=True))
        _decisions.log(level, "%s %s", record.action, record.call_id, extra={"fields": fields})
        return
    pending: list[str] = handler.pending
    pending.append(decision_line(record, time.time(), level))
    timer_on = handler.timer_on
    if timer_on is not None and len(pending) < MAX_PENDING and timer_on.is_running():
        # a flush is due on a running loop: most lines stop here, without get_running_loop
        # (a getpid system call each time in CPython 3.11)
        return
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:   # no event loop in this thread: now
        loop = None
    if loop is not None and len(pending) < MAX_PENDING:
        if handler.timer_on is not loop:   # one timer at a time (a closed loop's never fires)
            handler.timer_on = loop
            loop.call_later(FLUSH_AFTER, handler.timed_flush)
        return
    handler.write_pending()


def _sole_handler(level: int) -> Any:
    """The handler ``setup_logging`` installed when a decision line at ``level`` would reach
    it and nothing else (no other handler, no filter on the way, levels letting it through);
    None: let ``logging`` deliver it."""
    ours = STATE.handler
    if ours is None or ours.filters or level < ours.level or not _decisions.isEnabledFor(level):
        return None
    logger: Any = _decisions
    while logger is not None:
        if logger.filters:
            return None
        handlers = logger.handlers
        if handlers:  # ours alone, and nothing above it
            only = len(handlers) == 1 and handlers[0] is ours
            return ours if only and (logger.parent is None or not logger.propagate) else None
        if not logger.propagate:
            return None
        logger = logger.parent
    return None


def decision_line(record: CallRecord, created: float, level: int) -> str:
    """The JSON object ``JsonFormatter`` makes of ``record``'s decision line, byte for byte
    (tests/unit/test_decision_line.py): the keys spelled out once here, the values of the
    expected types encoded one by one; any other value goes to the generic encoder."""
    call_id: Any = record.call_id
    source_port: Any = record.source_port
    reasons: Any = record.reasons
    action: Any = record.action
    status: Any = record.status
    signed: Any = record.signed
    ts = _timestamp(created)
    name = STATE.name if level == STATE.level else logging.getLevelName(level).lower()
    if type(source_port) is int and type(signed) is bool and type(reasons) is tuple \
            and (status is None or type(status) is int):
        try:
            return (f'{{"ts":"{ts}","level":"{name}","logger":"{DECISION_LOGGER}","msg":{_text(f"{action} {call_id}")},'
                    f'"call_id":{_text(call_id)},"source_ip":{_same(record.source_ip)},"source_port":{source_port},'
                    f'"trunk":{_same(record.trunk)},"caller":{_opt(record.caller)},"callee":{_opt(record.callee)},'
                    f'"verstat":{_same(record.verstat)},"attest":{_same(record.attest)},'
                    f'"reasons":[{",".join(map(_same, reasons)) if reasons else ""}],"rule":{_same(record.rule)},'
                    f'"action":{_same(action)},"status":{"null" if status is None else status},'
                    f'"shadow_action":{_same(record.shadow_action)},"signed":{"true" if signed else "false"},'
                    f'"next_hop":{_same(record.next_hop)}}}')
        except TypeError:   # a value that is not a str where one is expected
            pass
    out: dict[str, Any] = {"ts": ts, "level": name, "logger": DECISION_LOGGER, "msg": f"{action} {call_id}"}
    out.update(zip(DECISION_FIELDS, _decision_values(record), strict=True))
    return _encode(out)


def _opt(value: Any) -> str:
    return "null" if value is None else _text(value)


def _same(value: Any) -> str:
    """``_opt`` of a value many lines repeat (address, trunk, verstat, rule, next hop...),
    encoded once: the first QUOTED distinct ones are kept."""
    quoted = _QUOTED.get(value) if type(value) is str else None
    if quoted is None:
        quoted = _opt(value)
        if len(_QUOTED) < QUOTED and type(value) is str:
            _QUOTED[value] = quoted
    return quoted


QUOTED = 512
_QUOTED: dict[str, str] = {}
