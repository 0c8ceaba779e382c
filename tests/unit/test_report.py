"""``sipguard report`` (issue 20): the summary of generated records has the expected counts,
hostile record text is escaped, and the HTML file is self-contained (nothing fetched)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml

from sipguard.clock import ManualClock
from sipguard.records import query
from sipguard.records.record import CallRecord, TracebackConfig
from sipguard.records.report import render
from sipguard.records.summary import NO_ATTEST, collect, summary
from sipguard.records.writer import open_records
from tests.e2e_helpers import cli
from tests.records_fixtures import HOSTILE, START, make_record
from tests.records_fixtures import report_day as day


def test_summary_counts_by_action_verstat_attestation_rule_upstream_and_hour() -> None:
    records = day()
    outside = [make_record(900, time=START - 1), make_record(901, time=START + 6 * 3600)]
    s = summary(records + outside, START, START + 6 * 3600)
    assert s.calls == 60
    assert s.actions == {"forward": 46, "reject": 14}
    assert s.statuses == {603: 12, 608: 2}
    assert s.verstats == {"No-TN-Validation": 40, "TN-Validation-Failed": 12, "TN-Validation-Passed": 6,
                          HOSTILE: 2}
    assert s.action_verstat[("reject", "TN-Validation-Failed")] == 12
    assert s.attest == {NO_ATTEST: 42, "A": 12, "B": 6}
    assert s.rules == {"dno": 12, HOSTILE: 2}
    assert [(u.trunk, u.calls, u.rejected, u.failed) for u in s.top_upstreams()] == [
        ("carrier-b", 12, 12, 12), (HOSTILE, 2, 2, 0), ("carrier-a", 46, 0, 0)]
    hours = s.hourly()
    assert [h for h, _ in hours] == [int(START) + k * 3600 for k in range(6)]
    assert [sum(per.values()) for _, per in hours] == [12, 24, 18, 4, 0, 2]
    assert hours[1][1] == {"forward": 12, "reject": 12}


def test_report_shows_the_counts_escapes_record_text_and_fetches_nothing() -> None:
    page = render(summary(day(), START, START + 6 * 3600), title="daily <b>", generated=START + 6 * 3600)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    text = re.sub(r"<[^>]+>", " ", page)
    assert re.search(r"\b60\s+calls\b", text) and re.search(r"\b14\s+rejected\b", text)
    assert "dno" in text and "12 (20.0 %)" in text            # the rule's bar: 12 of 60 calls
    assert "carrier-b" in text and "TN-Validation-Failed" in text
    # hostile text: never markup, only its escaped form (quotes included)
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)" in page
    assert "daily &lt;b&gt;" in page
    # self-contained: no script, no external reference of any kind, in any real tag or the style
    tags = re.findall(r"<[A-Za-z!][^>]*>", page)
    assert {re.match(r"<!?(\w+)", t).group(1).lower() for t in tags} <= {  # type: ignore[union-attr]
        "doctype", "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "div", "b", "span",
        "svg", "g", "rect", "line", "text", "table", "tr", "th", "td"}
    assert not [t for t in tags if re.search(r"\b(?:src|href|action)\s*=|https?:|//", t, re.I)]
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    assert not re.search(r"@import|url\(", style)
    assert "default-src 'none'" in page
    # the charts are ours, inline
    assert page.count("<svg") >= 5


def test_report_of_an_empty_stretch() -> None:
    page = render(summary([], START, START + 86400))
    assert "none" in page and page.count("<g><title>") == 24       # 24 empty hours, drawn


def cfg_for(tmp_path: Path) -> TracebackConfig:
    return TracebackConfig(path=str(tmp_path / "tb.db"), spool=str(tmp_path / "spool"))


def write(cfg: TracebackConfig, records: list[CallRecord]) -> None:
    async def go() -> None:
        writer = open_records("memory", cfg, clock=ManualClock(START))
        await writer.start()
        for r in records:
            writer.submit(r)
        await writer.aclose()
    asyncio.run(go())


@pytest.mark.parametrize("page", [7, 1000])
def test_collect_pages_through_the_store_without_losing_or_doubling(tmp_path: Path, page: int) -> None:
    cfg = cfg_for(tmp_path)
    records = day()
    # five calls at one instant, across a page boundary (pages of 7)
    records += [make_record(500 + i, time=START + 4 * 3600) for i in range(5)]
    write(cfg, records)
    s = asyncio.run(collect("memory", cfg, START, START + 6 * 3600, page=page))
    assert s.calls == 65 and s.actions["forward"] == 51
    assert s == summary(records, START, START + 6 * 3600)


def test_collect_refuses_when_one_instant_holds_more_than_a_page(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    write(cfg, [make_record(i, time=START) for i in range(5)])
    with pytest.raises(query.QueryError, match="more than 3 records at"):
        asyncio.run(collect("memory", cfg, START, START + 60, page=3))


def test_the_cli_writes_the_file(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    write(cfg, day())
    config = tmp_path / "sipguard.yaml"
    config.write_text(yaml.safe_dump({"mode": "proxy", "next_hop": "sip:127.0.0.1:5070", "store": "memory",
                                      "traceback": {"path": cfg.path, "spool": cfg.spool}}))
    out = tmp_path / "report.html"
    done = cli("report", "-c", str(config), "--since", "6h", "--until", query.iso_utc(START + 6 * 3600) or "",
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "60 calls" in done.stderr
    page = out.read_text()
    assert "carrier-b" in page and "<script" not in page
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report-")]   # no temporary left
    bad = cli("report", "-c", str(config), "--since", "yesterday-ish", "--out", str(out))
    assert bad.returncode == 1 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    late = cli("report", "-c", str(config), "--since", "3000d", "--out", str(out))
    assert late.returncode == 1 and "at most" in late.stderr
