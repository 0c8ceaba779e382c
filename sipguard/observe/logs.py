"""Structured JSON logs: one object per line, and one line per decision with its Call-ID.

``setup_logging(level, json=True, decisions="info")`` configures the root logger once.
``log_decision(record)`` is called for every INVITE: whether decision lines are on is
computed at setup (and on reload), so a disabled log costs one attribute test. When the
only handler a decision line reaches is the one ``setup_logging`` installed (the case in
``serve``), the line skips the logging module's call chain (no ``LogRecord``): it is
encoded by ``decision_line`` (the bytes ``JsonFormatter`` makes, without a generic JSON
encoder) and written by the handler in one go with the lines of the next ``FLUSH_AFTER``
seconds (``DecisionLines``). A handler, filter or level added later (a test's log capture,
an embedding application) sends the lines through ``logging`` again, as before.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import sys
import time
from typing import IO, Any

from sipguard.observe.line import DECISION_FIELDS, DECISION_LOGGER, _encode, _timestamp, decision_line
from sipguard.records.record import CallRecord

__all__ = ["DECISION_FIELDS", "DECISION_LOGGER", "JsonFormatter", "decision_line", "log_decision", "setup_logging"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

_decisions = logging.getLogger(DECISION_LOGGER)
_decision_level: int | None = logging.INFO   # None: decision lines off
_decision_values = operator.attrgetter(*DECISION_FIELDS)
_ours: DecisionLines | None = None   # the handler setup_logging installed (JSON lines)
# Decision lines written straight to the stream wait at most this long (and at most
# MAX_PENDING lines) to go out in one write: a worker killed outright (SIGKILL, OOM) loses
# the lines of its last FLUSH_AFTER seconds; a stop (SIGTERM, exit) writes them all.
FLUSH_AFTER = 0.05
MAX_PENDING = 100


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


class DecisionLines(logging.StreamHandler[IO[str]]):
    """The JSON handler ``setup_logging`` installs. Decision lines handed to ``add`` wait in
    ``pending`` for a timer on the running event loop (written at once when none runs);
    anything logged through the handler, ``flush`` and the logging module's shutdown write
    them first, so lines keep their order."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.pending: list[str] = []
        self._timer_on: asyncio.AbstractEventLoop | None = None   # the loop a flush is due on

    def add(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.pending.append(line)
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:   # no event loop in this thread: now
                loop = None
            if loop is not None and len(self.pending) < MAX_PENDING:
                if self._timer_on is not loop:   # one timer at a time (a closed loop's never fires)
                    self._timer_on = loop
                    loop.call_later(FLUSH_AFTER, self._timed_flush)
                return
            self.write_pending()

    def _timed_flush(self) -> None:
        self._timer_on = None
        self.write_pending()

    def write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if not self.pending:
                return
            text = "".join(self.pending)
            self.pending = []
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:  # what StreamHandler.emit does with a failed write
                self.handleError(logging.makeLogRecord({"name": DECISION_LOGGER, "msg": "decision lines"}))

    def flush(self) -> None:
        self.write_pending()
        super().flush()

    def emit(self, record: logging.LogRecord) -> None:
        if self.pending:
            self.write_pending()
        super().emit(record)


def setup_logging(level: str = "info", json: bool = True, decisions: str = "info",
                  stream: IO[str] | None = None) -> None:
    """Configure the root logger: ``level`` for sipguard's own messages, ``decisions``
    (info | debug | off) for the per-call lines."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_sipguard", False):
            if isinstance(handler, DecisionLines):
                handler.write_pending()
            root.removeHandler(handler)
    global _ours
    handler = DecisionLines(stream or sys.stderr)
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
    handler.add(decision_line(record, time.time(), level) + handler.terminator)


def _sole_handler(level: int) -> DecisionLines | None:
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
