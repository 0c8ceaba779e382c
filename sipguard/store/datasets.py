"""Dataset files -> store values: the FCC RMD export, removed lists, OCN map, DNO, lists.

Parsing is pure (text in, records and an ``ImportReport`` out) and tolerant of what real
exports contain: a UTF-8 BOM, a leading ``'`` on values, ``None``/``N/A``, mojibake
(UTF-8 read as Latin-1), several FRNs in one field, duplicate rows, quoted fields that span
lines, reordered or extra columns. Bad rows are skipped and reported with their line number;
a file that cannot be an RMD export at all (no ``number`` and no ``frn`` column) raises
``ConfigError`` so the snapshot in force stays.

``load_datasets(store, cfg)`` loads the files named in the config's ``datasets:`` section
(rmd, rmd_removed, dno, ocn_map, lists, and the threat lists c_cist and threats: threats.py); ``DatasetWatcher`` reloads them when they change.

A file that parses is still refused (``check_import``) when more than ``MAX_INVALID_SHARE``
of its rows are invalid, or when its valid entries fall more than ``MAX_DROP`` below what
is in force: a truncated download or a wrong file must not mark every real provider
REMOVED. ``sipguard rmd|dno import --force`` overrides; the serving process never does.
Files over ``MAX_DATASET_BYTES`` are not read.

Lists file format (one entry per line, ``#`` starts a comment)::

    block number +12025550123   robocaller reported 2025-06-01
    allow prefix +1800
    block trunk carrier-x
    block spc 938K
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sipguard.errors import ConfigError, SipguardError
from sipguard.store.base import (
    LIST_KINDS,
    ImportReport,
    ListEntry,
    OcnMapping,
    RmdRecord,
    Store,
)
from sipguard.store.keys import frn10
from sipguard.yamlconf import input_failure, read_bounded

if TYPE_CHECKING:
    from sipguard.threats import ThreatEntry

log = logging.getLogger("sipguard.store")
_T = TypeVar("_T")

DATASET_NAMES = ("rmd", "rmd_removed", "dno", "ocn_map", "lists", "c_cist", "threats")
THREAT_DATASETS = {"c_cist": "c-cist", "threats": "operator"}   # dataset name -> threat source
_ALIASES = {"frn_str": "frn", "rmd_number": "number", "rmd": "number", "rmd number": "number",
            "fcc registration number (frn)": "frn", "ocn": "spc", "tn": "number", "phone": "number"}
_EMPTY = {"", "none", "n/a", "na", "null", "-"}
_RMD_ID = re.compile(r"^RMD\d{7}$")
_SPC = re.compile(r"^[0-9A-Z]{4}$")
_FRN_SPLIT = re.compile(r"[;,\s/|]+")
_PUNCT = str.maketrans("", "", " -().\t")
# a bare 10/7/6/3-digit NANP entry, optionally +1 (or 1 before 10 digits): same result as dno_digits
_DNO_FAST = re.compile(r"\s*(?:\+1|1(?=\d{10}\s*$))?([2-9]\d{9}|[2-9]\d{6}|[2-9]\d{5}|[2-9]\d\d)\s*").fullmatch
MAX_REPORTED = 200     # skipped lines listed in a report; the count is always exact
MAX_DATASET_BYTES = 512 * 1024 * 1024   # the FCC export is tens of MB, a large DNO list a few hundred
MAX_INVALID_SHARE = 0.10                # of a file's rows ...
INVALID_TOLERATED = 5                   # ... beyond this many: a few bad rows are normal in a real export
MAX_DROP = 0.20                         # valid entries may fall this much against the data in force


def _clean(value: str | None) -> str:
    if not value:
        return ""
    value = value.strip()
    if value[:1] == "'":
        value = value.lstrip("'").strip()
    # only short values can be a placeholder: skip lower() for the rest (hot on 100k-row files)
    return "" if len(value) <= 4 and value.lower() in _EMPTY else value


def fix_mojibake(text: str) -> str:
    """'CafÃ© TelecomÂ®' -> 'Café Telecom®' when the text is UTF-8 decoded as Latin-1/cp1252."""
    if not any(marker in text for marker in ("Ã", "Â", "â€")):
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            return text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
    return text


def implementation(value: str) -> str:
    """The three FCC strings and the derived Yes/Partial/No -> complete|partial|none|unknown."""
    v = value.strip().lower()
    if v.startswith(("complete", "yes", "full")):
        return "complete"
    if v.startswith("partial"):
        return "partial"
    if v.startswith("no"):
        return "none"
    return "unknown"


def _yes(value: str) -> bool | None:
    v = value.strip().lower()
    return True if v in ("yes", "y", "true", "1") else False if v in ("no", "n", "false", "0") else None


def read_text(path: str, limit: int = MAX_DATASET_BYTES) -> str:
    data = read_bounded(path, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Windows exports: cp1252 maps nearly every byte; latin-1 maps all of them
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def _rows(text: str, path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (normalised names) and (start line, fields) of each record."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    line = 0
    try:
        for row in reader:
            start, line = line + 1, reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [_ALIASES.get(h.strip().strip("'\"").lower(), h.strip().strip("'\"").lower())
                          for h in row]
                continue
            rows.append((start, row))
    except csv.Error as exc:
        raise ConfigError(f"unreadable CSV near line {line}: {exc}", path, line) from None
    if header is None:
        raise ConfigError("empty file: expected a CSV header line", path, 1)
    return header, rows


def parse_rmd(text: str, path: str = "<rmd>", snapshot: str = "") -> tuple[list[RmdRecord], ImportReport]:
    header, rows = _rows(text, path)
    if "number" not in header and "frn" not in header:
        raise ConfigError("not an RMD export: no `number` (RMD number) and no `frn` column in the header; "
                          "the snapshot in force is kept", path, 1)
    report = ImportReport("rmd", snapshot=snapshot or None)
    records: list[RmdRecord] = []
    seen: set[tuple[str | None, str | None]] = set()
    col = {name: i for i, name in reversed(list(enumerate(header)))}
    # the columns we read, by position, looked up once (files have 20+ columns, 100k+ rows)
    wanted = tuple(col.get(name, -1) for name in _RMD_FIELDS)

    for line, row in rows:
        report.rows += 1
        width = len(row)
        rec = _rmd_record(line, [_clean(row[i]) if 0 <= i < width else "" for i in wanted], report)
        if rec is None:
            continue
        ident = (rec.rmd, rec.frns[0] if rec.frns else None)
        if ident in seen:
            report.duplicates += 1
            continue
        seen.add(ident)
        records.append(rec)
        report.by_implementation[rec.implementation] = report.by_implementation.get(rec.implementation, 0) + 1
    report.imported = len(records)
    return records, report


_RMD_FIELDS = ("number", "frn", "other_frns", "business_name", "implementation", "country",
               "foreign_voice_provider", "gateway_provider_choice", "last_updated")


def _rmd_record(line: int, values: list[str], report: ImportReport) -> RmdRecord | None:
    number, raw_frn, other_frns, name, impl, country, foreign, gateway, updated = values
    rmd = number.upper() or None
    frn = frn10(raw_frn)
    if rmd is not None and not _RMD_ID.match(rmd):
        _warn(report, f"line {line}: RMD number {rmd!r} is not of the form RMD + 7 digits")
    if raw_frn and frn is None:
        if rmd is None:
            _skip(report, line, f"FRN {raw_frn!r} is not a number of up to 10 digits and there is no RMD number")
            return None
        _warn(report, f"line {line}: FRN {raw_frn!r} ignored (not up to 10 digits)")
    if rmd is None and frn is None:
        _skip(report, line, "no RMD number and no FRN")
        return None
    frns = [frn] if frn else []
    if other_frns:
        for other in _FRN_SPLIT.split(other_frns):
            extra = frn10(other) if _clean(other) else None
            if extra and extra not in frns:
                frns.append(extra)
    return RmdRecord(
        rmd=rmd, frns=tuple(frns), business_name=fix_mojibake(name), implementation=implementation(impl),
        country=country, foreign=_yes(foreign), gateway=_yes(gateway), last_updated=updated, line=line)


def _warn(report: ImportReport, text: str) -> None:
    if len(report.warnings) < MAX_REPORTED:
        report.warnings.append(text)


def _skip(report: ImportReport, line: int, why: str) -> None:
    # the list is bounded (a broken 1M-line file must not flood the terminal); rows - imported
    # still counts every skipped line
    if len(report.skipped) < MAX_REPORTED:
        report.skipped.append((line, why))


def parse_removed(text: str, path: str = "<removed>") -> tuple[list[RmdRecord], ImportReport]:
    """A removed-providers list: an RMD-style CSV, or one RMD number / FRN per line."""
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    if "," in first:
        return parse_rmd(text, path)
    report = ImportReport("rmd_removed")
    out = []
    for line, raw in enumerate(text.splitlines(), 1):
        value = _clean(raw.split("#", 1)[0])
        if not value:
            continue
        report.rows += 1
        if value.upper().startswith("RMD"):
            out.append(RmdRecord(value.upper(), (), line=line))
        elif frn10(value):
            out.append(RmdRecord(None, (frn10(value) or "",), line=line))
        else:
            _skip(report, line, f"{value!r} is neither an RMD number nor an FRN")
    report.imported = len(out)
    return out, report


def parse_ocn_map(text: str, path: str = "<ocn_map>") -> tuple[list[OcnMapping], ImportReport]:
    """Operator-kept CSV: spc (or ocn), then rmd (RMD number) and/or frn."""
    header, rows = _rows(text, path)
    if "spc" not in header or ("number" not in header and "frn" not in header):
        raise ConfigError("OCN map needs columns `spc` (or `ocn`) and `rmd` and/or `frn`", path, 1)
    col = {name: i for i, name in enumerate(header)}
    report = ImportReport("ocn_map")
    out: dict[str, OcnMapping] = {}

    def get(row: list[str], name: str) -> str:
        i = col.get(name)
        return _clean(row[i]) if i is not None and i < len(row) else ""

    for line, row in rows:
        report.rows += 1
        spc, rmd, frn = get(row, "spc").upper(), get(row, "number").upper() or None, frn10(get(row, "frn"))
        if not _SPC.match(spc):
            _skip(report, line, f"SPC {spc!r} is not 4 letters/digits")
        elif rmd is None and frn is None:
            _skip(report, line, f"SPC {spc}: no RMD number and no valid FRN")
        else:
            if spc in out:
                report.duplicates += 1
            out[spc] = OcnMapping(spc, rmd, frn)
    report.imported = len(out)
    return list(out.values()), report


def dno_digits(value: str) -> str | None:
    """A DNO line -> 10 (number), 7 (thousands block), 6 (NPA-NXX) or 3 (NPA) digits."""
    d = value.translate(_PUNCT)
    if d.startswith("+1"):
        d = d[2:]
    elif len(d) == 11 and d.startswith("1"):
        d = d[1:]
    if not d.isdigit() or len(d) not in (3, 6, 7, 10) or d[0] in "01":
        return None
    return d


def parse_dno(text: str, path: str = "<dno>") -> tuple[list[str], ImportReport]:
    """DNO lines -> NANP digit strings (10, 7, 6 or 3 long), see ``dno_digits``."""
    report = ImportReport("dno")
    entries: list[str] = []
    column: int | None = None
    fast = _DNO_FAST
    append = entries.append
    for line, raw in enumerate(text.splitlines(), 1):
        plain = fast(raw)
        if plain is not None:
            # the common line, a bare number: one regex, no translate (2M-line lists load in seconds)
            report.rows += 1
            append(plain.group(1))
            continue
        value = raw.split("#", 1)[0].strip()
        if not value:
            continue
        if "," in value:
            cells = [c.strip().strip('"').lower() for c in value.split(",")]
            if column is None and not any(c.isdigit() for c in cells):
                names = [_ALIASES.get(c, c) for c in cells]
                if "number" not in names:
                    raise ConfigError("CSV DNO file needs a `number`, `tn` or `phone` column", path, line)
                column = names.index("number")
                continue
            value = cells[column or 0] if len(cells) > (column or 0) else ""
        report.rows += 1
        d = dno_digits(value)
        if d is None:
            _skip(report, line, f"{value!r} is not a NANP number, NPA, NPA-NXX or thousands block")
            continue
        entries.append(d)
    report.imported = len(entries)
    return entries, report


def parse_lists(text: str, path: str = "<lists>") -> list[ListEntry]:
    out = []
    for line, raw in enumerate(text.splitlines(), 1):
        parts = raw.split("#", 1)[0].split(None, 3)
        if not parts:
            continue
        if len(parts) < 3 or parts[0] not in ("allow", "block") or parts[1] not in LIST_KINDS:
            raise ConfigError(f"expected `allow|block {'|'.join(LIST_KINDS)} VALUE [note]`, got {raw.strip()!r}",
                              path, line)
        out.append(ListEntry(parts[1], parts[0], parts[2], parts[3].strip() if len(parts) > 3 else None))
    return out


def import_refusal(report: ImportReport, valid: int, in_force: int, unidentified: int = 0) -> str | None:
    """Why a parsed file must not replace the data in force (None: it may).

    ``valid``: distinct entries the file would put in force; ``in_force``: those in force now
    (RMD: listed filings, DNO: entries; 0 when nothing was imported yet); ``unidentified``:
    imported rows that count as invalid all the same (RMD: no FRN and an RMD number that is
    not RMD + 7 digits, as every row of a CSV that only has a `number` column of garbage).
    """
    invalid = report.rows - report.imported - report.duplicates + unidentified
    if invalid > max(MAX_INVALID_SHARE * report.rows, INVALID_TOLERATED):
        return (f"{invalid} of {report.rows} rows are invalid (more than {MAX_INVALID_SHARE:.0%}): "
                "this is not a usable export")
    if in_force and valid < in_force * (1 - MAX_DROP):
        return (f"{valid} valid entries would replace {in_force} in force, a fall of "
                f"{1 - valid / in_force:.0%} (more than {MAX_DROP:.0%})")
    return None


async def check_import(store: Store, report: ImportReport, entries: Sequence[RmdRecord] | Sequence[str],
                       path: str) -> None:
    """Refuse (ConfigError, the data in force stays) what ``import_refusal`` refuses.
    ``entries``: what the file would put in force (RMD records, DNO digit strings)."""
    dataset = report.dataset
    if dataset == "rmd":
        unidentified = sum(1 for r in entries if isinstance(r, RmdRecord) and not r.frns
                           and not _RMD_ID.match(r.rmd or ""))
        valid = len(entries) - unidentified
    else:
        unidentified, valid = 0, len(set(entries))
    in_force = await store.in_force(dataset) if dataset in ("rmd", "dno") else 0
    why = import_refusal(report, valid, in_force, unidentified)
    if why is not None:
        raise ConfigError(f"{why}; the {dataset} data in force is kept. Check the file, or import it "
                          "anyway with --force", path)


def parse_file(parse: Callable[[str, str], _T], path: str, limit: int = MAX_DATASET_BYTES) -> _T:
    """Read (at most ``limit`` bytes) and parse one dataset file; a file that exhausts memory
    is refused like a bad one."""
    try:
        return parse(read_text(path, limit), path)
    except (RecursionError, MemoryError, UnicodeError) as exc:
        raise input_failure(exc, path) from None


def snapshot_of(path: str) -> str:
    """Default snapshot date: the file's modification date (exports carry none inside)."""
    import datetime

    stamp = os.stat(path).st_mtime
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%d")


