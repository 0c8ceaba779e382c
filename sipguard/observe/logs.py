"""Structured JSON logs: one object per line, and one line per decision with its Call-ID.

``setup_logging(level, json=True, decisions="info")`` configures the root logger once.
``log_decision(record)`` is called for every INVITE: whether decision lines are on is
computed at setup (and on reload), so a disabled log costs one attribute test.
"""

from __future__ import annotations

import json as _json
import logging
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


class JsonFormatter(logging.Formatter):
    """``{"ts": ISO-8601 UTC, "level", "logger", "msg", ...extra fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _json.dumps(out, separators=(",", ":"), default=str)


def setup_logging(level: str = "info", json: bool = True, decisions: str = "info",
                  stream: IO[str] | None = None) -> None:
    """Configure the root logger: ``level`` for sipguard's own messages, ``decisions``
    (info | debug | off) for the per-call lines."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_sipguard", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._sipguard = True  # type: ignore[attr-defined]
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
    fields = {name: getattr(record, name) for name in DECISION_FIELDS}
    _decisions.log(level, "%s %s", record.action, record.call_id, extra={"fields": fields})
