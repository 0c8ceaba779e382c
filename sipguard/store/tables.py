"""Pure builders shared by both backends: RMD snapshot tables, list and notice values.

Both stores turn the same records into the same tables here, so the memory store and the
Redis store cannot drift apart on what ``listed``/``removed`` means or how values normalise.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from sipguard.errors import SipguardError
from sipguard.store.base import ImportReport, ListEntry, Notice, RmdChange, RmdRecord, check_list_args
from sipguard.store.keys import digits, frn10, record_value, split_record


def listed_filings(ids: Mapping[str, str], frns: Mapping[str, str]) -> int:
    """Filings ``listed`` in a snapshot's tables: one per filing, however many keys point at it
    (an RMD number and each FRN share the filing's value)."""
    return len({v for table in (ids, frns) for v in table.values() if v.startswith("listed|")})


def build_rmd(records: Sequence[RmdRecord], removed: Sequence[RmdRecord],
              previous_ids: Mapping[str, str], previous_frns: Mapping[str, str],
              snapshot: str, previous_snapshot: str = "",
              now: float | None = None) -> tuple[dict[str, str], dict[str, str], ImportReport]:
    """New (by RMD number, by FRN) tables from an export, the removed list and the old snapshot.

    Filings absent from the new export stay known as ``removed`` (the FCC drops removed
    filings from the listing); the separately published removed list always wins.
    ``report.changes`` lists every filing (by RMD number) whose status or implementation
    differs from the previous snapshot, stamped ``now``; none on a first import.
    """
    report = ImportReport("rmd", rows=len(records), snapshot=snapshot)
    ids: dict[str, str] = {}
    frns: dict[str, str] = {}
    for rec in records:
        frn = rec.frns[0] if rec.frns else None
        value = record_value("listed", rec.implementation, rec.rmd, frn)
        if rec.rmd:
            ids[rec.rmd] = value
        for f in rec.frns:
            frns.setdefault(f, value)
        report.imported += 1
        report.by_implementation[rec.implementation] = report.by_implementation.get(rec.implementation, 0) + 1
    for table, previous in ((ids, previous_ids), (frns, previous_frns)):
        for key, old in previous.items():
            if key not in table:
                _, impl, rmd, frn = split_record(old)
                table[key] = record_value("removed", impl, rmd, frn)
    for rec in removed:
        known = (ids.get(rec.rmd) if rec.rmd else None) or next((frns[f] for f in rec.frns if f in frns), None)
        if known is not None:
            # the whole filing goes: every key (RMD number, each FRN) that points at it
            _, impl, rmd, first = split_record(known)
            value = record_value("removed", impl, rmd, first)
            for table in (ids, frns):
                for key in [k for k, v in table.items() if v == known]:
                    table[key] = value
        else:
            first = rec.frns[0] if rec.frns else ""
            value = record_value("removed", rec.implementation, rec.rmd, first)
        if rec.rmd:
            ids[rec.rmd] = value
        for f in rec.frns:
            frns[f] = value
    _diff(ids, previous_ids, report, previous_snapshot, time.time() if now is None else now)
    return ids, frns, report


def _diff(ids: Mapping[str, str], previous: Mapping[str, str], report: ImportReport, previous_snapshot: str,
          now: float) -> None:
    """Filings added, newly removed and with a changed implementation since the last snapshot."""
    keep = bool(previous)            # a first import changes nothing: every filing is new to us
    for key, value in ids.items():
        status, impl, _, frn = split_record(value)
        old = previous.get(key)
        old_status, old_impl = split_record(old)[:2] if old else ("absent", "")
        change = None
        if status == "removed" and old_status != "removed":
            report.removed += 1
            report.removed_ids.append(key)
            change = "removed"
        elif status == "listed" and old_status != "listed":
            report.added += 1
            change = "relisted" if old_status == "removed" else "added"
        elif status == "listed" and impl != old_impl:
            report.changed += 1
            change = "implementation"
        if change is not None and keep:
            report.changes.append(RmdChange(now, report.snapshot or "", previous_snapshot, key, frn, change,
                                            old_status, status, old_impl, impl))


def normalise_list_value(kind: str, value: str) -> str:
    check_list_args(kind)
    value = value.strip()
    if kind in ("number", "prefix"):
        only = digits("".join(ch for ch in value if ch.isdigit() or ch == "+"))
        if not only or not only.isdigit():
            raise SipguardError(f"{kind} {value!r}: expected digits (E.164, e.g. +12025550123)")
        return only
    if kind == "spc":
        return value.upper()
    if not value:
        raise SipguardError("trunk: empty value")
    return value


def list_field(entry: ListEntry) -> str:
    return f"{entry.kind}:{entry.value}"


def list_value(entry: ListEntry) -> str:
    return f"{entry.list_name}\t{entry.note or ''}"


def parse_list_field(field: str, value: str) -> ListEntry:
    kind, _, what = field.partition(":")
    name, _, note = value.partition("\t")
    return ListEntry(kind, name, what, note or None)


NOTICE_TIME_MAX = 4102444800.0    # 2100-01-01T00:00:00Z: start and end are epoch seconds up to it


def normalise_notice(notice: Notice) -> Notice:
    for name, when in (("start", notice.start), ("end", notice.end)):
        # NaN compares false with every time (a NaN end never ends) and is not JSON, which the
        # Redis lookup script decodes for every call; refuse it, the infinities and far dates
        if when is not None and not (math.isfinite(when) and 0 <= when <= NOTICE_TIME_MAX):
            raise SipguardError(f"notice {notice.ref}: {name} {when!r} is not a time from 1970 to 2100 "
                                "(epoch seconds or ISO 8601)")
    if not notice.ref.strip():
        raise SipguardError("a notice needs a reference (--ref)")
    if not notice.has_condition():
        raise SipguardError(f"notice {notice.ref}: give at least one of caller, caller prefix, callee, "
                            "callee prefix, trunk, FRN or SPC (a notice that matches every call is refused)")
    if notice.start is not None and notice.end is not None and notice.end <= notice.start:
        raise SipguardError(f"notice {notice.ref}: end must be after start")

    def num(v: str | None) -> str | None:
        return normalise_list_value("number", v) if v else None

    frn = notice.frn
    if frn is not None:
        frn = frn10(frn)
        if frn is None:
            raise SipguardError(f"notice {notice.ref}: FRN {notice.frn!r} is not up to 10 digits")
    return Notice(notice.ref.strip(), num(notice.caller), num(notice.caller_prefix), num(notice.callee),
                  num(notice.callee_prefix), notice.trunk, frn,
                  notice.spc.upper() if notice.spc else None, notice.start, notice.end)


def notice_json(notice: Notice) -> str:
    return json.dumps({k: v for k, v in asdict(notice).items() if v is not None}, sort_keys=True)


def notice_from_json(text: str) -> Notice:
    data = json.loads(text)
    return Notice(**data)


def notice_matches(n: Notice, caller: str, callee: str, trunk: str, frn: str, spc: str, now: float) -> bool:
    """Same test as lookup.lua: every condition given must hold ('' stands for unknown)."""
    return not (
        (n.caller is not None and n.caller != caller)
        or (n.caller_prefix is not None and not caller.startswith(n.caller_prefix))
        or (n.callee is not None and n.callee != callee)
        or (n.callee_prefix is not None and not callee.startswith(n.callee_prefix))
        or (n.trunk is not None and n.trunk != trunk)
        or (n.frn is not None and n.frn != frn)
        or (n.spc is not None and n.spc != spc)
        or (n.start is not None and now < n.start)
        or (n.end is not None and now >= n.end))


def changes_since(changes: Sequence[RmdChange], since: float | None, limit: int) -> list[RmdChange]:
    """The oldest ``limit`` changes made after ``since`` (all when None), oldest first."""
    out = [c for c in changes if since is None or c.time > since]
    return out[:limit]


def upstream_changes(changes: Sequence[RmdChange], upstreams: Sequence[tuple[str, str | None, str | None]]
                     ) -> list[tuple[str, RmdChange]]:
    """(trunk id, change) for each change of a configured upstream's filing, matched by RMD
    number or FRN (``upstreams``: (trunk id, RMD number, FRN) as the config gives them)."""
    by_rmd: dict[str, list[str]] = {}
    by_frn: dict[str, list[str]] = {}
    for trunk, rmd, frn in upstreams:
        if rmd:
            by_rmd.setdefault(rmd.strip().upper(), []).append(trunk)
        f = frn10(frn)
        if f:
            by_frn.setdefault(f, []).append(trunk)
    out: list[tuple[str, RmdChange]] = []
    for c in changes:
        trunks = by_rmd.get(c.rmd) or by_frn.get(c.frn) or []
        out.extend((trunk, c) for trunk in trunks)
    return out
