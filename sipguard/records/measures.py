"""Know your upstream: per trunk and per signer measures, and the ``trunk.score`` formula.

Pure: rows in, measures and scores out. records/upstreams.py gets the rows from the store
(a GROUP BY in SQLite and PostgreSQL, a streaming scan of the Redis Stream) and this module
folds them, so every store answers with the same arithmetic.

A row is one group of calls that agree on everything measured::

    (key, attest, verstat, caller_check, spc_owner, trunk_rmd, implementation, calls, last_time)

``key`` is the trunk id (upstreams) or the signer's SPC (signers). Definitions (README,
"Know your upstream"):

* ``verified`` / ``failed`` / ``unsigned``: the call's verstat was TN-Validation-Passed /
  TN-Validation-Failed / No-TN-Validation (no Identity, or one that could be neither verified
  nor failed, e.g. its certificate could not be fetched);
* attestation mix: the attestation of the PASSporT that verified (A, B, C) or ``none``;
* caller ID classes (``record.CALLER_CHECKS``): ``dno`` (on the Do-Not-Originate list),
  ``withheld`` (anonymous, no number), ``unallocated`` (an area code not in service or
  reserved, or 555-01XX), ``invalid`` (any other invalid number), ``valid``; ``unknown`` for
  records written before version 3, which did not keep the class;
* ``other_spc``: calls signed by an SPC that the OCN map gives to another FRN than the trunk
  provider's; ``other_spc_complete``: those of them whose upstream's RMD filing claimed
  "Complete STIR/SHAKEN Implementation" when the call came (FCC 24-120: since 2025-09-18 a
  provider claiming complete implementation signs with its own SPC token);
* ``rmd`` / ``implementation``: the trunk provider's RMD status and implementation as the
  last call of the window saw them (calls at the same instant: the greater status text, then
  implementation, whatever order the rows come in); ``rmd_seen``: calls per status in the window (a change
  of status within the window shows as two entries).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sipguard.records.record import CALLER_CHECKS
from sipguard.yamlconf import Section

Row = tuple[str, str | None, str | None, str | None, str | None, str | None, str | None, int, float]

ATTESTS = ("A", "B", "C", "none")
VERDICTS = ("verified", "failed", "unsigned")
CHECKS = (*CALLER_CHECKS, "unknown")
BAD_CALLERS = ("invalid", "unallocated", "dno")
_VERDICT = {"TN-Validation-Passed": "verified", "TN-Validation-Failed": "failed"}

# trunk.score = round(100 * max(0, 1 - penalty)); penalty = sum of WEIGHTS[m] * share of m.
# Shares of caller classes are over the calls whose class is known, the others over all calls.
WEIGHTS: dict[str, float] = {
    "failed": 1.0,              # verification failed: a forged or broken Identity
    "unsigned": 0.25,           # no usable Identity: common on foreign and TDM-bridged routes
    "invalid": 1.0,             # invalid caller IDs
    "unallocated": 1.0,         # caller IDs from area codes nobody was allocated
    "dno": 2.0,                 # caller IDs on the Do-Not-Originate list
    "a_bad": 2.0,               # A-attested calls whose caller ID is invalid, unallocated or DNO
    "other_spc_complete": 1.0,  # signed with another provider's SPC while claiming complete S/S
}


@dataclass(slots=True)
class Measures:
    """What the records say about one trunk or one signer over a window."""

    key: str
    calls: int = 0
    attest: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ATTESTS, 0))
    verdict: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    callers: dict[str, dict[str, int]] = field(
        default_factory=lambda: {a: dict.fromkeys(CHECKS, 0) for a in ATTESTS})
    owner: dict[str, int] = field(default_factory=dict)       # own | other | unknown -> signed calls
    other_spc_complete: int = 0
    rmd_seen: dict[str, int] = field(default_factory=dict)
    rmd: str | None = None
    implementation: str | None = None
    last_time: float = -math.inf

    def add(self, attest: str | None, verstat: str | None, check: str | None, owner: str | None,
            rmd: str | None, implementation: str | None, calls: int, last_time: float) -> None:
        a = attest if attest in ("A", "B", "C") else "none"
        self.calls += calls
        self.attest[a] += calls
        self.verdict[_VERDICT.get(verstat or "", "unsigned")] += calls
        self.callers[a][check if check in CALLER_CHECKS else "unknown"] += calls
        if owner is not None:
            self.owner[owner] = self.owner.get(owner, 0) + calls
            if owner == "other" and implementation == "complete":
                self.other_spc_complete += calls
        if rmd is not None:
            self.rmd_seen[rmd] = self.rmd_seen.get(rmd, 0) + calls
        # the latest call's; calls at the same instant: the greater (status, implementation), so
        # that the answer does not depend on the order the rows come in (a GROUP BY's is any)
        if (rmd is not None or implementation is not None) and (
                (last_time, rmd or "", implementation or "")
                > (self.last_time, self.rmd or "", self.implementation or "")):
            self.last_time, self.rmd, self.implementation = last_time, rmd, implementation

    def check_total(self, check: str) -> int:
        return sum(by[check] for by in self.callers.values())

    @property
    def checked(self) -> int:
        """Calls whose caller class is known (records of version 3 and later)."""
        return self.calls - self.check_total("unknown")

    @property
    def a_bad(self) -> int:
        return sum(self.callers["A"][c] for c in BAD_CALLERS)

    def shares(self) -> dict[str, float]:
        """Each measure the score weighs, as a share from 0 to 1."""
        checked = self.checked
        out = {v: _share(self.verdict[v], self.calls) for v in ("failed", "unsigned")}
        for check in BAD_CALLERS:
            out[check] = _share(self.check_total(check), checked)
        out["a_bad"] = _share(self.a_bad, checked)
        out["other_spc_complete"] = _share(self.other_spc_complete, self.calls)
        return out

    def to_json(self, name: str, min_calls: int) -> dict[str, Any]:
        checked = self.checked
        out: dict[str, Any] = {name: self.key, "calls": self.calls, "attest": dict(self.attest)}
        for verdict in VERDICTS:
            out[verdict] = self.verdict[verdict]
            out[f"{verdict}_share"] = _round(_share(self.verdict[verdict], self.calls))
        for check in BAD_CALLERS + ("withheld",):
            out[check] = self.check_total(check)
            out[f"{check}_share"] = _round(_share(self.check_total(check), checked))
        out["unknown_caller"] = self.check_total("unknown")
        out["callers_by_attest"] = {a: dict(by) for a, by in self.callers.items() if self.attest[a]}
        out["a_bad"] = self.a_bad
        out["spc_owner"] = dict(sorted(self.owner.items()))
        out["other_spc"] = self.owner.get("other", 0)
        out["other_spc_complete"] = self.other_spc_complete
        out["other_spc_complete_share"] = _round(_share(self.other_spc_complete, self.calls))
        if name == "trunk":
            out["rmd"] = self.rmd
            out["implementation"] = self.implementation
            out["rmd_seen"] = dict(sorted(self.rmd_seen.items()))
            out["score"] = score(self, min_calls)
        return out


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _round(value: float) -> float:
    return round(value, 4)


def fold(rows: Iterable[Row]) -> dict[str, Measures]:
    """The rows of a store's GROUP BY (or one per record from a scan) into Measures per key."""
    out: dict[str, Measures] = {}
    for key, attest, verstat, check, owner, rmd, impl, calls, last in rows:
        m = out.get(key)
        if m is None:
            m = out[key] = Measures(key)
        m.add(attest, verstat, check, owner, rmd, impl, int(calls), float(last))
    return out


