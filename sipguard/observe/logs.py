"""Structured JSON logs: one object per line, and one line per decision with its Call-ID.

``setup_logging(level, json=True, decisions="info")`` configures the root logger once.
``log_decision(record)`` is called for every INVITE: whether decision lines are on is
computed at setup (and on reload), so a disabled log costs one attribute test. When the
only handler a decision line reaches is the one ``setup_logging`` installed (the case in
``serve``), the line is written straight to its stream, the same bytes ``JsonFormatter``
makes, without a ``LogRecord`` and the logging module's call chain (a fifth of the cost); a
handler, filter or level added later (a test's log capture, an embedding application) sends
the lines through ``logging`` again, as before.
"""

from __future__ import annotations

import json as _json
import logging
import operator
import sys
import time
from typing import IO, Any

from sipguard.records.record import CallRecord

DECISION_LOGGER = "sipguard.decisions"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# the record fields a decision line carries (the full record is in the traceback store)
DECISION_FIELDS = ("call_id", "source_ip", "source_port", "trunk", "caller", "callee", "verstat", "attest",
                   "reasons", "rule", "action", "status", "shadow_action", "signed", "next_hop")

_decisions = logging.getLogger(DECISION_LOGGER)
_decision_level: int | None = logging.INFO   # None: decision lines off
_decision_values = operator.attrgetter(*DECISION_FIELDS)
# one encoder for every line (json.dumps with default= builds a new one per call)
_encode = _json.JSONEncoder(separators=(",", ":"), default=str).encode
_ours: logging.StreamHandler[IO[str]] | None = None   # the handler setup_logging installed


def _timestamp(created: float) -> str:
    """``ts`` of a line: ISO-8601 UTC with milliseconds, as ``LogRecord`` computes them; the
    part to the second is kept until the second changes."""
    global _ts_second, _ts_text
    second = int(created)
    if second != _ts_second:
        _ts_second, _ts_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{_ts_text}.{int((created - second) * 1000):03d}Z"


_ts_second, _ts_text = -1, ""


class JsonFormatter(logging.Formatter):
    """``{"ts": ISO-8601 UTC, "level", "logger", "msg", ...extra fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _encode(out)


def setup_logging(level: str = "info", json: bool = True, decisions: str = "info",
                  stream: IO[str] | None = None) -> None:
    """Configure the root logger: ``level`` for sipguard's own messages, ``decisions``
    (info | debug | off) for the per-call lines."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_sipguard", False):
            root.removeHandler(handler)
    global _ours
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._sipguard = True  # type: ignore[attr-defined]
    _ours = handler if json else None
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    set_decisions(decisions)


def set_decisions(decisions: str) -> None:
    """Decision lines at ``info`` or ``debug``, or ``off``; computed once, not per call."""
    global _decision_level
    if decisions == "off":
        _decision_level = None
        return
    _decision_level = LEVELS.get(decisions, logging.INFO)
    _decisions.setLevel(logging.NOTSET)
    if not _decisions.isEnabledFor(_decision_level):
        _decision_level = None


def log_decision(record: CallRecord) -> None:
    level = _decision_level
    if level is None:
        return
    handler = _sole_handler(level)
    if handler is None:
        fields = dict(zip(DECISION_FIELDS, _decision_values(record), strict=True))
        _decisions.log(level, "%s %s", record.action, record.call_id, extra={"fields": fields})
        return
    out: dict[str, Any] = {"ts": _timestamp(time.time()), "level": logging.getLevelName(level).lower(),
                           "logger": DECISION_LOGGER, "msg": f"{record.action} {record.call_id}"}
    out.update(zip(DECISION_FIELDS, _decision_values(record), strict=True))
    line = _encode(out) + handler.terminator
    with handler.lock:  # type: ignore[union-attr]
        try:
            handler.stream.write(line)
            handler.stream.flush()
        except Exception:  # what StreamHandler.emit does with a failed write
            handler.handleError(_decisions.makeRecord(DECISION_LOGGER, level, __file__, 0, "%s %s",
                                                      (record.action, record.call_id), None))


def _sole_handler(level: int) -> logging.StreamHandler[IO[str]] | None:
    """The handler ``setup_logging`` installed when a decision line at ``level`` would reach
    it and nothing else (no other handler, no filter on the way, levels letting it through);
    None: let ``logging`` deliver it."""
    ours = _ours
    if ours is None or ours.filters or level < ours.level or not _decisions.isEnabledFor(level):
        return None
    logger: logging.Logger | None = _decisions
    while logger is not None:
        if logger.filters:
            return None
        if logger.handlers:  # ours alone, and nothing above it
            only = len(logger.handlers) == 1 and logger.handlers[0] is ours
            return ours if only and (logger.parent is None or not logger.propagate) else None
        if not logger.propagate:
            return None
        logger = logger.parent
    return None
