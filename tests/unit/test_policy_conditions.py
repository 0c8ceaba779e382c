"""Every condition form, table-driven: a one-rule policy, facts in, matched or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard.policy.facts import Facts
from tests.policy_fixtures import one_rule

F = Facts
CASES: list[tuple[str, str, Facts, bool]] = [
    # equality
    ("enum eq", "{verstat: TN-Validation-Failed}", F(verstat="TN-Validation-Failed"), True),
    ("enum eq miss", "{verstat: TN-Validation-Failed}", F(verstat="TN-Validation-Passed"), False),
    ("bool true", "{caller.us: true}", F(caller_us=True), True),
    ("bool true miss", "{caller.us: true}", F(caller_us=False), False),
    ("bool false", "{caller.valid: false}", F(caller_valid=False), True),
    ("text eq", "{trunk: carrier-a}", F(trunk="carrier-a"), True),
    ("text eq none", "{trunk: carrier-a}", F(trunk=None), False),
    ("digits int", "{caller: 12125551234}", F(caller="12125551234"), True),
    ("digits plus", "{caller: '+12125551234'}", F(caller="12125551234"), True),
    ("null asks for no value", "{attest: null}", F(attest=None), True),
    ("null miss", "{attest: null}", F(attest="A"), False),
    # any-of
    ("any-of", "{trunk.rmd: [absent, removed]}", F(trunk_rmd="removed"), True),
    ("any-of miss", "{trunk.rmd: [absent, removed]}", F(trunk_rmd="listed"), False),
    ("any-of with null", "{attest: [C, null]}", F(attest=None), True),
    ("in", "{attest: {in: [A, B]}}", F(attest="B"), True),
    ("in miss", "{attest: {in: [A, B]}}", F(attest="C"), False),
    # list facts: contains
    ("list eq contains", "{limited: per_caller}", F(limited=("per_trunk", "per_caller")), True),
    ("list eq empty", "{limited: per_caller}", F(limited=()), False),
    ("list any-of", "{limited: [per_trunk, x]}", F(limited=("per_trunk",)), True),
    ("reasons contains", "{reasons: cert-expired}", F(reasons=("bad-signature", "cert-expired")), True),
    ("reasons prefix", "{reasons: {prefix: cert-}}", F(reasons=("cert-revoked",)), True),
    ("reasons prefix miss", "{reasons: {prefix: cert-}}", F(reasons=("stale-iat",)), False),
    ("reasons matches", "{reasons: {matches: '-iat$'}}", F(reasons=("future-iat",)), True),
    ("list not", "{limited: {not: per_caller}}", F(limited=("per_trunk",)), True),
    ("list not miss", "{limited: {not: [per_caller]}}", F(limited=("per_caller",)), False),
    # order
    ("gte lte in range", "{caller: {gte: '12125550000', lte: '12125559999'}}", F(caller="12125550100"), True),
    ("gte lte out", "{caller: {gte: '12125550000', lte: '12125559999'}}", F(caller="12125560000"), False),
    ("gt", "{callee: {gt: 18000000000}}", F(callee="18005550100"), True),
    ("gt equal", "{callee: {gt: 18005550100}}", F(callee="18005550100"), False),
    ("lt", "{attest: {lt: C}}", F(attest="A"), True),
    ("lt none", "{attest: {lt: C}}", F(attest=None), False),
    # not operator: None never matches
    ("not", "{attest: {not: C}}", F(attest="A"), True),
    ("not miss", "{attest: {not: C}}", F(attest="C"), False),
    ("not none", "{attest: {not: C}}", F(attest=None), False),
    ("not list", "{trunk.rmd: {not: [absent, removed]}}", F(trunk_rmd="listed"), True),
    ("not null", "{notice: {not: null}}", F(notice="EB-1"), True),
    ("not null miss", "{notice: {not: null}}", F(notice=None), False),
    ("not bool", "{caller.us: {not: true}}", F(caller_us=False), True),
    # prefix / matches
    ("prefix", "{caller: {prefix: '1212'}}", F(caller="12125551234"), True),
    ("prefix plus", "{caller: {prefix: '+1212'}}", F(caller="12125551234"), True),
    ("prefix list", "{callee: {prefix: [1800, 1888]}}", F(callee="18885550100"), True),
    ("prefix miss", "{caller: {prefix: '1212'}}", F(caller="13125551234"), False),
    ("prefix none", "{caller: {prefix: '1212'}}", F(caller=None), False),
    ("matches", "{caller: {matches: '^1(800|888)'}}", F(caller="18885550100"), True),
    ("matches search", "{trunk: {matches: 'carrier'}}", F(trunk="x-carrier-b"), True),
    ("matches miss", "{caller: {matches: '^1(800|888)'}}", F(caller="12125551234"), False),
    ("matches none", "{caller: {matches: '.*'}}", F(caller=None), False),
    ("ops anded", "{caller: {prefix: '1', not: '12125551234'}}", F(caller="12125551234"), False),
    # ip
    ("ip in cidr", "{source.ip: 198.51.100.0/24}", F(source_ip="198.51.100.7"), True),
    ("ip out", "{source.ip: 198.51.100.0/24}", F(source_ip="198.51.101.7"), False),
    ("ip exact", "{source.ip: '2001:db8::1'}", F(source_ip="2001:db8::1"), True),
    ("ip v6 vs v4 net", "{source.ip: 198.51.100.0/24}", F(source_ip="2001:db8::1"), False),
    ("ip none", "{source.ip: 198.51.100.0/24}", F(source_ip=None), False),
    ("ip malformed fact", "{source.ip: 198.51.100.0/24}", F(source_ip="nonsense"), False),
    ("ip any-of", "{source.ip: [192.0.2.1, 198.51.100.0/24]}", F(source_ip="192.0.2.1"), True),
    ("ip not", "{source.ip: {not: 198.51.100.0/24}}", F(source_ip="192.0.2.1"), True),
    ("ip not none", "{source.ip: {not: 198.51.100.0/24}}", F(source_ip=None), False),
    # AND, nesting
    ("and", "{trunk.role: foreign, caller.us: true}", F(trunk_role="foreign", caller_us=True), True),
    ("and miss", "{trunk.role: foreign, caller.us: true}", F(trunk_role="foreign"), False),
    ("any", "{any: [{caller.dno: true}, {list: block}]}", F(list="block"), True),
    ("any miss", "{any: [{caller.dno: true}, {list: block}]}", F(list="allow"), False),
    ("all", "{all: [{caller.dno: true}, {list: block}]}", F(caller_dno=True, list="block"), True),
    ("all miss", "{all: [{caller.dno: true}, {list: block}]}", F(caller_dno=True), False),
    ("not key", "{not: {attest: C}}", F(attest=None), True),
    ("not key miss", "{not: {attest: C}}", F(attest="C"), False),
    ("nested", "{trunk.role: foreign, any: [{attest: [A, B]}, {not: {verstat: TN-Validation-Passed}}]}",
     F(trunk_role="foreign", attest="C", verstat="No-TN-Validation"), True),
    ("nested miss", "{trunk.role: foreign, any: [{attest: [A, B]}, {not: {verstat: TN-Validation-Passed}}]}",
     F(trunk_role="foreign", attest="C", verstat="TN-Validation-Passed"), False),
    ("four keys", "{trunk.role: foreign, caller.us: true, caller.valid: true, store.degraded: false}",
     F(trunk_role="foreign", caller_us=True, caller_valid=True), True),
    ("four keys miss", "{trunk.role: foreign, caller.us: true, caller.valid: true, store.degraded: false}",
     F(trunk_role="foreign", caller_us=True, caller_valid=True, store_degraded=True), False),
    ("empty when matches all", "{}", F(), True),
]


@pytest.mark.parametrize(("when", "facts", "matches"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_condition(tmp_path: Path, when: str, facts: Facts, matches: bool) -> None:
    decision = one_rule(tmp_path, when).evaluate(facts)
    assert (decision.rule == "hit") is matches
