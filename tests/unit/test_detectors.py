"""Campaign and spoofing detectors (sipguard/detectors.py): the config, each stateless spoof
fact, the memory windows, and a policy decision taken on a campaign fact end to end."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipguard.clock import ManualClock
from sipguard.config import PipelineSettings, load_config
from sipguard.detectors import Burst, CampaignWindows, Detectors, Fanout, spoof_facts
from sipguard.errors import ConfigError
from sipguard.pipeline import Pipeline
from sipguard.sip import parse
from sipguard.store.base import LookupKeys
from sipguard.store.memory import MemoryStore
from sipguard.yamlconf import load
from tests.unit.test_pipeline import invite, make_config

NOW = 1_800_000_000.0


def detectors(tmp_path: Path, text: str) -> Detectors:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return Detectors.from_section(load(str(path)).section("analytics"))


# -- config --------------------------------------------------------------------------------

def test_config_reads_both_detectors(tmp_path: Path) -> None:
    cfg = detectors(tmp_path, "analytics:\n  campaign:\n    fanout: {window: 300, callees: 50}\n"
                              "    burst: {window: 60, calls: 100, prefix: 4}\n    max_keys: 5000\n")
    assert cfg == Detectors(Fanout(300.0, 50), Burst(60.0, 100, 4), 5000)
    assert cfg.active
    assert detectors(tmp_path, "analytics: {}\n") == Detectors() and not Detectors().active
    assert detectors(tmp_path, "analytics: {campaign: {burst: {window: 5, calls: 3}}}\n").burst == Burst(5.0, 3, 7)


@pytest.mark.parametrize(("text", "where", "message"), [
    ("analytics:\n  campaign:\n    fanout: {window: 0, callees: 50}\n", "3: analytics.campaign.fanout.window",
     "must be >= 1"),
    ("analytics:\n  campaign:\n    fanout: {window: 60, callees: 513}\n", "3: analytics.campaign.fanout.callees",
     "must be <= 512"),
    ("analytics:\n  campaign:\n    fanout: {window: 60}\n", "3: analytics.campaign.fanout.callees", "required"),
    ("analytics:\n  campaign:\n    burst: {window: 60, calls: 9, prefix: 16}\n",
     "3: analytics.campaign.burst.prefix", "must be <= 15"),
    ("analytics:\n  campaign:\n    fanuot: {window: 60}\n", "3: analytics.campaign.fanuot", "unknown key"),
    ("analytics:\n  score: {}\n", "2: analytics.score", "unknown key"),
])
def test_config_refuses_bad_values_on_their_line(tmp_path: Path, text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        detectors(tmp_path, text)
    assert where in str(err.value) and message in str(err.value), str(err.value)


def test_the_config_file_carries_the_detectors(tmp_path: Path) -> None:
    config = make_config(tmp_path, analytics={"campaign": {"fanout": {"window": 30, "callees": 3}}})
    assert config.detectors.fanout == Fanout(30.0, 3) and config.detectors.burst is None


# -- stateless spoof facts ---------------------------------------------------------------------

def spoof(caller: str | None = "12125550100", callee: str | None = "13035550100", us: bool = True,
          valid: bool = True, attest: str | None = None, passed: bool = False, identity: bool = False,
          foreign: bool = False, dno: bool | None = False) -> tuple[bool, bool, bool, bool | None]:
    return spoof_facts(caller, callee, us, valid, attest, passed, identity, foreign, dno)


def test_neighbor_same_npa_nxx_only() -> None:
    assert spoof("12125550100", "12125559999")[0] is True          # 212-555 both
    assert spoof("12125550100", "12125560100")[0] is False         # 212-555 vs 212-556
    assert spoof("12125550100", "13035550100")[0] is False
    assert spoof("12125550100", "12125550100")[:2] == (False, True)   # the same number is spoof.same
    assert spoof("442071838750", "442071838999")[0] is False       # not NANP: no NPA-NXX
    assert spoof(None, "12125559999")[0] is False


def test_same_caller_and_callee() -> None:
    assert spoof("12125550100", "12125550100")[1] is True
    assert spoof("442071838750", "442071838750")[1] is True
    assert spoof(None, None)[1] is False                           # two unknowns are not the same number
    assert spoof("12125550100", "12125550101")[1] is False


def test_us_caller_without_identity_on_a_foreign_trunk() -> None:
    assert spoof(foreign=True)[2] is True
    assert spoof(foreign=True, identity=True)[2] is False          # signed: verification judges it
    assert spoof(foreign=False)[2] is False                        # domestic trunk
    assert spoof(foreign=True, us=False)[2] is False               # a foreign caller ID on a foreign trunk


def test_a_attestation_on_a_bad_number() -> None:
    assert spoof(attest="A", passed=True, valid=False)[3] is True
    assert spoof(attest="A", passed=True, dno=True)[3] is True
    assert spoof(attest="A", passed=True)[3] is False
    assert spoof(attest="B", passed=True, valid=False)[3] is False
    assert spoof(attest="A", passed=False, valid=False)[3] is False   # a failed signature claims nothing
    assert spoof(attest="A", passed=True, dno=None)[3] is None        # store down: DNO unknown
    assert spoof(attest="A", passed=True, valid=False, dno=None)[3] is True


# -- windows in memory ----------------------------------------------------------------------

def test_fanout_flips_at_the_threshold_and_resets_after_the_window() -> None:
    w = CampaignWindows(Detectors(fanout=Fanout(60.0, 3)))
    caller = "12125550100"
    assert [w.fanout(caller, f"1303555010{i}", NOW + i) for i in range(3)] == [False, False, True]
    assert w.fanout(caller, "13035550100", NOW + 10) is True        # still in the window
    assert w.fanout("12125550199", "13035550100", NOW + 10) is False  # another caller: its own window
    assert w.fanout(caller, "13035550999", NOW + 60) is False        # the window closed: a new one
    assert w.fanout(None, "13035550100", NOW) is False and w.fanout(caller, None, NOW) is False


def test_fanout_counts_distinct_callees_only() -> None:
    w = CampaignWindows(Detectors(fanout=Fanout(60.0, 3)))
    assert [w.fanout("12125550100", "13035550100", NOW + i) for i in range(10)] == [False] * 10


def test_burst_counts_calls_per_prefix() -> None:
    w = CampaignWindows(Detectors(burst=Burst(10.0, 4, 7)))
    # four different callers, same first 7 digits (1 + 212 + 5): one prefix
    got = [w.burst(f"121255501{i:02d}", NOW + i) for i in range(4)]
    assert got == [False, False, False, True]
    assert w.burst("12135550100", NOW + 5) is False                  # 1213555: another prefix
    assert w.burst("12125550100", NOW + 10) is False                 # window over
    assert w.burst(None, NOW) is False and w.burst("anonymous", NOW) is False


def test_a_detector_that_is_off_answers_unknown() -> None:
    w = CampaignWindows(Detectors(fanout=Fanout(60.0, 3)))
    assert w.burst("12125550100", NOW) is None
    w2 = CampaignWindows(Detectors(burst=Burst(60.0, 3, 7)))
    assert w2.fanout("12125550100", "13035550100", NOW) is None


def test_keys_are_bounded_and_expired_windows_go_first() -> None:
    w = CampaignWindows(Detectors(fanout=Fanout(60.0, 5), burst=Burst(60.0, 5, 11), max_keys=100))
    for i in range(1000):
        w.fanout(f"1212555{i:04d}", "13035550100", NOW + i * 0.01)
        w.burst(f"1212555{i:04d}", NOW + i * 0.01)
    assert len(w._fanout) == 100 and len(w._burst) == 100
    assert min(start for start, _ in w._fanout.values()) == NOW + 900 * 0.01   # the newest 100 stayed
    w.fanout("19995550100", "13035550100", NOW + 1000)                # all others expired: dropped first
    assert len(w._fanout) == 1


def test_memory_per_key_is_what_the_readme_states() -> None:
    """README: at most 300 bytes per caller seen once, 700 per fanout key holding 50 callees,
    200 per burst prefix (measured here with tracemalloc: about 250, 645 and 180)."""
    def measure(callees: int, burst: bool = False) -> float:
        w = CampaignWindows(Detectors(fanout=Fanout(300.0, 50), burst=Burst(60.0, 100, 11), max_keys=100_000))
        targets = [f"1303{i:07d}" for i in range(callees)]
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            if burst:
                w.burst(f"1212{i:07d}", NOW)        # the key string is the call's own, kept by the window
            for target in targets:
                w.fanout(f"1212{i:07d}", target, NOW)
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return used / 2000
    one, full, burst = measure(1), measure(50), measure(0, burst=True)
    assert one < 300, one
    assert full < 700, full
    assert burst < 200, burst


def test_memory_store_gives_the_facts_in_lookups() -> None:
    async def run() -> list[Any]:
        store = MemoryStore((), Detectors(fanout=Fanout(60.0, 2), burst=Burst(60.0, 3, 7)))
        out = []
        for i in range(3):
            got = await store.lookup(LookupKeys("t1", None, None, "192.0.2.1", "+12125550100",
                                                f"+1303555010{i}", None), NOW + i)
            out.append((got.campaign_fanout, got.campaign_burst))
        return out
    assert asyncio.run(run()) == [(False, False), (True, False), (True, True)]


# -- end to end: a policy decision on a campaign fact ------------------------------------------

POLICY = """\
version: 1
default: {action: forward}
rules:
  - name: fanout
    when: {campaign.fanout: true}
    action: reject
    class: analytics
  - name: neighbor
    when: {spoof.neighbor: true, trunk.role: foreign}
    action: forward
    tag: {headers: {X-Spoof: neighbor}}
