"""Facts: everything the policy may look at, built once per INVITE by the pipeline.

Field names are the CONTRACT fact names with '.' written '_' (``trunk.rmd`` ->
``trunk_rmd``). ``FACT_NAMES`` maps each user-visible name to its field; it is the
one source of truth for policy validation, docs and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Facts:
    verstat: str = "No-TN-Validation"
    attest: str | None = None
    reasons: tuple[str, ...] = ()
    trunk: str | None = None
    trunk_role: str | None = None
    trunk_rmd: str | None = "absent"      # listed | removed | absent | None (store unavailable)
    trunk_implementation: str | None = None
    trunk_frn: str | None = None
    trunk_score: int | None = None        # 0..100 from the trunk's recent records (records/upstreams.py); None: too few
    signer_spc: str | None = None
    signer_rmd: str | None = None         # listed | removed | absent | None (no signer)
    source_ip: str | None = None
    caller: str | None = None             # E.164 digits, no '+'
    callee: str | None = None
    caller_nanp: bool = False
    caller_us: bool = False
    caller_valid: bool = False
    caller_invalid_reason: str | None = None
    caller_dno: bool = False
    caller_anonymous: bool = False
    list: str | None = None               # allow | block | None
    limited: tuple[str, ...] = ()
    notice: str | None = None
    store_degraded: bool = False
    # detectors (sipguard/detectors.py) and threat lists (sipguard/threats.py); None: unknown
    campaign_fanout: bool | None = None
    campaign_burst: bool | None = None
    spoof_neighbor: bool = False
    spoof_same: bool = False
    spoof_us_cid_foreign_trunk: bool = False
    spoof_a_on_bad_number: bool | None = False
    trunk_threat: str | None = None       # c-cist | operator | None (not on a threat list)
    signer_threat: str | None = None
    emergency: bool = False               # not a policy fact: the engine never rejects these
    div_count: int = 0                    # div PASSporTs on the call (RFC 8946)
    div_verstat: str = "No-TN-Validation"  # the div chain: Passed (every link), Failed, No- (none)
    rcd_present: bool = False             # an rcd PASSporT (RFC 9795) came with the call
    rcd_verified: bool | None = None      # every rcd PASSporT verified; None without one
    passport_replayed: bool | None = False  # the PASSporT's signature was seen on another call

    def __init__(self, verstat: str = "No-TN-Validation", attest: str | None = None,
                 reasons: tuple[str, ...] = (), trunk: str | None = None, trunk_role: str | None = None,
                 trunk_rmd: str | None = "absent", trunk_implementation: str | None = None,
                 trunk_frn: str | None = None, trunk_score: int | None = None, signer_spc: str | None = None,
                 signer_rmd: str | None = None, source_ip: str | None = None, caller: str | None = None,
                 callee: str | None = None, caller_nanp: bool = False, caller_us: bool = False,
                 caller_valid: bool = False, caller_invalid_reason: str | None = None,
                 caller_dno: bool = False, caller_anonymous: bool = False, list: str | None = None,
                 limited: tuple[str, ...] = (), notice: str | None = None, store_degraded: bool = False,
                 campaign_fanout: bool | None = None, campaign_burst: bool | None = None,
                 spoof_neighbor: bool = False, spoof_same: bool = False,
                 spoof_us_cid_foreign_trunk: bool = False, spoof_a_on_bad_number: bool | None = False,
                 trunk_threat: str | None = None, signer_threat: str | None = None, emergency: bool = False,
                 div_count: int = 0, div_verstat: str = "No-TN-Validation", rcd_present: bool = False,
                 rcd_verified: bool | None = None, passport_replayed: bool | None = False) -> None:
        # written out (dataclass keeps it): compiled, where the generated one runs interpreted
        # (bench/RESULTS.md, session 8); tests/unit/test_written_inits.py checks it field by field.
        # A name written here is a field store in C; one read from a tuple (a loop over the
        # fields) is a generic setattr, about 30 ns each (session 14)
        object.__setattr__(self, "verstat", verstat)
        object.__setattr__(self, "attest", attest)
        object.__setattr__(self, "reasons", reasons)
        object.__setattr__(self, "trunk", trunk)
        object.__setattr__(self, "trunk_role", trunk_role)
        object.__setattr__(self, "trunk_rmd", trunk_rmd)
        object.__setattr__(self, "trunk_implementation", trunk_implementation)
        object.__setattr__(self, "trunk_frn", trunk_frn)
        object.__setattr__(self, "trunk_score", trunk_score)
        object.__setattr__(self, "signer_spc", signer_spc)
        object.__setattr__(self, "signer_rmd", signer_rmd)
        object.__setattr__(self, "source_ip", source_ip)
        object.__setattr__(self, "caller", caller)
        object.__setattr__(self, "callee", callee)
        object.__setattr__(self, "caller_nanp", caller_nanp)
        object.__setattr__(self, "caller_us", caller_us)
        object.__setattr__(self, "caller_valid", caller_valid)
        object.__setattr__(self, "caller_invalid_reason", caller_invalid_reason)
        object.__setattr__(self, "caller_dno", caller_dno)
        object.__setattr__(self, "caller_anonymous", caller_anonymous)
        object.__setattr__(self, "list", list)
        object.__setattr__(self, "limited", limited)
        object.__setattr__(self, "notice", notice)
        object.__setattr__(self, "store_degraded", store_degraded)
        object.__setattr__(self, "campaign_fanout", campaign_fanout)
        object.__setattr__(self, "campaign_burst", campaign_burst)
        object.__setattr__(self, "spoof_neighbor", spoof_neighbor)
        object.__setattr__(self, "spoof_same", spoof_same)
        object.__setattr__(self, "spoof_us_cid_foreign_trunk", spoof_us_cid_foreign_trunk)
        object.__setattr__(self, "spoof_a_on_bad_number", spoof_a_on_bad_number)
        object.__setattr__(self, "trunk_threat", trunk_threat)
        object.__setattr__(self, "signer_threat", signer_threat)
        object.__setattr__(self, "emergency", emergency)
        object.__setattr__(self, "div_count", div_count)
        object.__setattr__(self, "div_verstat", div_verstat)
        object.__setattr__(self, "rcd_present", rcd_present)
        object.__setattr__(self, "rcd_verified", rcd_verified)
        object.__setattr__(self, "passport_replayed", passport_replayed)


# The text of a verstat and of a reasons tuple, one object for all the facts and records that
# carry it (pipeline.build_facts, records/record.py): str() of a StrEnum member is a new string
# each time, and under overload records wait for the writer by the tens of thousands
# (bench/RESULTS.md, session 10: ~190 of ~900 bytes a record). Bounded: a value past TEXTS
# distinct ones is made as before.
TEXTS = 256
_TEXT: dict[Any, str] = {}
_TEXTS: dict[tuple[Any, ...], tuple[str, ...]] = {}


def shared_text(value: Any) -> str:
    text = _TEXT.get(value)
    if text is None:
        text = str(value)
        if len(_TEXT) < TEXTS:
            _TEXT[value] = text
    return text


def shared_texts(values: tuple[Any, ...]) -> tuple[str, ...]:
    texts = _TEXTS.get(values)
    if texts is None:
        texts = tuple(str(v) for v in values)
        if len(_TEXTS) < TEXTS:
            _TEXTS[values] = texts
    return texts


FIELDS = tuple(f.name for f in fields(Facts))

FACT_NAMES: dict[str, str] = {
    "verstat": "verstat",
    "attest": "attest",
    "reasons": "reasons",
    "trunk": "trunk",
    "trunk.role": "trunk_role",
    "trunk.rmd": "trunk_rmd",
    "trunk.implementation": "trunk_implementation",
    "trunk.frn": "trunk_frn",
    "trunk.score": "trunk_score",
    "signer.spc": "signer_spc",
    "signer.rmd": "signer_rmd",
    "source.ip": "source_ip",
    "caller": "caller",
    "callee": "callee",
    "caller.nanp": "caller_nanp",
    "caller.us": "caller_us",
    "caller.valid": "caller_valid",
    "caller.invalid_reason": "caller_invalid_reason",
    "caller.dno": "caller_dno",
    "caller.anonymous": "caller_anonymous",
    "list": "list",
    "limited": "limited",
    "notice": "notice",
    "store.degraded": "store_degraded",
    "campaign.fanout": "campaign_fanout",
    "campaign.burst": "campaign_burst",
    "spoof.neighbor": "spoof_neighbor",
    "spoof.same": "spoof_same",
    "spoof.us_cid_foreign_trunk": "spoof_us_cid_foreign_trunk",
    "spoof.a_on_bad_number": "spoof_a_on_bad_number",
    "trunk.threat": "trunk_threat",
    "signer.threat": "signer_threat",
    "div.count": "div_count",
    "div.verstat": "div_verstat",
    "rcd.present": "rcd_present",
    "rcd.verified": "rcd_verified",
    "passport.replayed": "passport_replayed",
}


# Facts a call record holds in a field of its own (Facts field -> CallRecord field). The
# others go into the record's ``facts`` (``extra_facts``), so records/whatif.py can rebuild
# the Facts of a stored call, including facts added after this list was written.
IN_RECORD: dict[str, str] = {
    "verstat": "verstat", "attest": "attest", "reasons": "reasons", "trunk": "trunk",
    "trunk_role": "trunk_role", "trunk_frn": "provider_frn", "signer_spc": "spc",
    "source_ip": "source_ip", "caller": "caller", "callee": "callee", "trunk_rmd": "trunk_rmd",
    "trunk_implementation": "trunk_implementation",
}
EXTRA: tuple[tuple[str, Any], ...] = tuple((f.name, f.default) for f in fields(Facts) if f.name not in IN_RECORD)
TUPLE_FACTS = frozenset(f.name for f in fields(Facts) if isinstance(f.default, tuple))


EXTRA_NAMES: tuple[str, ...] = tuple(name for name, _ in EXTRA)
EXTRA_DEFAULTS: tuple[Any, ...] = tuple(default for _, default in EXTRA)


def extra_facts(facts: Facts) -> dict[str, Any]:
    """The facts the record has no field for, those that differ from the default (a typical
    call: a handful). Tuples stay tuples here; JSON stores them as lists."""
    # ``is not`` first: most values are the default's own None/False/"..." object
    values = extra_values(facts)
    out: dict[str, Any] = {}
    for i in range(len(EXTRA_NAMES)):   # an index loop: compiled, no zip and no pair per fact
        value, default = values[i], EXTRA_DEFAULTS[i]
        if value is not default and value != default:
            out[EXTRA_NAMES[i]] = value
    return out


def extra_values(f: Facts) -> tuple[Any, ...]:
    """The values of the ``EXTRA_NAMES`` facts, in that order: the key of the records' shared
    ``facts`` dicts (records/record.py). Written out: compiled, a field read each, where
    ``operator.attrgetter`` looks up 26 attributes (~0.7 us); tests/unit/test_record_of.py holds
    it to ``EXTRA_NAMES``."""
    return (f.trunk_score, f.signer_rmd, f.caller_nanp, f.caller_us, f.caller_valid, f.caller_invalid_reason,
            f.caller_dno, f.caller_anonymous, f.list, f.limited, f.notice, f.store_degraded, f.campaign_fanout,
            f.campaign_burst, f.spoof_neighbor, f.spoof_same, f.spoof_us_cid_foreign_trunk,
            f.spoof_a_on_bad_number, f.trunk_threat, f.signer_threat, f.emergency, f.div_count, f.div_verstat,
            f.rcd_present, f.rcd_verified, f.passport_replayed)
