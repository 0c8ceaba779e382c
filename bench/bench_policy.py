"""Policy evaluation cost: a 50-rule policy on realistic gateway facts.

    .venv/bin/python bench/bench_policy.py

The policy mixes every condition form (equality, any-of, list contains, prefix, regex,
ranges, source.ip networks, nested any/all/not); the call matches rule 49 of 50, so
nearly every rule is tried. Also measured: a call that matches nothing (default) and
one that matches the first rule. Target (issue 6): < 20 us per evaluation.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipguard.policy import Redress, load_policy  # noqa: E402
from sipguard.policy.facts import Facts  # noqa: E402

TEMPLATES = [
    "{{trunk: carrier-{i}, caller.dno: true}}",
    "{{trunk.role: foreign, caller.us: true, trunk.rmd: [absent, removed], trunk.frn: '00{i}'}}",
    "{{limited: [burst-{i}]}}",
    "{{caller: {{prefix: ['1{i:03d}', '1{i:03d}9']}}, attest: [A, B]}}",
    "{{callee: {{matches: '^1(800|888){i:02d}'}}}}",
    "{{caller: {{gte: '1{i:03d}0000000', lte: '1{i:03d}9999999'}}, verstat: TN-Validation-Failed}}",
    "{{source.ip: 203.0.{i}.0/24, caller.valid: false}}",
    "{{any: [{{signer.spc: 'SPC{i}'}}, {{all: [{{trunk: x{i}}}, {{not: {{attest: C}}}}]}}]}}",
    "{{reasons: {{prefix: cert-}}, trunk: t{i}}}",
    "{{notice: 'EB-{i}', list: block}}",
]


def policy_text() -> str:
    rules = []
    for i in range(49):
        when = TEMPLATES[i % len(TEMPLATES)].format(i=i)
        rules.append(f"  - name: rule-{i}\n    when: {when}\n    action: reject\n    class: deterministic\n")
    rules.append("  - name: sign-unsigned\n    when: {trunk.role: foreign, verstat: No-TN-Validation, "
                 "caller.us: true}\n    action: forward\n    sign: true\n")
    return "version: 1\ndefault: {action: forward}\nrules:\n" + "".join(rules)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_text(policy_text())
        policy = load_policy(str(path), Redress(url="https://example.net/blocked"))
    assert len(policy.rules) == 50
    near_end = Facts(verstat="No-TN-Validation", trunk="carrier-x", trunk_role="foreign", trunk_rmd="listed",
                     trunk_frn="0012345678", source_ip="198.51.100.7", caller="12125551234",
                     callee="13125550100", caller_nanp=True, caller_us=True, caller_valid=True)
    nothing = Facts(verstat="TN-Validation-Passed", attest="A", trunk="carrier-x", trunk_role="domestic",
                    trunk_rmd="listed", source_ip="198.51.100.7", caller="12125551234", callee="13125550100",
                    caller_nanp=True, caller_us=True, caller_valid=True)
    first = Facts(trunk="carrier-0", caller_dno=True)
    assert policy.evaluate(near_end).rule == "sign-unsigned"
    assert policy.evaluate(nothing).rule is None
    assert policy.evaluate(first).rule == "rule-0"
    print(f"policy: {len(policy.rules)} rules; python {sys.version.split()[0]}")
    for label, facts in (("match rule 50 of 50", near_end), ("no match (default)", nothing),
                         ("match rule 1", first)):
        n = 20000
        best = min(timeit.repeat(functools.partial(policy.evaluate, facts), number=n, repeat=5)) / n
        print(f"{label:24s} {best * 1e6:7.2f} us/evaluation ({1 / best:,.0f}/s on one core)")


if __name__ == "__main__":
    main()