"""


def test_a_campaign_is_rejected_after_its_threshold_and_forwarded_again_after_the_window(tmp_path: Path) -> None:
    config = make_config(tmp_path, analytics={"campaign": {"fanout": {"window": 300, "callees": 5}}})
    (tmp_path / "policy.yaml").write_text(POLICY)
    clock = ManualClock(NOW)

    async def run() -> list[tuple[str | None, str | None]]:
        pipeline = await Pipeline.create(config, clock)
        out = []
        try:
            for i in range(7):                       # one caller, seven different callees
                callee = f"+1303623{1001 + i}"
                got = await pipeline.decide(parse(invite("+12127363100", callee)), ("192.0.2.10", 5060), "udp")
                out.append((got.decision.action, got.decision.rule))
                clock.advance(1.0)
            clock.advance(300.0)
            got = await pipeline.decide(parse(invite("+12127363100", "+13036231000")), ("192.0.2.10", 5060), "udp")
            out.append((got.decision.action, got.decision.rule))
            got = await pipeline.decide(parse(invite("+12127363100", "+12127369999")), ("192.0.2.10", 5060), "udp")
            out.append((got.decision.action, got.decision.rule))
        finally:
            await pipeline.aclose()
        return out

    got = asyncio.run(run())
    assert got[:4] == [("forward", None)] * 4
    assert got[4:7] == [("reject", "fanout")] * 3
    assert got[7] == ("forward", None)                        # a new window
    assert got[8] == ("forward", "neighbor")                   # 212-736 calling 212-736


def test_config_example_loads_with_analytics(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "config/sipguard.example.yaml").read_text())
    assert "analytics" in data, "config/sipguard.example.yaml shows the detectors"
    path = tmp_path / "x.yaml"
    data.pop("policy", None)
    data.pop("traceback", None)
    data.pop("shaken", None)
    data.pop("datasets", None)
    data.pop("http", None)
    path.write_text(yaml.safe_dump(data))
    assert load_config(str(path)).detectors.active


def test_a_rule_on_a_detector_that_is_off_is_a_config_problem(tmp_path: Path) -> None:
    from sipguard.config_check import check_config
    from sipguard.policy.names import check_names, config_names

    (tmp_path / "policy.yaml").write_text(
        "version: 1\nrules:\n  - name: a\n    when: {campaign.fanout: true}\n    action: reject\n"
        "  - name: b\n    when: {not: {campaign.burst: true}}\n    action: forward\n")
    config = tmp_path / "sipguard.yaml"
    config.write_text("policy: policy.yaml\nanalytics: {campaign: {fanout: {window: 60, callees: 5}}}\n")
    problems = [str(p) for p in check_config(str(config), NOW)]
    assert problems == [f"{tmp_path / 'policy.yaml'}:7: rules[1].when.not.campaign.burst: analytics.campaign.burst "
                        "is not in the config, so campaign.burst is always null and this condition never matches"]
    assert [p.line for p in check_names(str(tmp_path / "policy.yaml"), *config_names(str(config)))] == [7]
    config.write_text("policy: policy.yaml\nanalytics: {campaign: {fanout: {window: 60, callees: 5},"
                      " burst: {window: 60, calls: 9}}}\n")
    assert check_config(str(config), NOW) == []


def test_sighup_takes_new_thresholds(tmp_path: Path) -> None:
    first = make_config(tmp_path, analytics={"campaign": {"fanout": {"window": 300, "callees": 5}}})
    (tmp_path / "policy.yaml").write_text(POLICY)
    clock = ManualClock(NOW)

    async def run() -> list[bool | None]:
        pipeline = await Pipeline.create(first, clock)
        out = []
        try:
            async def one(i: int) -> None:
                got = await pipeline.decide(parse(invite("+12127363100", f"+1303623{1001 + i}")),
                                            ("192.0.2.10", 5060), "udp")
                out.append(got.facts.campaign_fanout)
            for i in range(2):
                await one(i)
            tighter = make_config(tmp_path, analytics={"campaign": {"fanout": {"window": 300, "callees": 2}}})
            pipeline.reconfigure(PipelineSettings.of(tighter))
            for i in range(2, 4):
                await one(i)
            off = make_config(tmp_path, analytics={})
            pipeline.reconfigure(PipelineSettings.of(off))   # no detector: the fact is unknown
            await one(5)
        finally:
            await pipeline.aclose()
        return out
    assert asyncio.run(run()) == [False, False, False, True, None]


def test_policy_eval_takes_the_detector_facts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from sipguard.cli import main

    (tmp_path / "p.yaml").write_text(POLICY)
    assert main(["policy", "eval", str(tmp_path / "p.yaml"), "campaign.fanout=true"]) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "fanout"
    assert main(["policy", "eval", str(tmp_path / "p.yaml"), "campaign.fanout=null", "spoof.neighbor=true",
                 "trunk.role=foreign"]) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "neighbor"


@pytest.mark.parametrize("number", ["+1\u00b2025550123", "1202555\u00b9123", "+\u0663\u0663\u0663"])
def test_a_number_with_non_ascii_digits_is_no_member_and_no_prefix(number: str) -> None:
    """str.isdigit takes superscripts (which int() refuses: ValueError) and other scripts'
    digits: a caller or callee with them is not counted, it does not raise."""
    from sipguard.detectors import burst_key, callee_member

    assert callee_member(number) is None
    assert burst_key(number, Burst(window=60.0, calls=10, prefix=4)) is None