async def load_datasets(store: Store, datasets_cfg: Mapping[str, str],
                        force: bool = False) -> dict[str, ImportReport]:
    """Load every dataset file named in config into the store; file errors raise ConfigError.

    Only for the memory store (CONTRACT: with Redis, datasets are imported with the CLI):
    N instances starting against one Redis must not each re-import, nor overwrite the lists
    edited with ``sipguard list``. ``force=True`` loads into any store.
    """
    unknown = [n for n in datasets_cfg if n not in DATASET_NAMES]
    if unknown:
        raise ConfigError(f"unknown dataset {unknown[0]!r}; expected one of: {', '.join(DATASET_NAMES)}",
                          key=f"datasets.{unknown[0]}")
    from sipguard.store.memory import MemoryStore

    if not force and not isinstance(store, MemoryStore):
        log.info("datasets in the config are not loaded into a shared store; import them with "
                 "`sipguard rmd import` / `dno import` (the store keeps what was imported)")
        return {}
    reports: dict[str, ImportReport] = {}
    removed: list[RmdRecord] = []
    # every file is read, parsed and checked before any is put in force, so one bad file
    # leaves all the data in force as it was
    paths = {name: datasets_cfg[name] for name in DATASET_NAMES if datasets_cfg.get(name)}
    if "rmd_removed" in paths:
        removed, reports["rmd_removed"] = await asyncio.to_thread(parse_file, parse_removed, paths["rmd_removed"])
    if "rmd" in paths:
        path = paths["rmd"]
        records, parsed = await asyncio.to_thread(
            parse_file, lambda text, name: parse_rmd(text, name, snapshot_of(name)), path)
        await check_import(store, parsed, records, path)
    if "ocn_map" in paths:
        rows, reports["ocn_map"] = await asyncio.to_thread(parse_file, parse_ocn_map, paths["ocn_map"])
    if "dno" in paths:
        entries, reports["dno"] = await asyncio.to_thread(parse_file, parse_dno, paths["dno"])
        await check_import(store, reports["dno"], entries, paths["dno"])
    if "lists" in paths:
        lists = await asyncio.to_thread(parse_file, parse_lists, paths["lists"])
    threats = {}
    for name, source in THREAT_DATASETS.items():
        if name in paths:
            threats[source], reports[name] = await asyncio.to_thread(parse_file, _threat_parser(source), paths[name],
                                                                     MAX_THREAT_BYTES)
            why = import_refusal(reports[name], len(threats[source]), 0)
            if why is not None:
                raise ConfigError(f"{why}; the {source} threat list in force is kept", paths[name])
    if "rmd" in paths:
        report = await store.import_rmd(records, parsed.snapshot or "", removed)
        report.rows, report.skipped, report.duplicates = parsed.rows, parsed.skipped, parsed.duplicates
        report.warnings = parsed.warnings
        reports["rmd"] = report
    if "ocn_map" in paths:
        await store.map_ocn(rows)
    if "dno" in paths:
        await store.import_dno(entries)
    if "lists" in paths:
        reports["lists"] = ImportReport("lists", rows=len(lists), imported=await store.list_replace(lists))
    for source, entries_of in threats.items():
        await store.threats_import(entries_of, source)
    for name, rep in reports.items():
        if rep.skipped:
            log.warning("dataset %s: %d line(s) skipped, first at line %d: %s", name, len(rep.skipped),
                        rep.skipped[0][0], rep.skipped[0][1])
    return reports


