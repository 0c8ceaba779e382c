"""The state store interface: what a call looks up, what the admin tools write.

One ``Store`` protocol, two backends (``memory.MemoryStore``, ``redis.RedisStore``) with the
same behaviour, chosen by the ``store:`` URL in ``open_store`` (sipguard/store/__init__.py).
The pipeline calls ``lookup(keys, now)`` once per INVITE; it never raises: a store that
cannot answer in time gives ``Lookups(degraded=True)``. Everything else (imports, lists,
notices) is admin work that may take several round trips and may raise ``SipguardError``.

This module holds only values, the config parser for ``limits:`` and the protocol; it does
no I/O.

List precedence (``Lookups.list``): entries are matched on the caller number (exact), the
caller's prefixes (longest first), the trunk id and the signer SPC. If any matching entry is
on the block list the result is ``block`` (block wins, whatever the specificity), else
``allow`` if any matched; ``list_entry`` names the entry that decided, e.g. ``prefix:1202555``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sipguard.errors import SipguardError
from sipguard.yamlconf import Section

if TYPE_CHECKING:
    from sipguard.detectors import Detectors
    from sipguard.threats import ThreatEntry, ThreatIndex

LIMIT_FIELDS = ("trunk", "source", "caller", "callee", "spc")
LIST_KINDS = ("number", "prefix", "trunk", "spc")
LIST_NAMES = ("allow", "block")
IMPLEMENTATIONS = ("complete", "partial", "none", "unknown")

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One named limiter: a GCRA bucket per distinct value of ``key`` fields."""

    name: str
    key: tuple[str, ...]      # fields from LIMIT_FIELDS
    rate: float               # tokens per second
    burst: int
    per_trunk: Mapping[str, float] | None = None   # rate: trunk.cps -> each trunk's own cps

    def rate_for(self, trunk: str | None) -> float | None:
        """The rate for this call; None when the limiter does not apply (trunk without cps)."""
        if self.per_trunk is None:
            return self.rate
        return self.per_trunk.get(trunk) if trunk is not None else None


MAX_RATE = 1e6     # calls per second: far above any trunk; "999...9/s" would overflow the burst


def parse_rate(text: str) -> float | None:
    """``"10/min"`` -> 0.1666 tokens per second; None if the text is not a rate."""
    match = _RATE.match(text)
    if match is None:
        return None
    return float(match.group(1)) / _PER[match.group(2)]


def parse_limits(sec: Section, trunk_cps: Mapping[str, float]) -> tuple[LimitSpec, ...]:
    """The ``limits:`` config section -> LimitSpecs (ConfigError names file:line:key)."""
    specs = []
    for name in sec.keys():
        item = sec.section(name, required=True)
        item.check_keys(("key", "rate", "burst"))
        raw_key = item.raw("key")
        fields = item.list("key", item=str) if raw_key is not None else []
        if not fields:
            raise item.error("key", f"required: one of {', '.join(LIMIT_FIELDS)} or a list of them")
        for value in fields:
            if value not in LIMIT_FIELDS:
                raise item.error("key", f"{value!r} is not one of: {', '.join(LIMIT_FIELDS)}")
        if len(set(fields)) != len(fields):
            raise item.error("key", "a field is named twice")
        rate_text = item.str("rate")
        per_trunk: dict[str, float] | None = None
        if rate_text.strip() == "trunk.cps":
            per_trunk = {t: float(c) for t, c in trunk_cps.items() if c}
            if not per_trunk:
                raise item.error("rate", "rate: trunk.cps needs a `cps` value on at least one trunk")
            if "trunk" not in fields:
                raise item.error("rate", "rate: trunk.cps needs `trunk` in the limiter's key")
            rate = max(per_trunk.values())
        else:
            parsed = parse_rate(rate_text)
            if parsed is None or parsed <= 0:
                raise item.error("rate", f"{rate_text!r}: expected N/s, N/min, N/h (N > 0) or trunk.cps")
            if parsed > MAX_RATE:
                raise item.error("rate", f"{rate_text[:40]!r}: more than {MAX_RATE:.0f}/s is not a rate limit")
            rate = parsed
        burst = item.int("burst", default=max(1, int(rate)), minimum=1)
        specs.append(LimitSpec(str(name), tuple(fields), rate, burst, per_trunk))
    return tuple(specs)


