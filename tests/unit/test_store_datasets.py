"""Dataset parsers: the messy RMD export, removed lists, OCN map, DNO, lists; loading and reload."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sipguard.errors import ConfigError
from sipguard.store.base import LookupKeys
from sipguard.store.datasets import (
    DatasetWatcher,
    dno_digits,
    fix_mojibake,
    implementation,
    load_datasets,
    parse_dno,
    parse_lists,
    parse_removed,
    parse_rmd,
    read_text,
)
from sipguard.store.memory import MemoryStore
from sipguard.store.tables import build_rmd

DATA = Path(__file__).resolve().parents[1] / "data" / "rmd"


@pytest.mark.parametrize(("text", "want"), [
    ("Complete STIR/SHAKEN Implementation", "complete"),
    ("Partial STIR/SHAKEN Implementation - Performing Robocall Mitigation", "partial"),
    ("No STIR/SHAKEN Implementation - Performing Robocall Mitigation", "none"),
    ("Yes", "complete"), ("Partial", "partial"), ("No", "none"), ("  yes ", "complete"),
    ("", "unknown"), ("Something else", "unknown"),
])
def test_implementation(text: str, want: str) -> None:
    assert implementation(text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("+1 (202) 555-0123", "2025550123"), ("12025550123", "2025550123"), ("202.555.0123", "2025550123"),
    ("202-555-0", "2025550"), ("202555", "202555"), ("415", "415"),
    ("1202", None), ("0205550123", None), ("20255501234", None), ("+442071838750", None), ("abc", None),
])
def test_dno_digits(text: str, want: str | None) -> None:
    assert dno_digits(text) == want


def test_mojibake() -> None:
    assert fix_mojibake("CafÃ© TelecomÂ®") == "Café Telecom®"
    assert fix_mojibake("Plain Name") == "Plain Name"
    assert fix_mojibake("Ãx\udcff") == "Ãx\udcff"          # not repairable: unchanged


def test_messy_export_golden() -> None:
    records, report = parse_rmd(read_text(str(DATA / "messy.csv")), "messy.csv", "2025-06-01")
    assert [r.rmd for r in records] == ["RMD0000001", "RMD0000002", "RMD0000003", "RMD0000004", "RMD12",
                                        None, "RMD0000005"]
    assert [r.line for r in records] == [2, 7, 8, 11, 12, 13, 15]        # a record's first line
    assert records[0].frns == ("0012345678", "0099999999", "0088888888")
    assert records[1].business_name == "Café Telecom®" and records[1].foreign is True
    assert records[2].frns == ("0034567890",)
    assert records[6].frns == ("0055555555", "0055555556", "0055555557")
    assert (report.rows, report.imported, report.duplicates) == (10, 7, 1)
    assert [line for line, _ in report.skipped] == [10, 14]
    assert report.by_implementation == {"complete": 2, "partial": 2, "none": 2, "unknown": 1}
    assert any("RMD12" in w for w in report.warnings)


def test_reordered_and_renamed_columns() -> None:
    text = "frn_str,implementation,Number\n'0000000042,Yes,RMD0000042\n"
    (rec,), _ = parse_rmd(text)
    assert (rec.rmd, rec.frns, rec.implementation) == ("RMD0000042", ("0000000042",), "complete")


def test_not_an_export_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_rmd(read_text(str(DATA / "no_ids.csv")), "no_ids.csv")
    assert info.value.line == 1 and "snapshot in force is kept" in info.value.message
    with pytest.raises(ConfigError):
        parse_rmd("", "empty.csv")


def test_unreadable_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_text(str(tmp_path / "missing.csv"))
    assert "cannot read" in info.value.message
    latin = tmp_path / "latin.csv"
    latin.write_bytes("number,frn,business_name\nRMD0000001,1,Caf\xe9\n".encode("latin-1"))
    (rec,), _ = parse_rmd(read_text(str(latin)))
    assert rec.business_name == "Café"


def test_removed_list_forms() -> None:
    out, report = parse_removed(read_text(str(DATA / "removed.txt")))
    assert [(r.rmd, r.frns) for r in out] == [("RMD0000005", ()), (None, ("0012345678",))]
    assert report.skipped == [(4, "'not-an-id' is neither an RMD number nor an FRN")]


def test_build_rmd_removed_by_frn_covers_the_whole_filing() -> None:
    records, _ = parse_rmd(read_text(str(DATA / "messy.csv")))
    removed, _ = parse_removed("0099999999\n")
    ids, frns, report = build_rmd(records, removed, {}, {}, "s")
    assert ids["RMD0000001"].startswith("removed|complete")
    assert all(frns[f].startswith("removed") for f in ("0012345678", "0099999999", "0088888888"))
    assert report.removed == 1


def test_dno_file_forms() -> None:
    entries, report = parse_dno("# comment\n+1 202 555 0123  # a number\n\n212555\nnumber\n")
    assert entries == ["2025550123", "212555"]
    assert report.skipped == [(5, "'number' is not a NANP number, NPA, NPA-NXX or thousands block")]
    entries, _ = parse_dno("category,tn\ninvalid,2025550123\nsubscriber_request,+13035550100\n")
    assert entries == ["2025550123", "3035550100"]
    with pytest.raises(ConfigError):
        parse_dno("a,b\n1,2\n", "dno.csv")


def test_lists_file() -> None:
    entries = parse_lists("# ops\nblock number +12025550123 robocaller, reported\nallow trunk t1\n")
    assert entries[0].note == "robocaller, reported" and entries[1].kind == "trunk"
    with pytest.raises(ConfigError) as info:
        parse_lists("\nblock colour red\n", "lists.txt")
    assert info.value.line == 2


def test_load_datasets_and_watcher(tmp_path: Path) -> None:
    dno = tmp_path / "dno.txt"
    dno.write_text("2025550123\n")
    lists = tmp_path / "lists.txt"
    lists.write_text("block prefix +1303\n")
    cfg = {"rmd": str(DATA / "messy.csv"), "rmd_removed": str(DATA / "removed.txt"),
           "ocn_map": str(DATA / "ocn_map.csv"), "dno": str(dno), "lists": str(lists)}
    keys = LookupKeys("t1", None, "RMD0000002", "192.0.2.1", "+12025550123", None, "938K")

    async def main() -> None:
        store = MemoryStore()
        reports = await load_datasets(store, cfg)
        assert reports["rmd"].skipped[0][0] == 10 and reports["dno"].imported == 1
        got = await store.lookup(keys, 0.0)
        assert (got.trunk_rmd, got.caller_dno) == ("listed", True)
        assert got.signer_rmd == "removed"                # 938K -> RMD0000001, on the removed list
        assert got.rmd_snapshot is not None
        watcher = DatasetWatcher(store, cfg)
        assert watcher.poll() is False                     # first poll records the state
        assert await watcher.refresh() is False
        dno.write_text("3035550100\n")
        lists.write_text("block number +12025550123\n")
        stamp = os.stat(dno).st_mtime + 5
        os.utime(dno, (stamp, stamp))
        assert await watcher.refresh() is True
        got = await store.lookup(keys, 0.0)
        assert (got.caller_dno, got.list) == (False, "block")
        lists.write_text("block colour red\n")            # a broken file: keep what is in force
        os.utime(lists, (stamp + 5, stamp + 5))
        assert await watcher.refresh() is False
        assert (await store.lookup(keys, 0.0)).list == "block"
        with pytest.raises(ConfigError):
            await load_datasets(store, {"rmdd": "x"})

    asyncio.run(main())
