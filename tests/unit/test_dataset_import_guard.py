"""A garbage dataset file does not replace the data in force: too many invalid rows, or far
fewer valid entries than in force, and the import is refused (``--force`` overrides on the
CLI; the serving process's reload never overrides)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sipguard.cli import main
from sipguard.store.base import ImportReport
from sipguard.store.datasets import DatasetWatcher, import_refusal, load_datasets
from sipguard.store.memory import MemoryStore


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("rows", "imported", "duplicates", "valid", "in_force", "refused"), [
    (10, 7, 1, 7, 0, None),                         # messy.csv: 2 bad rows of 10, first import
    (100, 89, 0, 89, 0, "11 of 100 rows are invalid (more than 10%)"),
    (100, 90, 0, 90, 100, None),
    (1, 1, 0, 1, 7, "1 valid entries would replace 7 in force, a fall of 86% (more than 20%)"),
    (6, 6, 0, 6, 7, None),                          # next.csv after messy.csv: one filing gone
    (1000, 1000, 0, 799, 1000, "a fall of 20% (more than 20%)"),
    (1000, 1000, 0, 800, 1000, None),
])
def test_import_refusal(rows: int, imported: int, duplicates: int, valid: int, in_force: int,
                        refused: str | None) -> None:
    why = import_refusal(ImportReport("rmd", rows=rows, imported=imported, duplicates=duplicates),
                         valid, in_force)
    assert (why is None) == (refused is None)
    if refused is not None:
        assert why is not None and refused in why


def test_watcher_keeps_the_rmd_and_dno_in_force_when_a_garbage_file_lands(tmp_path: Path) -> None:
    rmd = tmp_path / "rmd.csv"
    rmd.write_text("number,frn,implementation\n" + "".join(
        f"RMD{i:07d},{i:010d},Complete STIR/SHAKEN Implementation\n" for i in range(1, 11)))
    dno = tmp_path / "dno.txt"
    dno.write_text("".join(f"20255501{i:02d}\n" for i in range(20)))
    cfg = {"rmd": str(rmd), "dno": str(dno)}

    async def main() -> None:
        store = MemoryStore()
        await load_datasets(store, cfg)
        assert (await store.in_force("rmd"), await store.in_force("dno")) == (10, 20)
        watcher = DatasetWatcher(store, cfg)
        watcher.poll()
        rmd.write_text("number\nhello\n")                     # the one-row garbage CSV
        os.utime(rmd, (os.stat(rmd).st_mtime + 5,) * 2)
        assert await watcher.refresh() is False
        assert (await store.rmd_show("RMD0000003") or {}).get("status") == "listed"
        dno.write_text("nonsense\n" * 50 + "2025550100\n")
        os.utime(dno, (os.stat(dno).st_mtime + 10,) * 2)
        assert await watcher.refresh() is False
        assert await store.in_force("dno") == 20

    asyncio.run(main())


def test_dno_import_refuses_a_mostly_invalid_file_unless_forced(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    dno = write(tmp_path, "dno.txt", "nonsense\n" * 20 + "2025550100\n")
    assert main(["dno", "import", dno, "--store", "memory"]) == 1
    err = capsys.readouterr().err
    assert f"{dno}: 20 of 21 rows are invalid" in err and "--force" in err
    assert main(["dno", "import", dno, "--store", "memory", "--force"]) == 0


def test_rows_without_any_usable_id_count_as_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CSV whose only column is `number` full of words parses into records keyed by the
    words: the guard counts them as invalid even on a first import (nothing in force)."""
    garbage = write(tmp_path, "garbage.csv", "number\n" + "".join(f"word{i}\n" for i in range(20)))
    config = write(tmp_path, "sipguard.yaml", "store: memory\n")
    assert main(["rmd", "import", garbage, "-c", config]) == 1
    assert f"{garbage}: 20 of 20 rows are invalid" in capsys.readouterr().err
    real = write(tmp_path, "real.csv", "number,frn\n" + "".join(f"RMD{i:07d},\n" for i in range(1, 21))
                 + "rmd12,\n")            # one odd RMD number among real ones is tolerated
    assert main(["rmd", "import", real, "-c", config]) == 0
    assert "21 row(s) read, 21 imported" in capsys.readouterr().out
