"""`sipguard numbers refresh`: both sources, and refusal of broken NANPA downloads."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sipguard.cli import numbers as refresh
from sipguard.errors import SipguardError
from sipguard.numbers import parse_npa_csv


def nanpa_report(rows: list[tuple[str, str, str, str, str]], header: str | None = None) -> str:
    header = header or "NPA_ID,type_of_code,USE,LOCATION,COUNTRY,IN_SERVICE,TIME_ZONE"
    lines = ["File Date,09/25/2026", header]
    lines += [f"{npa},x,{use},{loc},{country},{ins},E" for npa, use, loc, country, ins in rows]
    return "\n".join(lines) + "\n"


def full_report() -> list[tuple[str, str, str, str, str]]:
    rows = [(str(n), "G", "NY", "US", "Y") for n in range(201, 600) if str(n)[1:] != "11"
            and str(n)[1] != "9"]
    rows += [("416", "G", "ON", "CANADA", "Y"), ("787", "G", "PR", "US", "Y"),
             ("876", "G", "JAMAICA", "JAMAICA", "Y"), ("800", "N", "NANP AREA", "", "Y"),
             ("684", "G", "AS", "US", "Y"), ("999", "G", "XX", "US", "N")]
    return rows


def test_nanpa_report_is_read() -> None:
    table = refresh.table_from_nanpa(nanpa_report(full_report()))
    assert table["416"] == ("CA", "geographic")
    assert table["787"] == ("PR", "geographic")
    assert table["876"] == ("JM", "geographic")
    assert table["684"] == ("AS", "geographic")
    assert table["800"] == ("US", "non-geographic")
    assert table["999"] == ("", "reserved")          # not in service, N9X
    assert table["611"] == ("", "reserved")          # N11 fills in
    assert table["620"] == ("", "unassigned")        # absent from the report
    assert len(table) == 800


@pytest.mark.parametrize(("text", "message"), [
    ("<html><body>Service unavailable</body></html>", "HTML"),
    (nanpa_report(full_report()).replace("LOCATION", "PLACE"), "LOCATION"),
    (nanpa_report(full_report()[:5]), "only 5"),
    ("File Date,09/25/2026\n", "NPA_ID"),
])
def test_broken_reports_are_refused(text: str, message: str) -> None:
    with pytest.raises(SipguardError, match=message):
        refresh.table_from_nanpa(text)


def test_refresh_leaves_the_table_when_the_report_is_bad(tmp_path: Path) -> None:
    out = tmp_path / "npa.csv"
    out.write_text("npa,region,status\n212,US,geographic\n")
    bad = tmp_path / "report.csv"
    bad.write_text("<html>error</html>")
    args = argparse.Namespace(from_nanpa=str(bad), out=str(out))
    with pytest.raises(SipguardError, match="left as it was"):
        refresh.run(args)
    assert out.read_text() == "npa,region,status\n212,US,geographic\n"


def test_refresh_from_nanpa_writes_a_readable_table(tmp_path: Path) -> None:
    report = tmp_path / "npa_report.csv"
    report.write_text(nanpa_report(full_report()))
    out = tmp_path / "npa.csv"
    assert refresh.run(argparse.Namespace(from_nanpa=str(report), out=str(out))) == 0
    table = parse_npa_csv(out.read_text())
    assert table["416"] == ("CA", "geographic") and table["611"] == (None, "reserved")


def test_missing_report_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SipguardError, match="cannot read"):
        refresh.run(argparse.Namespace(from_nanpa=str(tmp_path / "nope.csv"), out=str(tmp_path / "o")))


def test_phonenumbers_source_agrees_with_the_shipped_table(tmp_path: Path) -> None:
    out = tmp_path / "npa.csv"
    assert refresh.run(argparse.Namespace(from_nanpa=None, out=str(out))) == 0
    fresh = parse_npa_csv(out.read_text())
    shipped = parse_npa_csv(Path(refresh.default_out()).read_text())
    assert len(fresh) == 800
    for npa in ("212", "416", "876", "787", "340", "671", "684", "670", "800", "600", "555", "911"):
        assert fresh[npa] == shipped[npa]


def test_subcommand_wiring(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="sipguard")
    refresh.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["numbers", "refresh", "--from-nanpa", "r.csv", "--out", str(tmp_path / "o.csv")])
    assert args.func is refresh.run and args.from_nanpa == "r.csv"
    with pytest.raises(SystemExit):
        parser.parse_args(["numbers"])  # an action is required


def test_without_phonenumbers_the_refresh_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """phonenumbers is an optional extra (sipguard[numbers]): its absence is one clear line."""
    import sys

    from sipguard.cli import main

    monkeypatch.setitem(sys.modules, "phonenumbers", None)   # `import phonenumbers` raises ImportError
    assert main(["numbers", "refresh", "--out", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'sipguard[numbers]'" in err and "--from-nanpa" in err and "Traceback" not in err
    report = tmp_path / "r.csv"
    report.write_text(nanpa_report(full_report()))
    assert refresh.run(argparse.Namespace(from_nanpa=str(report), out=str(tmp_path / "n.csv"))) == 0
