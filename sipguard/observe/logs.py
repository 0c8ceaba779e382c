"""Structured JSON logs: one object per line, and one line per decision with its Call-ID.

``setup_logging(level, json=True, decisions="info")`` configures the root logger once.
``log_decision(record)`` (``observe/line.py``, compiled) is called for every INVITE: whether
decision lines are on is computed at setup (and on reload), so a disabled log costs one
attribute test. When the only handler a decision line reaches is the one ``setup_logging``
installed (the case in ``serve``), the line skips the logging module's call chain (no
``LogRecord``): it is encoded by ``decision_line`` (the bytes ``JsonFormatter`` makes,
without a generic JSON encoder) and written by the handler in one go with the lines of the
next ``FLUSH_AFTER`` seconds (``DecisionLines``). A handler, filter or level added later (a
test's log capture, an embedding application) sends the lines through ``logging`` again, as
before.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time  # noqa: F401 - tests set logs.time.time, the clock of the lines
from typing import IO, Any

from sipguard.observe.line import (
    DECISION_FIELDS,
    DECISION_LOGGER,
    FLUSH_AFTER,
    MAX_PENDING,
    STATE,
    _encode,
    _timestamp,
    decision_line,
    log_decision,
)

__all__ = ["DECISION_FIELDS", "DECISION_LOGGER", "FLUSH_AFTER", "MAX_PENDING", "JsonFormatter", "decision_line",
           "log_decision", "setup_logging"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

_decisions = logging.getLogger(DECISION_LOGGER)


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
    """The JSON handler ``setup_logging`` installs. Decision lines (``line.log_decision``)
    wait in ``pending``, without their terminator, for a timer on the running event loop
    (written at once when none runs); anything logged through the handler, ``flush`` and the
    logging module's shutdown write them first, so lines keep their order."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.pending: list[str] = []
        self.timer_on: asyncio.AbstractEventLoop | None = None   # the loop a flush is due on

    def timed_flush(self) -> None:
        self.timer_on = None
        self.write_pending()

    def write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            pending = self.pending
            count = len(pending)   # lines appended from here on stay for the next write
            if not count:
                return
            terminator = self.terminator
            text = terminator.join(pending[:count]) + terminator
            del pending[:count]
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
    handler = DecisionLines(stream or sys.stderr)
    handler._sipguard = True  # type: ignore[attr-defined]
    STATE.handler = handler if json else None
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    set_decisions(decisions)


def set_decisions(decisions: str) -> None:
    """Decision lines at ``info`` or ``debug``, or ``off``; computed once, not per call."""
    STATE.level = 0
    if decisions == "off":
        return
    level = LEVELS.get(decisions, logging.INFO)
    _decisions.setLevel(logging.NOTSET)
    if _decisions.isEnabledFor(level):
        STATE.level, STATE.name = level, logging.getLevelName(level).lower()


def installed() -> DecisionLines | None:
    """The JSON handler ``setup_logging`` installed last (None: none, or plain text)."""
    handler: DecisionLines | None = STATE.handler
    return handler
