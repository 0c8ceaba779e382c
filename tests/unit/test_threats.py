"""Threat lists (sipguard/threats.py): the file formats, matching trunks and signers, the
refusal of a bad file, and the facts trunk.threat / signer.threat in a decision."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from sipguard.cli.threats import load_threat_file
from sipguard.clock import ManualClock
from sipguard.config import Provider, Trunk
from sipguard.errors import ConfigError
from sipguard.pipeline import Pipeline
from sipguard.sip import parse
from sipguard.store.datasets import load_datasets
from sipguard.store.memory import MemoryStore
from sipguard.threats import ThreatIndex, normalise, normalise_name, parse_threats
from tests.unit.test_pipeline import invite, make_config

NOW = 1_800_000_000.0


def trunk(tid: str = "t1", sources: tuple[str, ...] = ("192.0.2.10",), **provider: Any) -> Trunk:
    return Trunk(tid, "foreign", tuple(ipaddress.ip_network(s) for s in sources), Provider(**provider))


def test_long_form_csv() -> None:
    entries, report = parse_threats("kind,value,ref,note\nname,Royal Tiger LLC,DA-24-388,designee\n"
                                    "frn,0034567890,DA-24-388,\nip,203.0.113.9/24,,\nspc,938k,,\n", "<t>", "c-cist")
    assert [(e.kind, e.value, e.line) for e in entries] == [
        ("name", "royal tiger", 2), ("frn", "0034567890", 3), ("ip", "203.0.113.0/24", 4), ("spc", "938K", 5)]
    assert entries[0].ref == "DA-24-388" and entries[0].note == "designee" and entries[0].source == "c-cist"
    assert (report.rows, report.imported, report.skipped) == (4, 4, [])


def test_wide_form_csv_gives_one_entry_per_identifier() -> None:
    entries, report = parse_threats("business_name,frn,ip,spc,ref\nRoyal Tiger,34567890,,,DA-24-388\n"
                                    "Other Co,,198.51.100.1,,X\n", "<t>", "c-cist")
    assert sorted((e.kind, e.value) for e in entries) == [
        ("frn", "0034567890"), ("ip", "198.51.100.1/32"), ("name", "other"), ("name", "royal tiger")]
    assert report.imported == 2


def test_json_list_and_entries_object() -> None:
    items = [{"kind": "spc", "value": "123A", "ref": "r"}, {"kind": "frn", "value": "1"}]
    for text in (json.dumps(items), json.dumps({"entries": items})):
        entries, _ = parse_threats(text, "<t>", "operator")
        assert [(e.kind, e.value, e.line) for e in entries] == [("spc", "123A", 1), ("frn", "0000000001", 2)]


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty file"),
    ("a,b\n1,2\n", "not a threat list"),
    ("kind,ref\nfrn,x\n", "`value` column"),
    ("{\"entries\": 5}", "list of {kind, value, ref, note}"),
    ("[1, 2", "not JSON"),
])
def test_files_that_are_not_threat_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_threats(text, "<t>", "operator")
    assert message in str(err.value)


def test_bad_rows_are_skipped_with_their_line() -> None:
    _, report = parse_threats("kind,value\nfrn,12345678901\nspc,TOOLONG\nip,300.1.1.1\nphone,1\nname,  ,\n"
                              "frn,1\n", "<t>", "operator")
    assert report.rows == 6 and report.imported == 1
    assert [line for line, _ in report.skipped] == [2, 3, 4, 5, 6]
    assert "kind 'phone' is not one of" in report.skipped[3][1]


def test_more_than_ten_percent_bad_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("kind,value\n" + "".join(f"frn,{i + 1}\n" for i in range(40)) + "frn,x\n" * 6)
    with pytest.raises(ConfigError) as err:
        load_threat_file(str(path), "operator")
    assert "6 of 46 rows are invalid" in str(err.value) and "kept" in str(err.value)
    entries, lines = load_threat_file(str(path), "operator", force=True)
    assert len(entries) == 40 and any("skipped 6" in line for line in lines)
    path.write_text("kind,value\n" + "".join(f"frn,{i + 1}\n" for i in range(60)) + "frn,x\n" * 5)
    assert len(load_threat_file(str(path), "operator")[0]) == 60     # 5 bad rows are tolerated


def test_name_normalisation() -> None:
    assert normalise_name("Royal Tiger, L.L.C.") == normalise_name("ROYAL TIGER LLC") == "royal tiger"
    assert normalise_name("The Acme Telecom Co., Inc.") == "acme telecom"
    assert normalise_name("Café Télécom GmbH") == "café télécom"
    assert normalise("name", "LLC") is None and normalise("frn", "12-345") == "0000012345"
    assert normalise("ip", "2001:db8::1/48") == "2001:db8::/48" and normalise("spc", "93 8K") is None


def test_trunk_and_signer_matching() -> None:
    index = ThreatIndex(parse_threats("kind,value\nname,Royal Tiger\nfrn,34567890\nip,203.0.113.0/24\n"
                                      "ip,2001:db8::/32\nspc,938K\n", "<t>", "operator")[0]
                        + parse_threats("kind,value\nfrn,34567890\n", "<t>", "c-cist")[0])
    assert index.trunk(trunk(name="Royal Tiger Inc.")).kind == "name"               # type: ignore[union-attr]
    assert index.trunk(trunk(frn="34567890")).source == "c-cist"                     # type: ignore[union-attr]
    assert index.trunk(trunk(sources=("203.0.113.200",))).value == "203.0.113.0/24"  # type: ignore[union-attr]
    assert index.trunk(trunk(sources=("203.0.0.0/16",))) is not None                 # overlaps, both ways
    assert index.trunk(trunk(sources=("2001:db8:5::1",))) is not None
    assert index.trunk(trunk(sources=("198.51.100.1",), name="Acme", frn="1")) is None
    assert index.trunk(None) is None
    assert index.signer("938k", None).kind == "spc"                                   # type: ignore[union-attr]
    assert index.signer("111A", "0034567890").source == "c-cist"                      # type: ignore[union-attr]
    assert index.signer("111A", None) is None
    assert ThreatIndex().trunk(trunk()) is None and ThreatIndex().signer("938K", None) is None


def test_memory_store_loads_both_sources_from_the_config_datasets(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("name,frn,ref\nRoyal Tiger,,DA-24-388\n")
    (tmp_path / "o.csv").write_text("kind,value\nspc,938K\n")

    async def run() -> MemoryStore:
        store = MemoryStore()
        reports = await load_datasets(store, {"c_cist": str(tmp_path / "c.csv"), "threats": str(tmp_path / "o.csv")})
        assert reports["c_cist"].imported == 1 and reports["threats"].imported == 1
        return store
    store = asyncio.run(run())
    assert sorted(e.source for e in store.threats.entries) == ["c-cist", "operator"]
    (tmp_path / "o.csv").write_text("kind,value\n" + "spc,x\n" * 8)

    async def bad() -> None:
        await load_datasets(store, {"threats": str(tmp_path / "o.csv")})
    with pytest.raises(ConfigError):
        asyncio.run(bad())
    assert len(store.threats) == 2                          # the lists in force stay


def test_trunk_threat_is_a_fact_a_policy_decides_on(tmp_path: Path) -> None:
    threats = tmp_path / "c-cist.csv"
    # the example config's trunk carrier-a: the FRN of its provider is on the C-CIST file here
    threats.write_text("kind,value,ref\nfrn,0012345678,DA-24-388\n")
    config = make_config(tmp_path, datasets={"c_cist": str(threats)})
    assert next(t for t in config.trunks if t.id == "carrier-a").provider.frn == "0012345678"
    (tmp_path / "policy.yaml").write_text(
        "version: 1\nrules:\n  - name: c-cist\n    when: {trunk.threat: c-cist}\n    action: reject\n"
        "    class: deterministic\n")

    async def run() -> Any:
        pipeline = await Pipeline.create(config, ManualClock(NOW))
        try:
            return await pipeline.decide(parse(invite()), ("192.0.2.10", 5060), "udp")
        finally:
            await pipeline.aclose()
    out = asyncio.run(run())
    assert out.facts.trunk_threat == "c-cist" and out.facts.signer_threat is None
    assert out.decision.action == "reject" and out.decision.rule == "c-cist"
    assert out.facts.spoof_us_cid_foreign_trunk is True      # unsigned US caller on a foreign trunk


def test_show_lists_the_entries_and_the_trunks_they_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sipguard.cli import main

    (tmp_path / "c.csv").write_text("kind,value,ref\nname,Carrier B S.A.,DA-24-388\n")
    config = make_config(tmp_path, datasets={"c_cist": str(tmp_path / "c.csv")})
    assert main(["threats", "show", "-c", config.path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["c-cist\tname\tcarrier b\tDA-24-388\t", "1 entries", "trunk carrier-b matches c-cist name carrier b (DA-24-388)"]
    assert main(["threats", "import", str(tmp_path / "c.csv"), "--source", "c-cist", "-c", config.path]) == 0
    assert "nothing was written" in capsys.readouterr().out           # memory store: validated only


def test_the_stored_copy_round_trips_and_garbage_reads_as_nothing() -> None:
    from sipguard.threats import entries_from_json, entries_to_json

    entries, _ = parse_threats("kind,value,ref,note\nname,Royal Tiger,DA-24-388,x\nip,203.0.113.0/24,,\n", "<t>",
                               "c-cist")
    assert entries_from_json(entries_to_json(entries), "c-cist") == entries
    assert entries_from_json("not json", "c-cist") == [] and entries_from_json("{}", "c-cist") == []
    mixed = json.dumps([["spc", "938K", "", "", 1], ["spc", "toolong", "", "", 2], ["what", "x", "", "", 3],
                        ["frn", 5, "", "", 4], "x", ["ip", "10.0.0.0/8", "", "", "5"]])
    assert [(e.kind, e.value) for e in entries_from_json(mixed, "operator")] == [("spc", "938K")]


def test_a_file_beyond_the_threat_bound_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sipguard.cli.threats as cli

    path = tmp_path / "big.csv"
    path.write_text("kind,value\n" + "frn,1\n" * 2000)          # 12 kB, over a 4 kB bound
    monkeypatch.setattr(cli, "MAX_THREAT_BYTES", 4096)
    with pytest.raises(ConfigError) as err:
        load_threat_file(str(path), "operator")
    assert "larger than" in str(err.value)
    for device in ("/dev/zero", "/dev/urandom"):
        with pytest.raises(ConfigError):
            load_threat_file(device, "operator")
