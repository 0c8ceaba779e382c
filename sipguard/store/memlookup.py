"""The memory store's lookup (``MemoryStore.lookup_now``), compiled with the hot path
(sipguard/native.py): ``store/memory.py`` is not compiled, as tests replace its methods on an
instance, so the per-call work lives here and reads the store's tables. Same steps, same
answer as a network store's one round trip (store/base.py ``Lookups``)."""

from __future__ import annotations

from typing import Any

from sipguard.store.base import LookupKeys, Lookups
from sipguard.store.keys import digits, frn10, nanp10, split_record
from sipguard.store.limits import applicable


def memory_lookup(store: Any, keys: LookupKeys, now: float) -> Lookups:
    """``store``: a MemoryStore (typed Any here: memory.py imports this module)."""
    store.counters.lookups += 1
    caller = digits(keys.caller) or ""
    trunk_frn = frn10(keys.trunk_frn) or ""
    spc = keys.spc.upper() if keys.spc else None
    trunk = rmd_find(store, (keys.trunk_rmd or "").strip().upper(), trunk_frn)
    signer_rmd = signer_frn = None
    if spc:
        signer_rmd = "absent"
        mapped = store._ocn.get(spc)
        if mapped is not None:
            signer_frn = mapped[1] or None
            rec = rmd_find(store, mapped[0], mapped[1])
            if rec is not None:
                signer_rmd = rec[0]
                signer_frn = signer_frn or rec[3] or None
    dno = False
    if store._dno:  # (empty tables cost nothing below: most installs have no DNO, lists, notices)
        n10 = nanp10(keys.caller)
        dno = n10 is not None and (
            n10 in store._dno or n10[:7] in store._dno or n10[:6] in store._dno or n10[:3] in store._dno)
    listed, entry = list_match(store._lists, caller, keys.trunk, spc)
    notice = store._notice(caller, digits(keys.callee) or "", keys.trunk or "", trunk_frn,
                          spc or "", now) if store._notices else None
    limited = tuple(store.limits[i].name for i, value, interval, burst in applicable(store.limits, keys)
                    if store._gcra.hit(f"{store.limits[i].name}:{value}", interval, burst, now)
                    ) if store.limits else ()
    fanout = burst = None
    campaign = store._campaign
    if campaign is not None:
        fanout = campaign.fanout(caller or None, digits(keys.callee), now)
        burst = campaign.burst(caller or None, now)
    replayed = False
    if keys.passport and store._seen.check(keys.passport, keys.passport_call, keys.passport_ttl, now):
        replayed = True
        store.counters.passport_replays += 1
    # positional, in field order: trunk_rmd, trunk_implementation, signer_rmd, signer_frn,
    # caller_dno, list, list_entry, limited, notice, degraded, rmd_snapshot, campaign_fanout,
    # campaign_burst, passport_replayed
    return Lookups(trunk[0] if trunk else "absent", (trunk[1] or None) if trunk else None,
                   signer_rmd, signer_frn, dno, listed, entry, limited, notice, False, store._snapshot,
                   fanout, burst, replayed)


def rmd_find(store: Any, rmd: str, frn: str) -> tuple[str, str, str, str] | None:
    value: str | None = (store._ids.get(rmd) if rmd else None) or (store._frns.get(frn) if frn else None)
    if not value:
        return None
    records: dict[str, tuple[str, str, str, str]] = store._records
    record = records.get(value)
    if record is None:
        if len(records) >= 65536:
            records.clear()  # bounded; most calls come from a few trunks and signers
        record = records[value] = split_record(value)
    return record


def list_match(lists: dict[str, tuple[str, str | None]], caller: str, trunk: str | None,
               spc: str | None) -> tuple[str | None, str | None]:
    if not lists:
        return None, None
    fields = []
    if caller:
        fields.append("number:" + caller)
        fields.extend("prefix:" + caller[:n] for n in range(len(caller) - 1, 0, -1))
    if trunk:
        fields.append("trunk:" + trunk)
    if spc:
        fields.append("spc:" + spc)
    allow = None
    for field in fields:
        hit = lists.get(field)
        if hit is None:
            continue
        if hit[0] == "block":
            return "block", field
        allow = allow or field
    return ("allow", allow) if allow else (None, None)
