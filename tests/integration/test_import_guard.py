"""`sipguard rmd import` / `dno import` against a real Redis refuse a file that would wipe the
data in force (the issue's one-row garbage CSV marked every real provider REMOVED), and
`--force` still imports it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard.cli import main
from tests import redis_fixtures
from tests.redis_fixtures import RedisProcess

redis_server = redis_fixtures.redis_server     # fixture


def rmd_export(count: int) -> str:
    return "number,frn,implementation\n" + "".join(
        f"RMD{i:07d},{i:010d},Complete STIR/SHAKEN Implementation\n" for i in range(1, count + 1))


@pytest.mark.integration
def test_garbage_rmd_and_shrunken_dno_are_refused_unless_forced(redis_server: RedisProcess, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    url = redis_server.url
    good = tmp_path / "rmd.csv"
    good.write_text(rmd_export(50))
    assert main(["rmd", "import", str(good), "--store", url, "--snapshot", "2026-12-01"]) == 0
    capsys.readouterr()

    garbage = tmp_path / "garbage.csv"
    garbage.write_text("number\nhello\n")
    assert main(["rmd", "import", str(garbage), "--store", url, "--snapshot", "2026-12-02"]) == 1
    err = capsys.readouterr().err
    assert f"{garbage}: 0 valid entries would replace 50 in force, a fall of 100% (more than 20%)" in err
    assert "the rmd data in force is kept" in err and "--force" in err
    assert main(["rmd", "show", "RMD0000007", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "RMD0000007: listed" in out and "snapshot 2026-12-01" in out

    assert main(["rmd", "import", str(garbage), "--store", url, "--snapshot", "2026-12-02", "--force"]) == 0
    assert main(["rmd", "show", "RMD0000007", "--store", url]) == 0
    assert "RMD0000007: removed" in capsys.readouterr().out

    dno = tmp_path / "dno.txt"
    dno.write_text("".join(f"202555{i:04d}\n" for i in range(100)))
    assert main(["dno", "import", str(dno), "--store", url]) == 0
    dno.write_text("2025550000\n2025550001\n")
    assert main(["dno", "import", str(dno), "--store", url]) == 1
    assert "2 valid entries would replace 100 in force" in capsys.readouterr().err
    assert main(["dno", "import", str(dno), "--store", url, "--force"]) == 0
    assert "DNO list in force: 2 distinct entries" in capsys.readouterr().out