MAX_THREAT_BYTES = 32 * 1024 * 1024     # a threat list: 200,000 entries of ~100 bytes is 20 MB


def _threat_parser(source: str) -> Callable[[str, str], tuple[list[ThreatEntry], ImportReport]]:
    from sipguard.threats import parse_threats

    return lambda text, path: parse_threats(text, path, source)


@dataclass(slots=True)
class DatasetWatcher:
    """Reload dataset files when they change (mtime or size), keeping the old data on errors."""

    store: Store
    datasets_cfg: Mapping[str, str]
    _seen: dict[str, tuple[float, int]] | None = None

    def _stamps(self) -> dict[str, tuple[float, int]]:
        out = {}
        for name, path in self.datasets_cfg.items():
            try:
                st = os.stat(path)
                out[name] = (st.st_mtime, st.st_size)
            except OSError:
                out[name] = (0.0, -1)
        return out

    def poll(self) -> bool:
        """True when a file changed since the last call (the first call records the state)."""
        stamps = self._stamps()
        changed = self._seen is not None and stamps != self._seen
        self._seen = stamps
        return changed

    async def refresh(self) -> bool:
        """Poll, and reload everything if something changed; True when a reload happened."""
        if not self.poll():
            return False
        try:
            await load_datasets(self.store, self.datasets_cfg)
        except SipguardError as exc:
            log.error("dataset reload failed, keeping the data in force: %s", exc)
            return False
        except Exception:   # noqa: BLE001 - the watcher must outlive any file: it is polled for ever
            log.exception("dataset reload failed unexpectedly, keeping the data in force")
            return False
        log.info("datasets reloaded")
        return True

    async def watch(self, interval: float = 2.0) -> None:
        self.poll()
        while True:
            await asyncio.sleep(interval)
            await self.refresh()