def score(m: Measures, min_calls: int) -> int | None:
    """``trunk.score``: 100 for a clean upstream down to 0; None below ``min_calls`` calls
    (too few to judge: a null fact matches no rule)."""
    if m.calls < min_calls or m.calls == 0:
        return None
    shares = m.shares()
    penalty = sum(WEIGHTS[name] * shares[name] for name in WEIGHTS)
    return round(100 * max(0.0, 1.0 - penalty))


def ranked(measures: dict[str, Measures], n: int) -> list[Measures]:
    """The ``n`` keys with most calls (ties by key), heaviest first."""
    return sorted(measures.values(), key=lambda m: (-m.calls, m.key))[:n]


# -- the ``upstreams:`` config section ------------------------------------------------------

UPSTREAMS_KEYS = ("score_interval", "score_window", "score_min_calls")


@dataclass(frozen=True, slots=True)
class UpstreamsConfig:
    """``upstreams: {score_interval, score_window, score_min_calls}``.

    Every ``score_interval`` seconds each worker recomputes ``trunk.score`` for every trunk
    from the records of the last ``score_window`` seconds, in the whole minutes it touches, the
    one under way included (``upstreams.whole_minutes``; 0 turns the refresh off and the fact
    stays null), read from each store's per-minute roll-ups (``trunk_minutes``). A trunk with
    fewer than ``score_min_calls`` calls in the window has no score. The fact is at most
    ``score_interval`` plus one query old, and the records themselves reach the store up to a
    writer batch later (traceback.batch).
    """

    score_interval: float = 60.0
    score_window: float = 3600.0
    score_min_calls: int = 50

    @classmethod
    def from_section(cls, sec: Section) -> UpstreamsConfig:
        sec.check_keys(UPSTREAMS_KEYS)
        return cls(score_interval=float(sec.number("score_interval", default=60.0, minimum=0, maximum=86400)),
                   score_window=float(sec.number("score_window", default=3600.0, minimum=60, maximum=31 * 86400)),
                   score_min_calls=int(sec.int("score_min_calls", default=50, minimum=1, maximum=10**9)))


# -- ``since``: how far back a report looks --------------------------------------------------

_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float | None:
    """``7d``, ``24h``, ``90m``, ``3600s``, ``2w`` -> seconds; None if not of that form."""
    m = _DURATION.match(text.strip())
    return int(m[1]) * _UNIT[m[2]] if m else None