@dataclass(frozen=True, slots=True)
class LookupKeys:
    trunk: str | None
    trunk_frn: str | None
    trunk_rmd: str | None        # RMD number of the trunk's provider, from config
    source_ip: str
    caller: str | None           # E.164 digits (a leading + is tolerated)
    callee: str | None
    spc: str | None              # SPC of the signing certificate, None if none
    # PASSporT replay (store/replay.py): the verified signature's key, None when there is none
    passport: str | None = None
    passport_call: str = ""      # replay.call_key(Call-ID)
    passport_ttl: float = 0.0    # seconds the PASSporT stays fresh

    def __init__(self, trunk: str | None, trunk_frn: str | None, trunk_rmd: str | None, source_ip: str,
                 caller: str | None, callee: str | None, spc: str | None, passport: str | None = None,
                 passport_call: str = "", passport_ttl: float = 0.0) -> None:
        # written out (dataclass keeps it): compiled, where the generated one runs interpreted
        # (bench/RESULTS.md, session 9); tests/unit/test_written_inits.py checks it field by field
        object.__setattr__(self, "trunk", trunk)
        object.__setattr__(self, "trunk_frn", trunk_frn)
        object.__setattr__(self, "trunk_rmd", trunk_rmd)
        object.__setattr__(self, "source_ip", source_ip)
        object.__setattr__(self, "caller", caller)
        object.__setattr__(self, "callee", callee)
        object.__setattr__(self, "spc", spc)
        object.__setattr__(self, "passport", passport)
        object.__setattr__(self, "passport_call", passport_call)
        object.__setattr__(self, "passport_ttl", passport_ttl)


@dataclass(frozen=True, slots=True)
class Lookups:
    trunk_rmd: str | None = "absent"          # listed | removed | absent; None: unknown (store down)
    trunk_implementation: str | None = None   # complete | partial | none | unknown
    signer_rmd: str | None = None             # listed | removed | absent; None when no SPC
    signer_frn: str | None = None
    caller_dno: bool = False
    list: str | None = None                   # allow | block | None (block wins, see module doc)
    list_entry: str | None = None             # e.g. "number:12025550123", "prefix:1202"
    limited: tuple[str, ...] = ()
    notice: str | None = None
    degraded: bool = False
    rmd_snapshot: str | None = None
    # campaign detectors (sipguard/detectors.py): None when off or the store did not answer
    campaign_fanout: bool | None = None
    campaign_burst: bool | None = None
    passport_replayed: bool | None = False    # PASSporT replay (replay.py); None: the store did not answer

    def __init__(self, trunk_rmd: str | None = "absent", trunk_implementation: str | None = None,
                 signer_rmd: str | None = None, signer_frn: str | None = None, caller_dno: bool = False,
                 list: str | None = None, list_entry: str | None = None, limited: tuple[str, ...] = (),
                 notice: str | None = None, degraded: bool = False, rmd_snapshot: str | None = None,
                 campaign_fanout: bool | None = None, campaign_burst: bool | None = None,
                 passport_replayed: bool | None = False) -> None:
        # written out, as LookupKeys'
        object.__setattr__(self, "trunk_rmd", trunk_rmd)
        object.__setattr__(self, "trunk_implementation", trunk_implementation)
        object.__setattr__(self, "signer_rmd", signer_rmd)
        object.__setattr__(self, "signer_frn", signer_frn)
        object.__setattr__(self, "caller_dno", caller_dno)
        object.__setattr__(self, "list", list)
        object.__setattr__(self, "list_entry", list_entry)
        object.__setattr__(self, "limited", limited)
        object.__setattr__(self, "notice", notice)
        object.__setattr__(self, "degraded", degraded)
        object.__setattr__(self, "rmd_snapshot", rmd_snapshot)
        object.__setattr__(self, "campaign_fanout", campaign_fanout)
        object.__setattr__(self, "campaign_burst", campaign_burst)
        object.__setattr__(self, "passport_replayed", passport_replayed)


