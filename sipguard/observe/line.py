"""The decision line's bytes (``decision_line``), compiled with the hot path (sipguard/native.py):
``observe/logs.py`` writes them. Apart from logs.py because that one subclasses ``logging``'s
classes and is not compiled; nothing here reads or writes a logger.
"""

from __future__ import annotations

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


def _timestamp(created: float) -> str:
    """``ts`` of a line: ISO-8601 UTC with milliseconds, as ``LogRecord`` computes them; the
    part to the second is kept until the second changes."""
    second = int(created)
    if second != _second.at:
        _second.at, _second.text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{_second.text}.{int((created - second) * 1000):03d}Z"


class _Second:
    """The second ``_timestamp`` wrote last, as text."""

    def __init__(self) -> None:
        self.at = -1
        self.text = ""


_second = _Second()


def decision_line(record: CallRecord, created: float, level: int) -> str:
    """The JSON object ``JsonFormatter`` makes of ``record``'s decision line, byte for byte
    (tests/unit/test_decision_line.py): the keys spelled out once here, the values of the
    expected types encoded one by one; any other value goes to the generic encoder."""
    (call_id, source_ip, source_port, trunk, caller, callee, verstat, attest, reasons, rule, action,
     status, shadow_action, signed, next_hop) = _decision_values(record)
    ts, name = _timestamp(created), logging.getLevelName(level).lower()
    if type(source_port) is int and type(signed) is bool and type(reasons) is tuple \
            and (status is None or type(status) is int):
        try:
            return (f'{{"ts":"{ts}","level":"{name}","logger":"{DECISION_LOGGER}","msg":{_text(f"{action} {call_id}")},'
                    f'"call_id":{_text(call_id)},"source_ip":{_text(source_ip)},"source_port":{source_port},'
                    f'"trunk":{_opt(trunk)},"caller":{_opt(caller)},"callee":{_opt(callee)},'
                    f'"verstat":{_text(verstat)},"attest":{_opt(attest)},'
                    f'"reasons":[{",".join(map(_text, reasons))}],"rule":{_opt(rule)},"action":{_text(action)},'
                    f'"status":{"null" if status is None else status},"shadow_action":{_opt(shadow_action)},'
                    f'"signed":{"true" if signed else "false"},"next_hop":{_opt(next_hop)}}}')
        except TypeError:   # a value that is not a str where one is expected
            pass
    out: dict[str, Any] = {"ts": ts, "level": name, "logger": DECISION_LOGGER, "msg": f"{action} {call_id}"}
    out.update(zip(DECISION_FIELDS, _decision_values(record), strict=True))
    return _encode(out)


def _opt(value: str | None) -> str:
    return "null" if value is None else _text(value)
