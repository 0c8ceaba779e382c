"""The type of every policy fact, so a policy value is checked when the file loads.

``FACT_NAMES`` (facts.py) says which facts exist; ``FACT_KINDS`` says what values each
takes. A test keeps the two tables in step. The kinds:

* ``bool``: true/false (``caller.us``);
* ``enum``: one of ``choices`` (``trunk.rmd``: listed|removed|absent);
* ``text``: a string; numbers are refused so YAML cannot eat a leading zero (``trunk.frn``);
* ``digits``: a telephone number, E.164 digits; a leading '+' is dropped, ints accepted;
* ``ip``: an address; a policy value may be an address or a CIDR network;
* ``number``: a whole number (``trunk.score``, ``div.count``); gt/gte/lt/lte compare numerically;
* ``list``: the fact is a list (``reasons``, ``limited``); equality and any-of mean
  "contains"; ``choices`` (when set) checks the items.

``nullable`` facts may have no value (None) on a call; comparisons never match None, and a
policy may write ``null`` to mean "has no value".
"""

from __future__ import annotations

from dataclasses import dataclass

from sipguard.shaken.reasons import Reason, Verstat


@dataclass(frozen=True, slots=True)
class FactKind:
    kind: str                        # bool | enum | text | digits | ip | number | list
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def describe(self) -> str:
        """How to tell a user what values the fact takes."""
        if self.kind == "bool":
            return "true/false"
        if self.kind == "enum":
            return "one of: " + ", ".join(self.choices)
        if self.kind == "digits":
            return "a telephone number (E.164 digits)"
        if self.kind == "ip":
            return "an IP address or network (CIDR)"
        if self.kind == "number":
            return "a whole number"
        if self.kind == "list":
            return "a list of " + ("names: " + ", ".join(self.choices) if self.choices else "names")
        return "a text value"


_RMD = ("listed", "removed", "absent")
THREAT_SOURCES = ("c-cist", "operator")   # sipguard/threats.py

FACT_KINDS: dict[str, FactKind] = {
    "verstat": FactKind("enum", tuple(v.value for v in Verstat)),
    "attest": FactKind("enum", ("A", "B", "C"), nullable=True),
    "reasons": FactKind("list", tuple(r.value for r in Reason)),
    "trunk": FactKind("text", nullable=True),
    "trunk.role": FactKind("enum", ("foreign", "domestic"), nullable=True),
    "trunk.rmd": FactKind("enum", _RMD),
    "trunk.implementation": FactKind("text", nullable=True),
    "trunk.frn": FactKind("text", nullable=True),
    "trunk.score": FactKind("number", nullable=True),
    "signer.spc": FactKind("text", nullable=True),
    "signer.rmd": FactKind("enum", _RMD, nullable=True),
    "source.ip": FactKind("ip", nullable=True),
    "caller": FactKind("digits", nullable=True),
    "callee": FactKind("digits", nullable=True),
    "caller.nanp": FactKind("bool"),
    "caller.us": FactKind("bool"),
    "caller.valid": FactKind("bool"),
    "caller.invalid_reason": FactKind("text", nullable=True),
    "caller.dno": FactKind("bool"),
    "caller.anonymous": FactKind("bool"),
    "list": FactKind("enum", ("allow", "block"), nullable=True),
    "limited": FactKind("list"),
    "notice": FactKind("text", nullable=True),
    "store.degraded": FactKind("bool"),
    "campaign.fanout": FactKind("bool", nullable=True),
    "campaign.burst": FactKind("bool", nullable=True),
    "spoof.neighbor": FactKind("bool"),
    "spoof.same": FactKind("bool"),
    "spoof.us_cid_foreign_trunk": FactKind("bool"),
    "spoof.a_on_bad_number": FactKind("bool", nullable=True),
    "trunk.threat": FactKind("enum", THREAT_SOURCES, nullable=True),
    "signer.threat": FactKind("enum", THREAT_SOURCES, nullable=True),
    "div.count": FactKind("number"),
    "div.verstat": FactKind("enum", tuple(v.value for v in Verstat)),
    "rcd.present": FactKind("bool"),
    "rcd.verified": FactKind("bool", nullable=True),
    "passport.replayed": FactKind("bool", nullable=True),
}