# The store did not answer: nothing is known (unknown facts match no rule). The Redis store
# fills in the RMD answers it had for the same provider and signer (redis.py, _remembered).
DEGRADED = Lookups(trunk_rmd=None, degraded=True, passport_replayed=None)


@dataclass(frozen=True, slots=True)
class RmdRecord:
    """One RMD filing, normalised. ``line`` is where it started in its file."""

    rmd: str | None                    # RMD0001234
    frns: tuple[str, ...]              # 10-digit FRNs: the filing's own first, then other_frns
    business_name: str = ""
    implementation: str = "unknown"    # IMPLEMENTATIONS
    country: str = ""
    foreign: bool | None = None
    gateway: bool | None = None
    last_updated: str = ""
    line: int = 0


RMD_CHANGES = ("added", "removed", "relisted", "implementation")
MAX_RMD_CHANGES = 100_000      # changes a store keeps (the oldest go first): years of daily imports


@dataclass(frozen=True, slots=True)
class RmdChange:
    """One filing whose status or implementation changed between two RMD imports (RMD watch).

    ``change``: added (absent before, listed now), removed (listed or absent before, removed
    now), relisted (removed before, listed now), implementation (listed in both, its
    implementation changed). ``time`` is when the import ran (epoch seconds)."""

    time: float
    snapshot: str
    previous: str
    rmd: str
    frn: str
    change: str
    old_status: str
    new_status: str
    old_implementation: str
    new_implementation: str

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RMD_CHANGE_FIELDS}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RmdChange:
        """A stored change; ValueError when it is not one."""
        try:
            return cls(float(d["time"]), *(str(d[name]) for name in RMD_CHANGE_FIELDS[1:]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a stored RMD change: {exc}") from None


RMD_CHANGE_FIELDS = ("time", "snapshot", "previous", "rmd", "frn", "change", "old_status", "new_status",
                     "old_implementation", "new_implementation")


@dataclass(slots=True)
class ImportReport:
    """What an import did; printed by the CLI, never silently dropped."""

    dataset: str
    rows: int = 0
    imported: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)   # (line, why)
    duplicates: int = 0
    removed: int = 0                       # filings newly `removed` (gone from the export, or on the removed list)
    added: int = 0                         # filings listed now and not listed in the previous snapshot
    changed: int = 0                       # listed in both, implementation changed
    removed_ids: list[str] = field(default_factory=list)   # RMD numbers newly removed
    by_implementation: dict[str, int] = field(default_factory=dict)
    snapshot: str | None = None
    warnings: list[str] = field(default_factory=list)
    changes: list[RmdChange] = field(default_factory=list)   # since the previous snapshot (none on a first import)


@dataclass(frozen=True, slots=True)
class OcnMapping:
    spc: str
    rmd: str | None
    frn: str | None


@dataclass(frozen=True, slots=True)
class ListEntry:
    kind: str        # LIST_KINDS
    list_name: str   # allow | block
    value: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """A Commission-notice block rule: every condition given must match (AND)."""

    ref: str
    caller: str | None = None
    caller_prefix: str | None = None
    callee: str | None = None
    callee_prefix: str | None = None
    trunk: str | None = None
    frn: str | None = None
    spc: str | None = None
    start: float | None = None     # epoch seconds, inclusive
    end: float | None = None       # epoch seconds, exclusive

    def has_condition(self) -> bool:
        return any((self.caller, self.caller_prefix, self.callee, self.callee_prefix, self.trunk,
                    self.frn, self.spc))


@dataclass(slots=True)
class StoreCounters:
    """What a store counts, cumulative, whatever the backend (exported as sipguard_store_requests)."""

    lookups: int = 0
    errors: int = 0           # lookups that failed (answered degraded)
    timeouts: int = 0         # lookups past store_timeout (answered degraded)
    degraded: int = 0         # lookups answered in the failure mode
    reconnects: int = 0
    rmd_remembered: int = 0   # degraded answers that used a remembered RMD answer
    passport_replays: int = 0  # lookups whose PASSporT the seen-set had from another call (replay.py)


def lookup_now_of(store: object) -> Callable[[LookupKeys, float], Lookups] | None:
    """The store's synchronous ``lookup_now`` when it answers without waiting (``lookup_inline``,
    the memory store) and its ``lookup`` is its own: a ``lookup`` replaced on the instance (tests
    do, to stand for a store that is down) is what gets asked then, through the coroutine."""
    if not getattr(store, "lookup_inline", False) or "lookup" in getattr(store, "__dict__", ()):
        return None
    now: Callable[[LookupKeys, float], Lookups] | None = getattr(store, "lookup_now", None)
    return now


class Store(Protocol):
    healthy: bool
    counters: StoreCounters
    limits: tuple[LimitSpec, ...]    # the ``limits:`` in force; SIGHUP replaces it

    async def start(self) -> None: ...
    async def lookup(self, keys: LookupKeys, now: float) -> Lookups: ...
    async def aclose(self) -> None: ...
    async def import_rmd(self, records: Sequence[RmdRecord], snapshot: str,
                         removed: Sequence[RmdRecord] = ()) -> ImportReport: ...
    async def map_ocn(self, rows: Sequence[OcnMapping]) -> int: ...
    async def import_dno(self, entries: Sequence[str]) -> int: ...   # NANP digits: 10, 7, 6 or 3 long
    async def in_force(self, dataset: str) -> int: ...   # rmd: listed filings, dno: entries (import guard)
    async def list_add(self, kind: str, list_name: str, value: str, note: str | None) -> None: ...
    async def list_remove(self, kind: str, value: str) -> bool: ...
    async def list_show(self, kind: str | None = None) -> list[ListEntry]: ...
    async def list_replace(self, entries: Sequence[ListEntry]) -> int: ...
    async def notice_add(self, notice: Notice) -> None: ...
    async def notice_remove(self, ref: str) -> bool: ...
    async def notice_list(self) -> list[Notice]: ...
    async def rmd_show(self, ident: str) -> dict[str, str] | None: ...
    def set_detectors(self, detectors: Detectors) -> None: ...   # SIGHUP: new analytics.campaign
    # threat lists (sipguard/threats.py): the index in force, read on every call without I/O
    threats: ThreatIndex
    async def threats_import(self, entries: Sequence[ThreatEntry], source: str) -> int: ...
    async def rmd_changes(self, since: float | None = None, limit: int = 1000) -> list[RmdChange]: ...
    async def get_cert(self, url: str) -> tuple[bytes, float] | None: ...
    async def put_cert(self, url: str, pem: bytes, expires_at: float) -> None: ...


def check_list_args(kind: str, list_name: str | None = None) -> None:
    """User input from the CLI / admin API: a SipguardError naming what is allowed."""
    if kind not in LIST_KINDS:
        raise SipguardError(f"unknown list kind {kind!r}; expected one of: {', '.join(LIST_KINDS)}")
    if list_name is not None and list_name not in LIST_NAMES:
        raise SipguardError(f"unknown list {list_name!r}; expected allow or block")


__all__ = ["DEGRADED", "ImportReport", "LIMIT_FIELDS", "LIST_KINDS",
           "LimitSpec", "ListEntry", "LookupKeys", "Lookups", "Notice", "OcnMapping", "RmdChange", "RmdRecord",
           "Store", "StoreCounters", "parse_limits", "parse_rate"]
