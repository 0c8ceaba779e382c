"""One traceback record per INVITE decision, and the ``traceback:`` config section.

A record answers an Industry Traceback Group request for one call: when it arrived
(UTC), from which address and trunk, which upstream provider (name, FRN, RMD number,
country, RMD snapshot) handed it over, the numbers raw and normalised, what STIR/SHAKEN
verification concluded, which rule decided, what sipguard sent back or forwarded,
and whether sipguard signed it. Field names are user-facing (JSONL/CSV columns, the
HTTP endpoint): ``FIELDS`` is their one source of truth.

This module is pure: values and their (de)serialisation only, no I/O. ``CallRecord.of``
maps a pipeline ``Outcome`` to a record, so the pipeline does not know this format.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from sipguard.policy.facts import TEXTS, extra_facts, extra_values, shared_text, shared_texts
from sipguard.yamlconf import Section

if TYPE_CHECKING:
    from sipguard.pipeline import Outcome
    from sipguard.policy.facts import Facts


# A record's ``facts``, one dict for all the records whose extra facts are the same: calls of a
# trunk mostly share them (a handful of booleans and enums), and under overload records wait
# for the writer by the tens of thousands (bench/RESULTS.md, session 11: a waiting record
# 696 -> 565 bytes). Keyed by the values of every extra fact, so a hit builds no dict at all.
# The dict is shared: read it, never change it. Bounded as the texts are.
_FACTS: dict[tuple[Any, ...], dict[str, Any]] = {}


def shared_facts(facts: Facts) -> dict[str, Any]:
    """``extra_facts(facts)``, the same dict object for the same values. Keys compare with
    ``==``, so ``True`` and ``1`` would meet; each fact's values are of its field's one type."""
    key = extra_values(facts)
    try:
        shared = _FACTS.get(key)
    except TypeError:             # a value that cannot be hashed: the record's own dict
        return extra_facts(facts)
    if shared is None:
        shared = extra_facts(facts)
        if len(_FACTS) < TEXTS:
            _FACTS[key] = shared
    return shared


class CallRecord(NamedTuple):
    """One decided call, as stored. A tuple: its values are the stored row's, in field order,
    put together once per call (``of``) and encoded as they are (``to_row``), with no
    ``__init__`` to write out or to run field by field (a frozen dataclass set each of its 41
    fields through ``object.__setattr__``) and no field-by-field read to make the row."""

    time: float                       # epoch seconds (UTC), when the INVITE was decided
    call_id: str
    source_ip: str
    source_port: int
    transport: str
    trunk: str | None
    trunk_role: str | None
    provider_name: str | None
    provider_frn: str | None
    provider_rmd: str | None
    provider_country: str | None
    rmd_snapshot: str | None
    caller_raw: str | None
    caller: str | None                # E.164 digits without '+', as sipguard.numbers gives them
    callee_raw: str | None
    callee: str | None
    verstat: str
    attest: str | None
    origid: str | None
    x5u: str | None
    spc: str | None
    reasons: tuple[str, ...]
    rule: str | None
    rule_class: str | None
    notice: str | None
    action: str                       # forward | reject
    status: int | None                # SIP status sent upstream (None: forwarded)
    shadow_action: str | None         # what the policy chose when shadow mode forwarded anyway
    signed: bool
    signed_origid: str | None
    identity_dropped: bool
    next_hop: str | None
    instance: str | None
    # a call sipguard signed: the attestation it gave and the policy rule that decided it
    # (FCC 24-120: the signer makes the attestation decision itself and keeps the record)
    signed_attest: str | None = None
    signed_rule: str | None = None
    # what the analytics group by (records/upstreams.py), known at decision time:
    caller_check: str | None = None           # CALLER_CHECKS: the caller ID valid, withheld, invalid, unallocated, DNO
    spc_owner: str | None = None              # SPC_OWNERS: whose SPC signed it, against the trunk's FRN; None: unsigned
    trunk_rmd: str | None = None              # the trunk's RMD status then: listed | removed | absent
    trunk_implementation: str | None = None   # what its RMD filing claimed then: complete | partial | none | unknown
    # the other policy facts of the decision, those not in a field above (non-default values
    # only; records.whatif re-decides a call from them). None: a record from before version 3
    facts: dict[str, Any] | None = None
    # each Identity header's result, in the order received: "shaken:passed",
    # "div:failed:div-no-history", "rcd:failed:rcdi-mismatch", "rph:ignored" (verify.py)
    passports: tuple[str, ...] = ()

    def __hash__(self) -> int:     # ``facts`` is a dict: hash what identifies a record
        return hash((self.time, self.call_id, self.instance))

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = dict(zip(FIELDS, self, strict=True))
        out["reasons"] = list(self.reasons)
        out["passports"] = list(self.passports)
        return out

    @classmethod
    def of(cls, outcome: Outcome, status: int | None, next_hop: str | None, instance: str | None) -> CallRecord:
        """The record of one decided INVITE: ``status`` sent upstream (None: forwarded to
        ``next_hop``), ``instance`` the sipguard that decided."""
        trunk, ver, dec, facts = outcome.trunk, outcome.verification, outcome.decision, outcome.facts
        call = outcome.call
        provider = trunk.provider if trunk is not None else None
        signed = outcome.signed
        # the values in FIELDS order, made into a CallRecord as they are (one tuple, no
        # keywords: compiled, CallRecord(...) runs namedtuple's interpreted __new__)
        values: tuple[Any, ...] = (
            outcome.time, call.call_id, outcome.source[0], outcome.source[1], outcome.transport,
            trunk.id if trunk else None, trunk.role if trunk else None,
            provider.name if provider else None, provider.frn if provider else None,
            provider.rmd if provider else None, provider.country if provider else None,
            outcome.lookups.rmd_snapshot,
            call.caller.raw, call.caller.e164, call.callee.raw, call.callee.e164,
            shared_text(ver.verstat), ver.attest, ver.origid, ver.x5u, ver.spc, shared_texts(ver.reasons),
            dec.rule, dec.rule_class, dec.notice, dec.action, status,
            dec.would.action if dec.would is not None else None,
            signed, outcome.signed_origid, False, next_hop, instance,
            outcome.signed_attest if signed else None,
            (dec.rule or "(default)") if signed else None,
            caller_check(facts.caller_dno, facts.caller_valid, facts.caller_invalid_reason),
            spc_owner(ver.spc, outcome.lookups.signer_frn, provider.frn if provider else None),
            facts.trunk_rmd, facts.trunk_implementation,
            shared_facts(facts),
            ver.report(),
        )
        return _record(values)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CallRecord:
        """Inverse of ``to_dict``; missing optional fields (older records) become None."""
        values: list[Any] = []
        for name in FIELDS:
            value = d.get(name)
            if name in ("reasons", "passports"):
                value = tuple(str(r) for r in (value or ()))
            elif name in ("signed", "identity_dropped"):
                value = bool(value)
            elif name == "time":
                value = float(value or 0.0)
            elif name == "source_port":
                value = int(value or 0)
            elif name == "status" and value is not None:
                value = int(value)
            elif name in ("call_id", "source_ip", "transport", "verstat", "action"):
                value = "" if value is None else str(value)
            elif name == "facts" and value is not None and not isinstance(value, dict):
                raise ValueError(f"facts: expected an object, not {type(value).__name__}")
            values.append(value)
        return _record(tuple(values))

    @property
    def attest_c(self) -> bool:
        return self.attest == "C"


FIELDS: tuple[str, ...] = CallRecord._fields
_record: Callable[[tuple[Any, ...]], CallRecord] = functools.partial(tuple.__new__, CallRecord)

# The stored row (SQLite ``data``): a JSON array, the version then the values in that
# version's field order. A dict would spell out every name again, in every row: the array
# takes a third of the time to encode and of the space. A new field means a new version
# here (the test holds FIELDS to the current one); rows of every version stay readable, and
# so do the dicts stored before versions existed.
ROW_FIELDS: dict[int, tuple[str, ...]] = {
    1: ("time", "call_id", "source_ip", "source_port", "transport", "trunk", "trunk_role", "provider_name",
        "provider_frn", "provider_rmd", "provider_country", "rmd_snapshot", "caller_raw", "caller",
        "callee_raw", "callee", "verstat", "attest", "origid", "x5u", "spc", "reasons", "rule", "rule_class",
        "notice", "action", "status", "shadow_action", "signed", "signed_origid", "identity_dropped",
        "next_hop", "instance"),
}
ROW_FIELDS[2] = (*ROW_FIELDS[1], "signed_attest", "signed_rule")
ROW_FIELDS[3] = (*ROW_FIELDS[2], "caller_check", "spc_owner", "trunk_rmd", "trunk_implementation", "facts")
ROW_FIELDS[4] = (*ROW_FIELDS[3], "passports")
ROW_VERSION = 4
_VERSION: tuple[Any, ...] = (ROW_VERSION,)
VERSTAT_INDEX = ROW_FIELDS[1].index("verstat") + 1    # its place in a stored row of every version
_encode = json.JSONEncoder(separators=(",", ":")).encode
# The C encoder behind json.dumps, made once: ``JSONEncoder.encode`` makes a new one, with two
# Python frames around it, for every row (a third of ``to_row``'s time). No circular-reference
# check: a record holds scalars, tuples and a flat dict.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_row_chunks: Any = None if _c_make_encoder is None else _c_make_encoder(
    None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)


def column_text(value: str | None) -> str | None:
    """``value`` as a database's text column takes it. A header's undecodable bytes (the SIP
    parser keeps them as lone surrogates) cannot be encoded for SQLite and, like NUL, are
    refused by PostgreSQL: one such Call-ID would fail its batch again at every retry,
    holding every later record in the spool. They become U+FFFD in the indexed columns; the
    record itself (``to_row``: JSON with ASCII escapes) keeps every byte."""
    if value is None or (value.isascii() and "\x00" not in value):
        return value
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "\ufffd")


def to_row(record: CallRecord) -> str:
    """``record`` as stored: ``[ROW_VERSION, value, ...]`` (JSON text, as json.dumps writes it)."""
    row = _VERSION + record      # not (ROW_VERSION, *record): compiled, that checks and unboxes 42 typed items
    return _encode(row) if _row_chunks is None else "".join(_row_chunks(row, 0))


def from_row(text: str | bytes) -> CallRecord:
    """Inverse of ``to_row``, for every row version and for the older dict rows;
    ValueError on a row that is neither."""
    value = json.loads(text)
    if isinstance(value, dict):
        return CallRecord.from_dict(value)
    names = ROW_FIELDS.get(value[0]) if isinstance(value, list) and value and type(value[0]) is int else None
    if names is None or len(value) != len(names) + 1:
        raise ValueError(f"not a stored record: {str(text)[:60]!r}")
    return CallRecord.from_dict(dict(zip(names, value[1:], strict=True)))


# ``caller_check``: the caller ID as the policy saw it, one class each, the first that applies
CALLER_CHECKS = ("dno", "withheld", "unallocated", "invalid", "valid")
# invalid_reason codes (sipguard.numbers) of a number no provider was allocated: an area code
# not in service or reserved, or the 555-01XX fiction range. Unallocated exchanges and
# thousands-blocks are not in the NPA table; they reach a call as DNO entries (the DNO list
# covers invalid, unallocated and unused numbers), so count under ``dno``.
UNALLOCATED = frozenset(("unassigned-npa", "reserved-npa", "fictional"))
WITHHELD = frozenset(("anonymous", "no-number"))
# ``spc_owner``: own (the signer's SPC maps, by the OCN map, to the trunk provider's FRN),
# other (to another FRN), unknown (the SPC or the trunk has no FRN to compare)
SPC_OWNERS = ("own", "other", "unknown")


def caller_check(dno: bool, valid: bool, invalid_reason: str | None) -> str:
    """The ``caller_check`` class of a caller ID (CALLER_CHECKS, in that precedence)."""
    if dno:
        return "dno"
    if invalid_reason in WITHHELD:
        return "withheld"
    if invalid_reason in UNALLOCATED:
        return "unallocated"
    return "valid" if valid else "invalid"


def spc_owner(spc: str | None, signer_frn: str | None, trunk_frn: str | None) -> str | None:
    """Whose SPC signed the call, as ``spc_owner`` holds it; None for an unsigned call."""
    if not spc:
        return None
    if not signer_frn or not trunk_frn:
        return "unknown"
    return "own" if signer_frn.lstrip("0") == trunk_frn.lstrip("0") else "other"


REDIS_MAX_DAYS = 7          # the longest a Redis Stream may keep records (RAM, not an archive)
STORES = ("sqlite", "redis")


@dataclass(frozen=True)
class TracebackConfig:
    """``traceback: {store, retention_days, path, spool, queue, batch}`` (CONTRACT.md).

    ``store``: where records go -- None follows the top-level ``store`` (memory: the SQLite
    file, Redis: its Stream), ``sqlite`` the SQLite file whatever the top-level store,
    ``postgresql://...`` a PostgreSQL database (records/postgres.py). ``path``: the SQLite
    file; ``spool``: the folder where records wait while the store cannot take them.
    """

    retention_days: int = 548         # 18 months: 47 CFR 42.6
    path: str = "var/traceback.db"
    spool: str = "var/spool"
    queue: int = 10000                # records queued; past it they wait in the overflow (memory), counted as spilled
    batch: int = 500                  # records per write
    store: str | None = None

    @classmethod
    def from_section(cls, sec: Section, base_dir: str, store: str = "memory") -> TracebackConfig:
        """``store``: the top-level store URL, which records follow unless ``traceback.store`` says."""
        sec.check_keys(("store", "retention_days", "path", "spool", "queue", "batch"))

        def resolve(key: str, default: str) -> str:
            value = str(sec.str(key, default=default))
            return value if os.path.isabs(value) else os.path.join(base_dir, value)

        records_store = sec.str("store", default=None)
        if records_store is not None and records_store not in STORES and not records_store.startswith(
                ("postgresql://", "postgres://")):
            raise sec.error("store", f"{records_store!r}: expected sqlite, redis (the top-level store's "
                                     "Stream) or a postgresql:// URL")
        if records_store == "redis" and not store.startswith(("redis", "unix://")):
            raise sec.error("store", "redis: the top-level store is not Redis; records go to sqlite or a "
                                     "postgresql:// URL")
        retention = int(sec.int("retention_days", default=548, minimum=1, maximum=36500))
        in_redis = records_store == "redis" or (records_store is None and store != "memory")
        if in_redis and retention > REDIS_MAX_DAYS:
            # 200 calls/s for 548 days is 9.5 billion records, about 3 TB of RAM in one Stream
            key = "store" if records_store == "redis" else "retention_days"
            raise sec.error(key, f"{retention} days of call records would be kept in Redis (in RAM: at "
                                 "200 calls/s, 548 days is about 3 TB); Redis keeps records for at most "
                                 f"{REDIS_MAX_DAYS} days. Set traceback.store to a postgresql:// URL (or "
                                 "sqlite: the local file) to keep them 18 months (47 CFR 42.6)")
        return cls(
            retention_days=retention,
            path=resolve("path", "var/traceback.db"),
            spool=resolve("spool", "var/spool"),
            queue=int(sec.int("queue", default=10000, minimum=1)),
            batch=int(sec.int("batch", default=500, minimum=1, maximum=100000)),
            store=records_store,
        )

    def store_for(self, store: str) -> str:
        """Where records go given the top-level ``store``: "memory" (the SQLite file), a Redis
        URL (its Stream) or a PostgreSQL URL."""
        if self.store is None or self.store == "redis":
            return store
        return "memory" if self.store == "sqlite" else self.store

    @property
    def retention_seconds(self) -> float:
        return self.retention_days * 86400.0


def normalise_tn(value: str | None) -> str | None:
    """A number as the records store it (E.164 digits, no '+'), or None if it is not one."""
    if not value:
        return None
    from sipguard.numbers import parse_tn

    tn = parse_tn(value)
    if tn.e164:
        return tn.e164
    digits = "".join(ch for ch in value if ch.isdigit())
    return digits or None
