"""The embedded store: the same behaviour as the Redis store, in this process's memory.

Default when no Redis is configured (``store: memory``): single box installs, ``make demo``,
replay and tests. Datasets come from files named in the config (datasets.load_datasets),
rate limits use the GCRA of limits.py with the call's ``now`` (so replay is deterministic).
Nothing here awaits I/O; the methods are async only to share the ``Store`` protocol.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from sipguard.detectors import NO_DETECTORS, CampaignWindows, Detectors
from sipguard.store.base import (
    MAX_RMD_CHANGES,
    ImportReport,
    LimitSpec,
    ListEntry,
    LookupKeys,
    Lookups,
    Notice,
    OcnMapping,
    RmdChange,
    RmdRecord,
    StoreCounters,
    check_list_args,
)
from sipguard.store.keys import frn10, split_record
from sipguard.store.limits import Gcra
from sipguard.store.memlookup import memory_lookup
from sipguard.store.replay import SeenSet
from sipguard.store.tables import (
    build_rmd,
    changes_since,
    listed_filings,
    normalise_list_value,
    normalise_notice,
    notice_matches,
)
from sipguard.threats import NO_THREATS, ThreatEntry


class MemoryStore:
    healthy: bool
    # lookups answer from memory without waiting: a decision may run outside a task (no
    # asyncio.timeout in it), so the proxy runs it at once (Pipeline.decides_inline)
    lookup_inline = True

    def __init__(self, limits: Sequence[LimitSpec] = (), detectors: Detectors = NO_DETECTORS) -> None:
        self.limits = tuple(limits)
        self.set_detectors(detectors)
        self.threats = NO_THREATS
        self.healthy = True
        self._ids: dict[str, str] = {}
        self._frns: dict[str, str] = {}
        self._snapshot: str | None = None
        self._records: dict[str, tuple[str, str, str, str]] = {}   # stored value -> its fields
        self._dno: frozenset[str] = frozenset()
        self._ocn: dict[str, tuple[str, str]] = {}
        self._lists: dict[str, tuple[str, str | None]] = {}   # "kind:value" -> (allow|block, note)
        self._notices: dict[str, Notice] = {}
        self._certs: dict[str, tuple[bytes, float]] = {}
        self._gcra = Gcra()
        self._seen = SeenSet()
        self.counters = StoreCounters()     # lookups and replays only: memory does not fail
        self._changes: deque[RmdChange] = deque(maxlen=MAX_RMD_CHANGES)   # RMD watch, oldest first

    def set_detectors(self, detectors: Detectors) -> None:
        """New campaign detectors: their windows start empty (counts under old thresholds
        would not mean the same)."""
        self.detectors = detectors
        self._campaign = CampaignWindows(detectors) if detectors.active else None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    # -- the hot path ------------------------------------------------------------------------
    async def lookup(self, keys: LookupKeys, now: float) -> Lookups:
        return self.lookup_now(keys, now)

    def lookup_now(self, keys: LookupKeys, now: float) -> Lookups:
        """``lookup`` without a coroutine: what the pipeline asks when nothing else waits
        (``store.base.lookup_now_of``). The work is in ``store/memlookup.py``, compiled: this
        module is not (tests replace its methods on an instance)."""
        return memory_lookup(self, keys, now)

    def _notice(self, caller: str, callee: str, trunk: str, frn: str, spc: str, now: float) -> str | None:
        for ref in sorted(self._notices):
            if notice_matches(self._notices[ref], caller, callee, trunk, frn, spc, now):
                return ref
        return None

    # -- datasets --------------------------------------------------------------------------
    async def import_rmd(self, records: Sequence[RmdRecord], snapshot: str,
                         removed: Sequence[RmdRecord] = ()) -> ImportReport:
        ids, frns, report = build_rmd(records, removed, self._ids, self._frns, snapshot, self._snapshot or "")
        # one assignment each: a lookup sees the old tables or the new ones, never a mix
        self._ids, self._frns, self._snapshot = ids, frns, snapshot
        self._changes.extend(report.changes)
        return report

    async def rmd_changes(self, since: float | None = None, limit: int = 1000) -> list[RmdChange]:
        return changes_since(self._changes, since, limit)

    async def rmd_show(self, ident: str) -> dict[str, str] | None:
        value = self._ids.get(ident.strip().upper()) or self._frns.get(frn10(ident) or "")
        if value is None:
            return None
        status, impl, rmd, frn = split_record(value)
        return {"status": status, "implementation": impl, "rmd": rmd, "frn": frn,
                "snapshot": self._snapshot or ""}

    async def map_ocn(self, rows: Sequence[OcnMapping]) -> int:
        self._ocn = {r.spc.upper(): (r.rmd or "", frn10(r.frn) or "") for r in rows}
        return len(self._ocn)

    async def import_dno(self, entries: Sequence[str]) -> int:
        self._dno = frozenset(entries)
        return len(self._dno)

    async def in_force(self, dataset: str) -> int:
        if dataset == "rmd":
            return listed_filings(self._ids, self._frns)
        return len(self._dno) if dataset == "dno" else 0

    async def threats_import(self, entries: Sequence[ThreatEntry], source: str) -> int:
        self.threats = self.threats.replaced(source, entries)   # one assignment: old or new
        return len(entries)

    # -- lists and notices -------------------------------------------------------------------
    async def list_add(self, kind: str, list_name: str, value: str, note: str | None = None) -> None:
        check_list_args(kind, list_name)
        self._lists[f"{kind}:{normalise_list_value(kind, value)}"] = (list_name, note)

    async def list_remove(self, kind: str, value: str) -> bool:
        return self._lists.pop(f"{kind}:{normalise_list_value(kind, value)}", None) is not None

    async def list_show(self, kind: str | None = None) -> list[ListEntry]:
        out = []
        for field, (name, note) in sorted(self._lists.items()):
            k, _, v = field.partition(":")
            if kind is None or k == kind:
                out.append(ListEntry(k, name, v, note))
        return out

    async def list_replace(self, entries: Sequence[ListEntry]) -> int:
        new = {f"{e.kind}:{normalise_list_value(e.kind, e.value)}": (e.list_name, e.note) for e in entries}
        self._lists = new
        return len(new)

    async def notice_add(self, notice: Notice) -> None:
        n = normalise_notice(notice)
        self._notices[n.ref] = n

    async def notice_remove(self, ref: str) -> bool:
        return self._notices.pop(ref, None) is not None

    async def notice_list(self) -> list[Notice]:
        return [self._notices[r] for r in sorted(self._notices)]

    # -- shared x5u cache ------------------------------------------------------------------
    async def get_cert(self, url: str) -> tuple[bytes, float] | None:
        hit = self._certs.get(url)
        # the wall clock, not a Clock: expiry here is a cache bound, like Redis's own PXAT
        if hit is None or hit[1] <= time.time():
            return None
        return hit

    async def put_cert(self, url: str, pem: bytes, expires_at: float) -> None:
        if len(self._certs) > 10_000:
            self._certs.clear()
        self._certs[url] = (pem, expires_at)
