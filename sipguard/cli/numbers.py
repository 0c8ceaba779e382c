"""``sipguard numbers refresh``: regenerate the NANP area-code table numbers.py reads.

Two sources, both public: libphonenumber's metadata (the ``phonenumbers`` package, the
default, works offline) or a NANPA NPA report the operator downloaded from
https://www.nationalnanpa.com/nanp1/npa_report.csv (``--from-nanpa``). NANPA rules for
codes that can never be assigned (N11, N9X, 37X, 96X, 555, 950, 958/959, the toll-free
expansion codes) fill the rows neither source knows. A bad report (an HTML error page, a
renamed column, implausibly few rows) is refused and the existing table is left as it
was, because an empty table would make every caller "unassigned".

This runs offline, at the operator's request; nothing here is on the call path.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import tempfile
from importlib import resources

from sipguard.errors import SipguardError

# ISO codes of the NANP countries and territories, by the names a NANPA report may use.
_COUNTRY_NAMES = {
    "US": "US", "USA": "US", "UNITED STATES": "US", "CANADA": "CA", "CA": "CA",
    "PUERTO RICO": "PR", "US VIRGIN ISLANDS": "VI", "USVI": "VI", "VIRGIN ISLANDS": "VI",
    "GUAM": "GU", "AMERICAN SAMOA": "AS", "NORTHERN MARIANA ISLANDS": "MP", "CNMI": "MP",
    "ANGUILLA": "AI", "ANTIGUA AND BARBUDA": "AG", "ANTIGUA": "AG", "BAHAMAS": "BS",
    "BARBADOS": "BB", "BERMUDA": "BM", "BRITISH VIRGIN ISLANDS": "VG", "CAYMAN ISLANDS": "KY",
    "DOMINICA": "DM", "DOMINICAN REPUBLIC": "DO", "GRENADA": "GD", "JAMAICA": "JM",
    "MONTSERRAT": "MS", "SINT MAARTEN": "SX", "ST. KITTS AND NEVIS": "KN", "ST KITTS AND NEVIS": "KN",
    "ST. LUCIA": "LC", "ST LUCIA": "LC", "ST. VINCENT AND GRENADINES": "VC", "ST VINCENT": "VC",
    "TRINIDAD AND TOBAGO": "TT", "TURKS AND CAICOS ISLANDS": "TC", "TURKS AND CAICOS": "TC",
}
# US territories: a NANPA report may file them under COUNTRY=US with LOCATION=<code>.
_TERRITORY_LOCATIONS = {"PR": "PR", "VI": "VI", "GU": "GU", "AS": "AS", "MP": "MP",
                        "PUERTO RICO": "PR", "GUAM": "GU", "AMERICAN SAMOA": "AS",
                        "US VIRGIN ISLANDS": "VI", "NORTHERN MARIANA ISLANDS": "MP", "CNMI": "MP"}
NANPA_COLUMNS = ("NPA_ID", "COUNTRY", "LOCATION", "IN_SERVICE")
MIN_ROWS = 300  # ~400 NPAs are in service; fewer rows than this is a broken download

# Non-geographic US codes libphonenumber has no numbers for (NANPA: 456 inbound
# international, 700 interexchange carrier services, 710 US government).
_EXTRA_NON_GEOGRAPHIC = {"456": "US", "700": "US", "710": "US"}


def reserved_npa(npa: str) -> bool:
    """NANPA codes that are never assigned as area codes (why each: see the comments)."""
    if npa[1:] == "11":        # N11: service codes (911, 411 ...)
        return True
    if npa[1] == "9":          # N9X: kept for expanding the numbering plan
        return True
    if npa[:2] in ("37", "96"):  # 37X, 96X: reserved for unanticipated purposes
        return True
    # 555 directory, 950/958 carrier access and test codes, 88X toll-free expansion (959 was
    # a test code too but is a Connecticut overlay since 2020: the data decides first)
    return npa in ("555", "950", "958", "880", "881", "882", "883", "884", "885", "886",
                   "887", "889")


def _fill(table: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Every NPA 200-999 gets a row: known ones as given, others reserved or unassigned."""
    out: dict[str, tuple[str, str]] = {}
    for n in range(200, 1000):
        npa = f"{n:03d}"
        if npa in table:
            out[npa] = table[npa]
        else:
            out[npa] = ("", "reserved" if reserved_npa(npa) else "unassigned")
    return out


NO_PHONENUMBERS = ("libphonenumber's metadata is not installed (the optional `phonenumbers` "
                   "package): run `pip install 'sipguard[numbers]'`, or give a NANPA report with "
                   "--from-nanpa FILE.csv")


def have_phonenumbers() -> bool:
    try:
        import phonenumbers  # noqa: F401  (an optional extra: sipguard[numbers])
    except ImportError:
        return False
    return True


