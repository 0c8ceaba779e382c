"""Know your upstream: the measures' definitions, their folding, the trunk.score formula, the
report window, the record fields they rest on, and the score as a policy fact."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipguard.clock import ManualClock
from sipguard.pipeline import Pipeline
from sipguard.policy.facts import EXTRA, IN_RECORD, Facts, extra_facts
from sipguard.records import measures
from sipguard.records.measures import Measures, UpstreamsConfig, fold, parse_duration, score
from sipguard.records.query import BadParameter, iso_utc
from sipguard.records.record import ROW_FIELDS, CallRecord, caller_check, from_row, spc_owner, to_row
from sipguard.records.upstreams import ScoreRefresher, window
from sipguard.sip import parse
from tests.records_fixtures import make_record
from tests.unit.test_pipeline import NOW, invite, make_config

PASSED, FAILED, NONE = "TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation"


def row(key: str = "t", attest: str | None = None, verstat: str = NONE, check: str | None = "valid",
        owner: str | None = None, rmd: str | None = "listed", impl: str | None = "complete", n: int = 1,
        last: float = 0.0) -> measures.Row:
    return (key, attest, verstat, check, owner, rmd, impl, n, last)


# -- record fields --------------------------------------------------------------------------

@pytest.mark.parametrize(("dno", "valid", "reason", "expected"), [
    (True, True, None, "dno"), (True, False, "anonymous", "dno"), (False, False, "anonymous", "withheld"),
    (False, False, "no-number", "withheld"), (False, False, "unassigned-npa", "unallocated"),
    (False, False, "reserved-npa", "unallocated"), (False, False, "fictional", "unallocated"),
    (False, False, "invalid-nxx", "invalid"), (False, False, "wrong-length", "invalid"), (False, True, None, "valid"),
])
def test_caller_check_classes_in_precedence(dno: bool, valid: bool, reason: str | None, expected: str) -> None:
    assert caller_check(dno, valid, reason) == expected


def test_spc_owner_compares_frns_without_leading_zeros() -> None:
    assert spc_owner(None, "0012345678", "0012345678") is None
    assert spc_owner("123A", "12345678", "0012345678") == "own"
    assert spc_owner("123A", "0099999999", "0012345678") == "other"
    assert spc_owner("123A", None, "0012345678") == "unknown"
    assert spc_owner("123A", "0012345678", None) == "unknown"


def test_version_3_rows_round_trip_and_version_2_rows_read_without_the_new_fields() -> None:
    record = make_record(1, caller_check="dno", spc_owner="other", trunk_rmd="listed",
                         trunk_implementation="complete", facts={"caller_dno": True, "limited": ["per_caller"]})
    assert from_row(to_row(record)) == record
    v2 = json.dumps([2, *(getattr(record, name) for name in ROW_FIELDS[2])])
    old = from_row(v2)
    assert (old.caller_check, old.spc_owner, old.trunk_rmd, old.facts) == (None, None, None, None)
    with pytest.raises(ValueError, match="facts"):
        from_row(json.dumps([3, *(getattr(record, name) for name in ROW_FIELDS[3][:-1]), [1, 2]]))


def test_every_fact_is_either_a_record_field_or_in_the_record_facts() -> None:
    from dataclasses import fields

    from sipguard.records.record import FIELDS
    names = {f.name for f in fields(Facts)}
    assert set(IN_RECORD) | {n for n, _ in EXTRA} == names
    assert set(IN_RECORD.values()) <= set(FIELDS)
    assert extra_facts(Facts()) == {}
    assert extra_facts(Facts(caller_dno=True, limited=("x",), trunk_score=7)) == {
        "caller_dno": True, "limited": ("x",), "trunk_score": 7}


def test_a_decision_record_holds_the_analytics_fields_and_its_facts(tmp_path: Path) -> None:
    async def run() -> Any:
        pipeline = await Pipeline.create(make_config(tmp_path), ManualClock(NOW))
        try:
            return await pipeline.decide(parse(invite(caller="+18002223333")), ("192.0.2.10", 5060), "udp")
        finally:
            await pipeline.aclose()
    record = CallRecord.of(asyncio.run(run()), 603, None, "test")
    assert record.caller_check == "dno" and record.spc_owner is None
    assert record.trunk_rmd == "listed" and record.trunk_implementation is not None
    assert record.facts is not None and record.facts["caller_dno"] is True
    assert from_row(to_row(record)).facts == json.loads(json.dumps(record.facts))


# -- the measures ---------------------------------------------------------------------------

def test_definitions_on_a_known_mix() -> None:
    rows = [row(attest="A", verstat=PASSED, n=50), row(attest="A", verstat=PASSED, check="dno", n=5),
            row(attest="A", verstat=PASSED, check="unallocated", n=3, owner="other"),
            row(attest="B", verstat=PASSED, check="invalid", n=2, owner="own"),
            row(verstat=FAILED, n=10), row(check="withheld", n=20), row(check=None, n=10)]
    m = fold(rows)["t"]
    assert m.calls == 100
    assert m.attest == {"A": 58, "B": 2, "C": 0, "none": 40}
    assert m.verdict == {"verified": 60, "failed": 10, "unsigned": 30}
    assert (m.check_total("dno"), m.check_total("unallocated"), m.check_total("invalid")) == (5, 3, 2)
    assert m.checked == 90 and m.a_bad == 8
    assert m.owner == {"other": 3, "own": 2} and m.other_spc_complete == 3
    out = m.to_json("trunk", 50)
    assert out["trunk"] == "t" and out["dno_share"] == round(5 / 90, 4) and out["failed_share"] == 0.1
    assert out["callers_by_attest"]["A"]["dno"] == 5 and "C" not in out["callers_by_attest"]
    shares = m.shares()
    penalty = 0.1 + 0.25 * 0.3 + 2 / 90 + 3 / 90 + 2 * 5 / 90 + 2 * 8 / 90 + 3 / 100
    assert score(m, 50) == round(100 * (1 - penalty)) == out["score"]
    assert shares["a_bad"] == 8 / 90


def test_other_spc_counts_only_while_the_filing_claims_complete() -> None:
    m = fold([row(owner="other", impl="partial", n=4), row(owner="other", impl="complete", n=1),
              row(owner="own", impl="complete", n=5)])["t"]
    assert m.owner["other"] == 5 and m.other_spc_complete == 1


def test_rmd_status_is_the_one_the_last_call_saw() -> None:
    m = fold([row(rmd="listed", last=10.0, n=7), row(rmd="removed", impl="none", last=20.0, n=2),
              row(rmd="listed", last=15.0)])["t"]
    assert (m.rmd, m.implementation) == ("removed", "none") and m.rmd_seen == {"listed": 8, "removed": 2}


def test_score_bounds_and_minimum_calls() -> None:
    assert score(fold([row(n=49)])["t"], 50) is None
    assert score(fold([row(attest="B", verstat=PASSED, n=50)])["t"], 50) == 100
    assert score(fold([row(n=50)])["t"], 50) == 75          # unsigned weighs 0.25
    assert score(fold([row(attest="A", verstat=PASSED, check="dno", n=50)])["t"], 1) == 0
    assert score(Measures("empty"), 1) is None


ROWS = st.lists(st.tuples(st.sampled_from(["t1", "t2"]), st.sampled_from([None, "A", "B", "C", "X"]),
                          st.sampled_from([PASSED, FAILED, NONE, None]),
                          st.sampled_from([None, "valid", "withheld", "invalid", "unallocated", "dno"]),
                          st.sampled_from([None, "own", "other", "unknown"]),
                          st.sampled_from([None, "listed", "removed"]),
                          st.sampled_from([None, "complete", "partial"]), st.just(1),
                          st.floats(0, 1e6)), max_size=60)


def test_calls_at_the_same_instant_give_one_rmd_status_whatever_their_order() -> None:
    """Found by CI: two calls at one instant, one without an RMD status, one listed; a GROUP BY
    returns rows in any order, so the status the window reports must not depend on it."""
    rows: list[measures.Row] = [
        ("t1", None, "TN-Validation-Passed", None, None, None, "complete", 1, 1.0),
        ("t1", "A", "TN-Validation-Failed", None, None, "listed", "complete", 1, 1.0),
        ("t1", "A", "TN-Validation-Passed", None, None, "listed", None, 1, 0.5),
    ]
    seen = {fold(order)["t1"].to_json("trunk", 1)["rmd"] for order in (rows, rows[::-1], rows[1:] + rows[:1])}
    assert seen == {"listed"}


@given(ROWS)
def test_grouped_rows_fold_like_one_row_per_record(records: list[measures.Row]) -> None:
    """What a GROUP BY returns folds to what a scan of the same records folds to."""
    groups: Counter[tuple[Any, ...]] = Counter()
    last: dict[tuple[Any, ...], float] = {}
    for r in records:
        groups[r[:7]] += 1
        last[r[:7]] = max(last.get(r[:7], 0.0), r[8])
    grouped = fold([(*k, n, last[k]) for k, n in groups.items()])
    single = fold(records)
    assert {k: m.to_json("trunk", 1) for k, m in grouped.items()} == {
        k: m.to_json("trunk", 1) for k, m in single.items()}


@given(ROWS, st.sampled_from(["dno", "invalid", "unallocated"]), st.sampled_from(["A", None]))
def test_one_more_call_moves_the_score_by_at_most_its_weight(records: list[measures.Row], check: str,
                                                            attest: str | None) -> None:
    """The score is bounded and smooth: one call more changes every share by at most 1/n, so
    the score by at most 100 * (sum of weights) / n (+1 for rounding); a bad caller on a trunk
    of otherwise clean, verified calls lowers it."""
    base = fold([("t", *r[1:]) for r in records] + [row(n=1)])["t"]
    worse = fold([("t", *r[1:]) for r in records] + [row(n=1), row(attest=attest, check=check)])["t"]
    before, after = score(base, 1), score(worse, 1)
    assert before is not None and after is not None and 0 <= after <= 100
    assert abs(after - before) <= 100 * sum(measures.WEIGHTS.values()) / base.calls + 1
    clean = [row(attest="A", verstat=PASSED)] * max(1, len(records))
    assert score(fold(clean + [row(attest=attest, verstat=PASSED, check=check)])["t"], 1) < score(fold(clean)["t"], 1)


# -- the window of a report -------------------------------------------------------------------

def test_window_durations_times_and_bounds() -> None:
    now = 1_800_000_000.0
    assert parse_duration("7d") == 7 * 86400 and parse_duration("90m") == 5400 and parse_duration("x") is None
    w = window({}, now, 548)
    assert (w.since, w.until, w.n) == (now - 7 * 86400, now, 100)
    w = window({"since": "2027-01-14T00:00:00Z", "until": "2027-01-15T00:00:00Z", "n": "5"}, now, 548)
    assert w.until - w.since == 86400 and w.n == 5


@pytest.mark.parametrize(("params", "name", "text"), [
    ({"since": "600d"}, "since", "retention_days"), ({"since": "yesterday"}, "since", "duration"),
    ({"since": "1d", "until": "nan"}, "until", "expected"), ({"n": "0"}, "n", "whole number"),
    ({"n": "1001"}, "n", "whole number"), ({"limit": "3"}, "limit", "unknown parameter"),
    ({"since": "2027-02-01T00:00:00Z"}, "since", "after until"),
])
def test_window_refuses_what_it_cannot_use(params: dict[str, str], name: str, text: str) -> None:
    with pytest.raises(BadParameter, match=text) as exc:
        window(params, 1_800_000_000.0, 548)
    assert exc.value.name == name


def test_upstreams_config_section(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, upstreams={"score_interval": 30, "score_window": 600, "score_min_calls": 5})
    assert cfg.upstreams == UpstreamsConfig(30.0, 600.0, 5)
    assert make_config(tmp_path).upstreams == UpstreamsConfig()
    from sipguard.errors import ConfigError
    with pytest.raises(ConfigError, match="score_window"):
        make_config(tmp_path, upstreams={"score_window": 1})


# -- trunk.score as a policy fact -----------------------------------------------------------

def test_the_score_refreshed_from_records_decides_in_the_policy(tmp_path: Path) -> None:
    """Generated records make carrier-a's score low; after a refresh, a rule on trunk.score
    rejects its next call, with no store round trip in the decision (a dict lookup)."""
    config = make_config(tmp_path, upstreams={"score_min_calls": 10})
    (tmp_path / "policy.yaml").write_text("version: 1\ndefault: {action: forward}\nrules:\n"
                                          "  - name: low-score\n    when: {trunk.score: {lt: 60}}\n"
                                          "    action: reject\n    status: 403\n")

    async def scenario() -> tuple[Any, Any, dict[str, int]]:
        from sipguard.records.sqlite import SqliteRecords
        db = SqliteRecords(config.traceback.path)
        good = [make_record(i, time=NOW - 100 + i * 0.1, trunk="carrier-b", caller_check="valid") for i in range(40)]
        bad = [make_record(i, time=NOW - 100 + i * 0.1, attest="A", verstat=PASSED, caller_check="dno")
               for i in range(40, 60)]
        db.write([("w", n, r) for n, r in enumerate(good + bad)])
        db.close()
        pipeline = await Pipeline.create(config, ManualClock(NOW))
        try:
            before = await pipeline.decide(parse(invite()), ("192.0.2.10", 5060), "udp")
            refresher = ScoreRefresher("memory", config.traceback, config.upstreams,
                                       lambda table: setattr(pipeline, "scores", table), clock=lambda: NOW)
            table = await refresher.refresh()
            after = await pipeline.decide(parse(invite()), ("192.0.2.10", 5060), "udp")
        finally:
            await pipeline.aclose()
        return before, after, table

    before, after, table = asyncio.run(scenario())
    assert table == {"carrier-a": 0, "carrier-b": 75}
    assert before.facts.trunk_score is None and before.decision.action == "forward"
    assert after.facts.trunk_score == 0 and after.decision.rule == "low-score" and after.decision.status == 403
    assert CallRecord.of(after, 403, None, "t").facts["trunk_score"] == 0


def test_a_score_rule_compares_numbers_and_refuses_text(tmp_path: Path) -> None:
    from sipguard.policy.loader import check_policy, load_policy
    from sipguard.policy.model import Redress
    good = tmp_path / "p.yaml"
    good.write_text("version: 1\ndefault: {action: forward}\nrules:\n  - name: r\n"
                    "    when: {trunk.score: {lt: 9}}\n    action: reject\n    status: 403\n")
    policy = load_policy(str(good), Redress(url="https://x.example"))
    assert policy.evaluate(Facts(trunk_score=8)).action == "reject"
    assert policy.evaluate(Facts(trunk_score=10)).action == "forward"     # 10 > 9 as numbers, not text
    assert policy.evaluate(Facts(trunk_score=None)).action == "forward"
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndefault: {action: forward}\nrules:\n  - name: r\n"
                   "    when: {trunk.score: {lt: \"9\"}}\n    action: reject\n    status: 403\n")
    assert any("whole number" in p.message for p in check_policy(str(bad), Redress(url="https://x.example")))
    bad.write_text("version: 1\ndefault: {action: forward}\nrules:\n  - name: r\n"
                   "    when: {trunk.score: {prefix: \"9\"}}\n    action: reject\n    status: 403\n")
    assert any("does not apply" in p.message for p in check_policy(str(bad), Redress(url="https://x.example")))


def test_series_gives_each_trunk_its_measures_per_bucket(tmp_path: Path) -> None:
    """The console's plots over time (records/upstreams.series): one value per bucket and trunk,
    the buckets in time order ending now, gaps (no call) as None, trunks by calls, bounded."""
    from sipguard.records.sqlite import SqliteRecords
    from sipguard.records.upstreams import MAX_BUCKETS, series

    config = make_config(tmp_path)
    now = NOW
    db = SqliteRecords(config.traceback.path)
    rows = [make_record(i, time=now - 3 * 3600 + 60 + i, trunk="carrier-a", caller_check="valid") for i in range(4)]
    rows += [make_record(10 + i, time=now - 1800 + i, trunk="carrier-a", attest="A", verstat=PASSED,
                         caller_check="dno") for i in range(2)]
    rows += [make_record(20, time=now - 1800, trunk="carrier-b", caller_check="valid")]
    rows += [make_record(30, time=now - 5 * 3600, trunk="carrier-c", caller_check="valid")]  # before the span
    db.write([("w", n, r) for n, r in enumerate(rows)])
    db.close()
    doc = asyncio.run(series("memory", config.traceback, now, 3, 3600.0, min_calls=1))
    assert len(doc["starts"]) == 3 and doc["starts"] == sorted(doc["starts"])
    # buckets of whole minutes, the last ending with the minute under way
    minute = int(now // 60)
    assert doc["starts"] == [iso_utc((minute + 1 - 60 * (3 - i)) * 60.0) for i in range(3)]
    assert doc["width"] == 3600.0 and doc["until"] == iso_utc(now)
    assert list(doc["trunks"]) == ["carrier-a", "carrier-b"]           # most calls first; carrier-c is older
    a = doc["trunks"]["carrier-a"]
    assert a["calls"] == [4, 0, 2]
    assert a["unsigned"] == [1.0, None, 0.0] and a["dno"] == [0.0, None, 1.0]
    assert a["score"][1] is None and a["score"][0] is not None
    assert doc["trunks"]["carrier-b"]["calls"] == [0, 0, 1]
    db = SqliteRecords(config.traceback.path)
    db.write([("w", 99, make_record(40, time=now, trunk="carrier-b", caller_check="valid"))])   # just now
    db.close()
    later = asyncio.run(series("memory", config.traceback, now, 3, 3600.0, min_calls=1))
    assert later["trunks"]["carrier-b"]["calls"] == [0, 0, 2]
    one = asyncio.run(series("memory", config.traceback, now, 3, 3600.0, min_calls=1, n=1))
    assert list(one["trunks"]) == ["carrier-a"]
    with pytest.raises(BadParameter):
        asyncio.run(series("memory", config.traceback, now, MAX_BUCKETS + 1, 3600.0, min_calls=1))


def test_the_refresh_window_is_the_whole_minutes_it_touches() -> None:
    from sipguard.records.upstreams import whole_minutes
    assert whole_minutes(10_000.0 - 3600, 10_000.0) == (106, 167)     # 6,400 s is in minute 106, 10,000 in 166
    assert whole_minutes(9_960.0 - 60, 9_960.0) == (165, 167)         # on boundaries: both minutes they start
    assert whole_minutes(100.0, 100.0) == (1, 2)                      # one instant: its minute


def test_the_score_refresh_reads_the_minutes_of_its_window_and_the_one_under_way(tmp_path: Path) -> None:
    """The refresh reads the whole minutes its window touches, the minute under way included
    (its roll-up holds the records so far), so a call counts at once and the window's oldest
    minute counts whole."""
    from sipguard.records.sqlite import SqliteRecords
    from sipguard.records.upstreams import measures as read
    config = make_config(tmp_path)
    minute = 28_333_334
    db = SqliteRecords(config.traceback.path)
    db.write([("w", 1, make_record(0, time=(minute - 60) * 60.0, trunk="carrier-a")),        # since's minute
              ("w", 2, make_record(0, time=(minute - 61) * 60.0 + 59.9, trunk="carrier-a")),  # the minute before
              ("w", 3, make_record(0, time=minute * 60.0 - 0.5, trunk="carrier-a"))])
    now = minute * 60.0 + 40

    def scores(at: float) -> dict[str, int]:
        refresher = ScoreRefresher("memory", config.traceback, UpstreamsConfig(score_window=3600, score_min_calls=12),
                                   lambda table: None, clock=lambda: at)
        return asyncio.run(refresher.refresh())

    assert scores(now) == {}                          # 2 calls
    db.write([("w", 4 + i, make_record(0, time=minute * 60.0 + i, trunk="carrier-a")) for i in range(10)])
    assert set(scores(now)) == {"carrier-a"}          # 12: the minute under way counts at once
    assert scores(now + 60) == {}                     # 11: since's minute has left the window
    db.close()
    trunks, _ = asyncio.run(read("memory", config.traceback, now - 3600, now, signers=False))
    assert trunks["carrier-a"].calls == 12
