"""Named bad actors: the FCC's C-CIST designations and the operator's own threat list.

The FCC Enforcement Bureau names "Consumer Communications Information Services Threats"
(C-CIST, first DA-24-388, 2024-05-13: "Royal Tiger") in public notices, for providers to use
in know-your-customer and know-your-upstream checks. It publishes no machine-readable list:
the notice names companies and individuals (legal names, aliases, countries, sometimes FRNs).
The operator transcribes each designation into a file of this module's format, and keeps
its own list (threat intelligence, traceback outcomes, industry sharing) in the same format:

CSV, long form (one identifier per row)::

    kind,value,ref,note
    name,Royal Tiger Communications LLC,DA-24-388,C-CIST designee
    frn,0034567890,DA-24-388,
    ip,203.0.113.0/24,ITG-2025-1041,media and signalling seen in traceback
    spc,938K,,cert used for A-signed robocalls

CSV, wide form (one entity per row; every non-empty identifier cell is an entry)::

    name,frn,ip,spc,ref,note
    Royal Tiger Communications LLC,0034567890,,,DA-24-388,

JSON: a list of ``{"kind", "value", "ref", "note"}`` objects (or ``{"entries": [...]}``).

Kinds and how they match (``ThreatIndex``):

* ``frn``: an FCC Registration Number, 10 digits (leading zeros restored); matches the trunk's
  ``provider.frn`` and the signer's FRN (from the OCN map / RMD);
* ``name``: a business name, compared case-folded with punctuation and the corporate suffixes
  of ``_SUFFIXES`` removed (``Royal Tiger, L.L.C.`` = ``ROYAL TIGER LLC`` = ``royal tiger``);
  matches the trunk's ``provider.name``;
* ``ip``: an address or CIDR network; matches a trunk any of whose configured ``sources``
  overlaps it (a trunk at 203.0.113.7/32 matches 203.0.113.0/24 and the reverse);
* ``spc``: a Service Provider Code (OCN), 4 letters/digits; matches the signer's SPC (from
  the certificate that verified).

The facts ``trunk.threat`` / ``signer.threat`` are the source of the entry that matched
(``c-cist`` wins over ``operator``), null when none. Each source is imported on its own
(``sipguard threats import FILE --source c-cist|operator``) and replaces only that source's
entries; a file with more than 10 % invalid rows is refused (the list in force stays), as
``rmd import`` does.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipguard.errors import ConfigError
from sipguard.store.base import ImportReport
from sipguard.store.keys import frn10

if TYPE_CHECKING:
    from sipguard.config import Trunk

THREAT_SOURCES = ("c-cist", "operator")    # priority order: the FCC's designation first
THREAT_KINDS = ("frn", "name", "ip", "spc")
MAX_THREATS = 200_000                      # entries per source (a threat list, not a DNO list)
MAX_FIELD = 300                            # characters in a value, ref or note
_SPC = re.compile(r"^[0-9A-Z]{4}$")
_NON_ALNUM = re.compile(r"[\W_]+")          # letters of any script and digits stay
_SUFFIXES = frozenset(("llc", "inc", "incorporated", "ltd", "limited", "corp", "corporation", "co",
                       "company", "plc", "gmbh", "sa", "srl", "bv", "pvt", "pte", "lp", "llp", "the"))
_WIDE = ("frn", "name", "ip", "spc")
_ALIASES = {"business_name": "name", "business name": "name", "legal_name": "name", "ocn": "spc",
            "cidr": "ip", "address": "ip", "reference": "ref", "notice": "ref", "comment": "note"}


@dataclass(frozen=True, slots=True)
class ThreatEntry:
    kind: str        # THREAT_KINDS
    value: str       # normalised (normalise())
    source: str      # THREAT_SOURCES
    ref: str = ""    # the designation or case it comes from (e.g. DA-24-388)
    note: str = ""
    line: int = 0    # where it was in its file (0: unknown)


def normalise_name(text: str) -> str:
    """A business name as compared: case-folded words of letters and digits, without
    corporate suffixes and dots inside abbreviations (``L.L.C.``)."""
    words = _NON_ALNUM.split(text.casefold().replace(".", ""))
    return " ".join(w for w in words if w and w not in _SUFFIXES)


def normalise(kind: str, value: str) -> str | None:
    """The stored form of one identifier; None when it is not one of its kind."""
    value = value.strip()
    if not value or len(value) > MAX_FIELD:
        return None
    if kind == "frn":
        return frn10(value)
    if kind == "name":
        return normalise_name(value) or None
    if kind == "spc":
        spc = value.upper()
        return spc if _SPC.match(spc) else None
    if kind == "ip":
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            return None
    return None


def parse_threats(text: str, path: str, source: str) -> tuple[list[ThreatEntry], ImportReport]:
    """A threat file (module docstring) -> its entries, and a report of the rows skipped."""
    if source not in THREAT_SOURCES:
        raise ConfigError(f"unknown threat source {source!r}; expected one of: {', '.join(THREAT_SOURCES)}", path)
    report = ImportReport(f"threats:{source}")
    rows = _json_rows(text, path) if text.lstrip()[:1] in ("[", "{") else _csv_rows(text, path)
    out: dict[tuple[str, str], ThreatEntry] = {}
    dups = 0
    for line, cells in rows:
        report.rows += 1
        ref, note = cells.get("ref", "")[:MAX_FIELD], cells.get("note", "")[:MAX_FIELD]
        if "kind" in cells:
            pairs = [(cells["kind"].strip().lower(), cells.get("value", ""))]
        else:
            pairs = [(k, cells[k]) for k in _WIDE if cells.get(k, "").strip()]
        if not pairs:
            _skip(report, line, "no identifier (frn, name, ip or spc)")
            continue
        entries, why = [], None
        for kind, raw in pairs:
            value = normalise(kind, raw) if kind in THREAT_KINDS else None
            if kind not in THREAT_KINDS:
                why = f"kind {kind[:40]!r} is not one of: {', '.join(THREAT_KINDS)}"
            elif value is None:
                why = f"{kind} {raw.strip()[:60]!r} is not a valid {kind}"
            if why is not None:
                break
            entries.append(ThreatEntry(kind, value or "", source, ref.strip(), note.strip(), line))
        if why is not None:
            _skip(report, line, why)
            continue
        report.imported += 1
        for entry in entries:
            dups += (entry.kind, entry.value) in out
            out[(entry.kind, entry.value)] = entry
    if dups:
        report.warnings.append(f"{dups} identifier(s) named more than once: the last row naming each is kept")
    if len(out) > MAX_THREATS:
        raise ConfigError(f"{len(out)} entries: more than {MAX_THREATS} in one threat list", path)
    return list(out.values()), report


def _skip(report: ImportReport, line: int, why: str) -> None:
    if len(report.skipped) < 200:
        report.skipped.append((line, why))


def _csv_rows(text: str, path: str) -> list[tuple[int, dict[str, str]]]:
    from sipguard.store.datasets import _rows

    header, rows = _rows(text, path)
    names = [_ALIASES.get(h, h) for h in header]
    if "kind" in names:
        if "value" not in names:
            raise ConfigError("a threat CSV with a `kind` column needs a `value` column", path, 1)
    elif not any(n in names for n in _WIDE):
        raise ConfigError("not a threat list: the header needs `kind,value` or one of the columns "
                          "frn, name, ip, spc", path, 1)
    out = []
    for line, row in rows:
        out.append((line, {names[i]: row[i] for i in range(min(len(names), len(row)))}))
    return out


def _json_rows(text: str, path: str) -> list[tuple[int, dict[str, str]]]:
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"not JSON: {str(exc)[:200]}", path) from None
    if isinstance(data, dict):
        data = data.get("entries")
    if not isinstance(data, list):
        raise ConfigError("a JSON threat list is a list of {kind, value, ref, note} objects "
                          "(or {\"entries\": [...]})", path)
    out = []
    for index, item in enumerate(data, 1):
        cells = {str(k): v for k, v in item.items() if isinstance(v, str)} if isinstance(item, dict) else {}
        out.append((index, cells))
    return out


class ThreatIndex:
    """The entries in force, indexed for the per-call checks (dict look-ups; trunks cached)."""

    __slots__ = ("entries", "_by", "_nets", "_trunks")

    def __init__(self, entries: Iterable[ThreatEntry] = ()) -> None:
        self.entries = tuple(sorted(entries, key=lambda e: THREAT_SOURCES.index(e.source)))
        self._by: dict[tuple[str, str], ThreatEntry] = {}
        self._nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ThreatEntry]] = []
        for entry in self.entries:          # c-cist first: it keeps a value both lists name
            if entry.kind == "ip":
                self._nets.append((ipaddress.ip_network(entry.value), entry))
            else:
                self._by.setdefault((entry.kind, entry.value), entry)
        self._trunks: dict[str, tuple[Trunk, ThreatEntry | None]] = {}   # id -> (the trunk, answer)

    def __len__(self) -> int:
        return len(self.entries)

    def of_source(self, source: str) -> list[ThreatEntry]:
        return [e for e in self.entries if e.source == source]

    def replaced(self, source: str, entries: Sequence[ThreatEntry]) -> ThreatIndex:
        """A new index with ``source``'s entries replaced by ``entries``."""
        return ThreatIndex([e for e in self.entries if e.source != source] + list(entries))

    def trunk(self, trunk: Trunk | None) -> ThreatEntry | None:
        """The entry naming this trunk's provider (FRN, name) or overlapping its sources."""
        if trunk is None or not self.entries:
            return None
        cached = self._trunks.get(trunk.id)
        if cached is not None and cached[0] is trunk:     # the same config's trunk: no re-hash of it
            return cached[1]
        found = self._match_trunk(trunk)
        if len(self._trunks) >= 10_000:
            self._trunks.clear()
        self._trunks[trunk.id] = (trunk, found)
        return found

    def _match_trunk(self, trunk: Trunk) -> ThreatEntry | None:
        hits = []
        frn = frn10(trunk.provider.frn)
        if frn and ("frn", frn) in self._by:
            hits.append(self._by[("frn", frn)])
        name = normalise_name(trunk.provider.name) if trunk.provider.name else ""
        if name and ("name", name) in self._by:
            hits.append(self._by[("name", name)])
        for net, entry in self._nets:
            if any(net.version == src.version and net.overlaps(src) for src in trunk.sources):
                hits.append(entry)
                break
        return min(hits, key=lambda e: THREAT_SOURCES.index(e.source)) if hits else None

    def signer(self, spc: str | None, frn: str | None) -> ThreatEntry | None:
        """The entry naming the signer by SPC or by its FRN (OCN map / RMD)."""
        if not self._by:
            return None
        hits = []
        if spc:
            hit = self._by.get(("spc", spc.upper()))
            if hit is not None:
                hits.append(hit)
        if frn:
            hit = self._by.get(("frn", frn10(frn) or ""))
            if hit is not None:
                hits.append(hit)
        return min(hits, key=lambda e: THREAT_SOURCES.index(e.source)) if hits else None


NO_THREATS = ThreatIndex()


def entries_to_json(entries: Sequence[ThreatEntry]) -> str:
    return json.dumps([[e.kind, e.value, e.ref, e.note, e.line] for e in entries], separators=(",", ":"))


def entries_from_json(text: str, source: str) -> list[ThreatEntry]:
    """What ``entries_to_json`` wrote (the Redis store's copy); unreadable items are dropped."""
    out = []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    for item in data if isinstance(data, list) else []:
        if (isinstance(item, list) and len(item) == 5 and item[0] in THREAT_KINDS
                and all(isinstance(v, str) for v in item[:4]) and isinstance(item[4], int)):
            value = normalise(item[0], item[1])
            if value is not None:
                out.append(ThreatEntry(item[0], value, source, item[2], item[3], item[4]))
    return out[:MAX_THREATS]