def table_from_phonenumbers() -> dict[str, tuple[str, str]]:
    """npa -> (region, status) from libphonenumber: which region's patterns cover the NPA."""
    if not have_phonenumbers():
        raise SipguardError(NO_PHONENUMBERS)
    from phonenumbers import PhoneMetadata
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    geographic_kinds = ("fixed_line", "mobile")
    other_kinds = ("toll_free", "premium_rate", "personal_number", "voip", "pager", "uan",
                   "shared_cost", "voicemail")
    regions = []
    for region in COUNTRY_CODE_TO_REGION_CODE[1]:
        meta = PhoneMetadata.metadata_for_region(region)
        if meta is None:
            continue
        kinds = []
        for kind in geographic_kinds + other_kinds:
            desc = getattr(meta, kind, None)
            if desc is not None and desc.national_number_pattern:
                kinds.append((kind in geographic_kinds, re.compile(desc.national_number_pattern)))
        lead = re.compile(meta.leading_digits) if meta.leading_digits else None
        regions.append((region, lead, kinds))
    # Sample exchanges: patterns are per NPA-NXX, so probe a spread of NXX codes.
    exchanges = [f"{nxx:03d}" for nxx in range(200, 1000, 3)] + ["555", "600", "700", "800", "900"]
    table: dict[str, tuple[str, str]] = {}
    for n in range(200, 1000):
        npa = f"{n:03d}"
        if npa[1:] == "11" or npa[1] == "9":
            continue
        found = None
        for region, lead, kinds in regions:
            if lead is not None and not lead.match(npa + "2"):
                continue
            for geographic, pattern in kinds:
                if any(pattern.fullmatch(npa + nxx + "5123") or pattern.fullmatch(npa + nxx + "0000")
                       for nxx in exchanges):
                    found = (region, "geographic" if geographic else "non-geographic")
                    break
            if found:
                break
        if found is None and npa in _EXTRA_NON_GEOGRAPHIC:
            found = (_EXTRA_NON_GEOGRAPHIC[npa], "non-geographic")
        if found is not None:
            table[npa] = found
    return _fill(table)


def table_from_nanpa(text: str) -> dict[str, tuple[str, str]]:
    """Parse a NANPA npa_report.csv (first line 'File Date,...', then a header row)."""
    head = text.lstrip()[:200].lower()
    if head.startswith("<") or "<html" in head:
        raise SipguardError("the NANPA file is an HTML page, not the CSV report (download it again)")
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines[:5]) if line.upper().startswith("NPA_ID")), None)
    if start is None:
        raise SipguardError("no header row starting with NPA_ID in the first lines of the NANPA file")
    reader = csv.DictReader(io.StringIO("\n".join(lines[start:])))
    columns = {c.strip().upper() for c in reader.fieldnames or ()}
    missing = [c for c in NANPA_COLUMNS if c not in columns]
    if missing:
        raise SipguardError(f"the NANPA file lacks the column(s) {', '.join(missing)}")
    table: dict[str, tuple[str, str]] = {}
    for row in reader:
        row = {(k or "").strip().upper(): (v or "").strip() for k, v in row.items()}
        npa = row["NPA_ID"]
        if len(npa) != 3 or not npa.isdigit():
            continue
        if row["IN_SERVICE"].upper() not in ("Y", "YES"):
            continue
        region = _region_of(row["COUNTRY"].upper(), row["LOCATION"].upper())
        non_geo = row.get("USE", "").upper() == "N" or "NANP AREA" in row["LOCATION"].upper()
        table[npa] = (region, "non-geographic" if non_geo else "geographic")
    if len(table) < MIN_ROWS:
        raise SipguardError(f"the NANPA file lists only {len(table)} area codes in service "
                            f"(expected at least {MIN_ROWS}); is it complete?")
    return _fill(table)


def _region_of(country: str, location: str) -> str:
    if location in _TERRITORY_LOCATIONS:
        return _TERRITORY_LOCATIONS[location]
    if country in _COUNTRY_NAMES:
        return _COUNTRY_NAMES[country]
    if len(country) == 2 and country.isalpha():
        return country
    return "US" if not country else country[:2]


def format_table(table: dict[str, tuple[str, str]]) -> str:
    rows = ["npa,region,status"] + [f"{npa},{region},{status}" for npa, (region, status) in sorted(table.items())]
    return "\n".join(rows) + "\n"


def country_codes() -> str:
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    codes = sorted(str(cc) for cc, regions in COUNTRY_CODE_TO_REGION_CODE.items() if regions)
    return "\n".join(codes) + "\n"


def _write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nanp_npa.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def default_out() -> str:
    return str(resources.files("sipguard").joinpath("data/nanp_npa.csv"))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("numbers", help="NANP number data")
    sub = parser.add_subparsers(dest="numbers_command", metavar="ACTION", required=True)
    refresh = sub.add_parser("refresh", help="regenerate the area-code table (npa,region,status)")
    refresh.add_argument("--from-nanpa", metavar="FILE.csv",
                         help="NANPA npa_report.csv to read instead of libphonenumber's metadata")
    refresh.add_argument("--out", metavar="PATH", help="where to write (default: the packaged table)")
    refresh.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.from_nanpa:
        try:
            with open(args.from_nanpa, encoding="utf-8-sig", errors="replace") as fh:
                text = fh.read()
        except OSError as exc:
            raise SipguardError(f"{args.from_nanpa}: cannot read: {exc.strerror}") from None
        try:
            table = table_from_nanpa(text)
        except SipguardError as exc:
            raise SipguardError(f"{args.from_nanpa}: {exc}; the table was left as it was") from None
        source = args.from_nanpa
    else:
        table = table_from_phonenumbers()
        source = "libphonenumber metadata"
    out = args.out or default_out()
    try:
        _write_atomically(out, format_table(table))
        if not args.out and have_phonenumbers():   # the country list comes from libphonenumber only
            _write_atomically(os.path.join(os.path.dirname(out), "country_codes.txt"), country_codes())
    except OSError as exc:
        raise SipguardError(f"{out}: cannot write: {exc.strerror}") from None
    counts: dict[str, int] = {}
    for _, status in table.values():
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts))
    print(f"wrote {out} from {source}: {summary}")
    return 0
