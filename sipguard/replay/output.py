"""How replay results are shown: CONTRACT jsonl, a table for people, summaries, progress.

Writers take a text stream, so the CLI passes stdout/stderr and tests pass StringIO.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from sipguard.replay.runner import ReplayDecision

# one encoder for every line: json.dumps with options builds a new JSONEncoder per call
_JSONL = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))
_COMPARE = json.JSONEncoder(ensure_ascii=False)


def jsonl_line(d: ReplayDecision) -> str:
    return _JSONL.encode(d.to_json())


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _cut(text: str | None, width: int) -> str:
    text = "-" if text is None else text
    return text if len(text) <= width else text[:width - 1] + "~"


_COLUMNS = (("time (UTC)", 23), ("call-id", 20), ("source", 21), ("trunk", 12), ("caller", 14),
            ("callee", 14), ("verstat", 20), ("att", 3), ("rule", 22), ("action", 10))


def _row(values: Iterable[str]) -> str:
    return "  ".join(_cut(v, w).ljust(w) for v, (_, w) in zip(values, _COLUMNS, strict=True)).rstrip()


def _action(d: ReplayDecision) -> str:
    return f"reject {d.status}" if d.action == "reject" else ("forward+sign" if d.signed else "forward")


def _rule(d: ReplayDecision) -> str:
    """The rule that decided, or why there was none: "(default)" is the default decision of a
    call the policy saw; a call refused before it (a 400 for a message that does not parse)
    shows its reason."""
    if d.rule:
        return d.rule
    if d.action == "reject" and d.reasons:
        return f"({d.reasons[0]})"
    return "(default)"


def table_header() -> str:
    return _row(name for name, _ in _COLUMNS)


def table_row(d: ReplayDecision) -> str:
    return _row((_ts(d.time), d.call_id or "-", d.source, d.trunk or "-", d.caller or "-",
                 d.callee or "-", d.verstat, d.attest or "-", _rule(d), _action(d)))


@dataclass(slots=True)
class Summary:
    """Counts by action, verstat, reason and rule."""

    total: int = 0
    action: Counter[str] = field(default_factory=Counter)
    verstat: Counter[str] = field(default_factory=Counter)
    reason: Counter[str] = field(default_factory=Counter)
    rule: Counter[str] = field(default_factory=Counter)

    def add(self, d: ReplayDecision) -> None:
        self.total += 1
        self.action[_action(d)] += 1
        self.verstat[d.verstat] += 1
        self.reason.update(d.reasons or ("(none)",))
        self.rule[_rule(d)] += 1

    def lines(self) -> list[str]:
        out = [f"{self.total} INVITE transaction(s)"]
        for title, counter in (("action", self.action), ("verstat", self.verstat),
                               ("reason", self.reason), ("rule", self.rule)):
            if counter:
                out.append(f"by {title}:")
                out += [f"  {count:>8}  {name}" for name, count in counter.most_common()]
        return out


@dataclass(slots=True)
class CompareSummary:
    total: int = 0
    changed: int = 0
    transitions: Counter[str] = field(default_factory=Counter)

    def add(self, old: ReplayDecision, new: ReplayDecision, is_changed: bool) -> None:
        self.total += 1
        if is_changed:
            self.changed += 1
            self.transitions[f"{_describe(old)} -> {_describe(new)}"] += 1

    def lines(self) -> list[str]:
        out = [f"{self.changed} of {self.total} INVITE transaction(s) decided differently"]
        out += [f"  {count:>8}  {name}" for name, count in self.transitions.most_common()]
        return out


def _describe(d: ReplayDecision) -> str:
    return f"{_action(d)} [{_rule(d)}]"


def compare_line(old: ReplayDecision, new: ReplayDecision, fmt: str) -> str:
    if fmt == "jsonl":
        return _COMPARE.encode({"time": new.time, "call_id": new.call_id, "source": new.source,
                                "old": old.to_json(), "new": new.to_json()})
    return (f"{_ts(new.time)}  {_cut(new.call_id, 24):<24}  {_cut(new.source, 21):<21}  "
            f"{_describe(old)}  ->  {_describe(new)}")


class Progress:
    """A one-line progress bar on a terminal (stderr); silent when not a terminal."""

    def __init__(self, stream: TextIO, total_bytes: int, enabled: bool) -> None:
        self.stream = stream
        self.total = max(total_bytes, 1)
        self.enabled = enabled
        self._last = 0.0

    def update(self, done_bytes: int, invites: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        frac = min(done_bytes / self.total, 1.0)
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r[{bar:<30}] {frac * 100:5.1f}%  {invites} INVITEs")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()
