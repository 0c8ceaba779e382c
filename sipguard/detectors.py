"""Campaign and spoofing detectors on live traffic: the ``campaign.*`` and ``spoof.*`` facts.

Stateless (a pure function of the call, no store, ``spoof_facts``):

* ``spoof.same``: caller == callee (both numbers, same E.164 digits).
* ``spoof.neighbor``: caller and callee are NANP numbers with the same NPA-NXX (the first six
  national digits) and are not the same number (that is ``spoof.same``).
* ``spoof.us_cid_foreign_trunk``: a US caller ID (``caller.us``) on a trunk of role
  ``foreign`` (the trunk of a provider outside the US: ``trunks[].role``) with no Identity
  header at all. A foreign provider may carry US callers legitimately (roaming, call centres
  it is authorised for), but unsigned: the FCC names this as the spoofing pattern to watch.
* ``spoof.a_on_bad_number``: a PASSporT that verified with attestation A for a caller number
  that is invalid (``caller.valid`` false) or on the DNO list. Null when the store did not
  answer and the number is valid (its DNO status is then unknown).

Windowed (kept in the store, one window per key; ``CampaignWindows`` in memory, the same
rule in lua/lookup.lua for Redis, in the call's single round trip):

* ``campaign.fanout``: one caller number reaching ``callees`` distinct callee numbers within
  ``window`` seconds. The window opens at the caller's first call and closes ``window``
  seconds later (a tumbling window per caller); the set of callees is kept exactly, and
  stops growing at ``callees`` (so its memory is bounded by the threshold). True from the
  call that brings the count to ``callees`` until the window closes.
* ``campaign.burst``: ``calls`` calls or more within ``window`` seconds from one caller prefix
  (the first ``prefix`` digits of the caller's E.164 number: 7 is country code 1 + NPA-NXX,
  an exchange of 10,000 numbers; 8 a thousands block; 4 a whole NANP area code). Tumbling window per
  prefix, opened by its first call. True from the ``calls``-th call of the window.

A detector that is not configured gives null (unknown) facts, as does a store that did not
answer: a rule on them then matches nothing (the same as every per-call store fact).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

from sipguard.yamlconf import Section

MAX_WINDOW = 86400          # seconds: a day; longer is not a live-traffic window
MAX_CALLEES = 512           # the Redis set stays an intset (8 bytes a callee) up to 512 members
MAX_BURST_CALLS = 10_000_000
DEFAULT_MAX_KEYS = 100_000  # memory store: callers (fanout) and prefixes (burst) tracked at once


@dataclass(frozen=True, slots=True)
class Fanout:
    window: float            # seconds
    callees: int             # distinct callees that make the fact true


@dataclass(frozen=True, slots=True)
class Burst:
    window: float
    calls: int
    prefix: int              # leading digits of the caller's E.164 number


@dataclass(frozen=True, slots=True)
class Detectors:
    """``analytics.campaign`` of the config; None: the detector is off."""

    fanout: Fanout | None = None
    burst: Burst | None = None
    max_keys: int = DEFAULT_MAX_KEYS

    @property
    def active(self) -> bool:
        return self.fanout is not None or self.burst is not None

    @classmethod
    def from_section(cls, analytics: Section) -> Detectors:
        analytics.check_keys(("campaign",))
        sec = analytics.section("campaign")
        sec.check_keys(("fanout", "burst", "max_keys"))
        fanout = burst = None
        fo = sec.section("fanout")
        if fo.keys():
            fo.check_keys(("window", "callees"))
            fanout = Fanout(float(fo.number("window", minimum=1, maximum=MAX_WINDOW)),
                            fo.int("callees", minimum=2, maximum=MAX_CALLEES))
        bu = sec.section("burst")
        if bu.keys():
            bu.check_keys(("window", "calls", "prefix"))
            burst = Burst(float(bu.number("window", minimum=1, maximum=MAX_WINDOW)),
                          bu.int("calls", minimum=2, maximum=MAX_BURST_CALLS),
                          bu.int("prefix", default=7, minimum=1, maximum=15))
        return cls(fanout, burst, sec.int("max_keys", default=DEFAULT_MAX_KEYS, minimum=100, maximum=10_000_000))


NO_DETECTORS = Detectors()


def burst_key(caller: str | None, burst: Burst) -> str | None:
    """The prefix a burst is counted on: the first ``prefix`` digits of the caller's E.164."""
    if not caller:
        return None
    d = caller[1:] if caller.startswith("+") else caller
    return d[:burst.prefix] if d.isascii() and d.isdigit() else None


def callee_member(callee: str | None) -> int | None:
    """A callee as the integer kept in a fanout set (E.164: at most 15 digits, fits 64 bits)."""
    if not callee:
        return None
    d = callee[1:] if callee.startswith("+") else callee
    return int(d) if d.isascii() and d.isdigit() and 0 < len(d) <= 15 else None


class CampaignWindows:
    """Both campaign detectors in memory, bounded: at most ``max_keys`` keys per detector.

    A key's window is (start, payload) in an insertion-ordered dict; a key whose window ended
    is re-inserted when it opens a new one, so the dict is in window-start order: expired
    windows are dropped from its front, and when it is full of live windows the oldest goes
    (an evicted key restarts from zero: the detectors then under-count, never over-count).
    Fanout payloads are arrays of 64-bit callees, capped at the threshold.
    """

    __slots__ = ("cfg", "_fanout", "_burst")

    def __init__(self, cfg: Detectors) -> None:
        self.cfg = cfg
        self._fanout: dict[str, list[Any]] = {}   # caller -> [start, array of callees or None]
        self._burst: dict[str, list[Any]] = {}    # prefix -> [start, calls]

    def __len__(self) -> int:
        return len(self._fanout) + len(self._burst)

    def fanout(self, caller: str | None, callee: str | None, now: float) -> bool | None:
        cfg = self.cfg.fanout
        if cfg is None:
            return None
        member = callee_member(callee)
        if not caller or member is None or not caller.isdigit():
            return False
        got = self._window(self._fanout, caller, cfg.window, now, None)
        seen = got[1]
        if seen is None:
            seen = got[1] = array("q")
        if len(seen) < cfg.callees and member not in seen:
            seen.append(member)
        return len(seen) >= cfg.callees

    def burst(self, caller: str | None, now: float) -> bool | None:
        cfg = self.cfg.burst
        if cfg is None:
            return None
        key = burst_key(caller, cfg)
        if key is None:
            return False
        got = self._window(self._burst, key, cfg.window, now, 0)
        got[1] += 1
        return bool(got[1] >= cfg.calls)

    def _window(self, windows: dict[str, list[Any]], key: str, window: float, now: float,
                empty: Any) -> list[Any]:
        """The key's window in force at ``now``: [start, payload], a new one (``empty``
        payload, re-inserted last) when there is none or it has ended."""
        got = windows.get(key)
        if got is None or now - got[0] >= window:
            if got is not None:
                del windows[key]
            else:
                self._make_room(windows, window, now)
            got = [now, empty]
            windows[key] = got
        return got

    def _make_room(self, windows: dict[str, Any], window: float, now: float) -> None:
        """Before adding a key: drop ended windows from the front, and the oldest when full."""
        while windows:
            first = next(iter(windows))
            start = windows[first][0]
            if now - start >= window or len(windows) >= self.cfg.max_keys:
                del windows[first]
                continue
            break


def spoof_facts(caller_e164: str | None, callee_e164: str | None, caller_us: bool, caller_valid: bool,
                attest: str | None, passed: bool, has_identity: bool, foreign_trunk: bool,
                dno: bool | None) -> tuple[bool, bool, bool, bool | None]:
    """(spoof.neighbor, spoof.same, spoof.us_cid_foreign_trunk, spoof.a_on_bad_number); see
    the module docstring. ``dno`` None: the DNO list was not consulted (store down)."""
    same = caller_e164 is not None and caller_e164 == callee_e164
    neighbor = (not same and caller_e164 is not None and callee_e164 is not None
                and len(caller_e164) == 11 and len(callee_e164) == 11
                and caller_e164[0] == "1" and callee_e164[0] == "1"
                and caller_e164[:7] == callee_e164[:7])
    foreign = foreign_trunk and caller_us and not has_identity
    bad: bool | None = False
    if passed and attest == "A":
        bad = True if not caller_valid or dno else (None if dno is None else False)
    return neighbor, same, foreign, bad
