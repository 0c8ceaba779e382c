"""The dataclasses of the hot path whose ``__init__`` is written out (compiled by mypyc, where
the generated one runs interpreted): each must take every field, by name, in field order, with
the field's default, exactly as the generated one would. A field added later without its line
in ``__init__`` fails here, in the pure tree and in the compiled one."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sipguard.config import Provider, Trunk
from sipguard.numbers import TN, parse_tn
from sipguard.pipeline import Call, Outcome
from sipguard.policy.decision import FORWARD
from sipguard.policy.facts import Facts
from sipguard.proxy.messages import Hop
from sipguard.proxy.transactions import InviteTx, State
from sipguard.shaken.certs import Credential, TnAuth
from sipguard.shaken.identity import IdentityHeader
from sipguard.shaken.passport import Passport, ShakenClaims
from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.result import NOT_VERIFIED, DivInfo, PassportResult, Verification
from sipguard.shaken.verify import _Token
from sipguard.sip import Request, parse
from sipguard.sip.address import NameAddr, Via
from sipguard.store.base import LookupKeys, Lookups

ROOT = Path(__file__).resolve().parents[2]
CLASSES = [NameAddr, Via, Call, Outcome, InviteTx, Facts, TN, IdentityHeader, Passport, ShakenClaims,
           Verification, Lookups, LookupKeys, _Token]
INVITE = (b"INVITE sip:+13036231000@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\n"
          b"From: <sip:+12127363100@192.0.2.1>;tag=a\r\nTo: <sip:+13036231000@192.0.2.9>\r\n"
          b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
TRUNK = Trunk("t1", "foreign", (), Provider(name="p"))


def _annotations(cls: type) -> dict[str, str]:
    """The fields' annotations as written (a compiled class keeps only ``type`` for a union)."""
    source = (ROOT / (cls.__module__.replace(".", "/") + ".py")).read_text()
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    return {a.target.id: ast.unparse(a.annotation) for a in node.body
            if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)}


def _request() -> Request:
    req = parse(INVITE)
    assert isinstance(req, Request)
    return req


def _value(cls: type, field: dataclasses.Field[Any], i: int) -> Any:
    """A value of the field's type (the compiled __init__ checks types) that no other field
    of the class and no default holds."""
    kind = _annotations(cls)[field.name].split(" | ")[0]
    made: dict[str, Any] = {
        "str": f"v{i}", "int": 1000 + i, "float": 1000.5 + i, "bytes": b"v%d" % i,
        "bool": field.default is not True, "Params": {"p": f"v{i}"}, "dict[str, Any]": {"k": i},
        "tuple[str, int]": (f"v{i}", i), "tuple[str, ...]": (f"v{i}",), "TN": parse_tn(f"+1212555{i:04d}"),
        "tuple[TN, ...]": (parse_tn(f"+1303555{i:04d}"),), "Call": Call.of(_request()),
        "Trunk": TRUNK, "Verification": NOT_VERIFIED, "Lookups": Lookups(), "Facts": Facts(verstat=f"v{i}"),
        "Decision": FORWARD, "State": State.PROCEEDING, "Hop": Hop(f"v{i}", i, "udp"), "Any": object(),
        "Verstat": Verstat.FAILED, "tuple[Reason, ...]": (list(Reason)[i % len(Reason)],),
        "tuple[DivInfo, ...]": (DivInfo(f"v{i}", (), None, None, False),),
        "tuple[PassportResult, ...]": (PassportResult(f"v{i}", "failed"),),
        "tuple[tuple[str, str], ...]": ((f"v{i}", "x"),),
        "pp.Passport": Passport({"h": i}, {"c": i}, b"v%d" % i, b"s"),
        "pp.ShakenClaims": ShakenClaims("A", f"v{i}", (), i, "o"),
        "Credential": Credential(None, f"v{i}", TnAuth((), (), ()), (), 0.0, float(i)),  # type: ignore[arg-type]
    }
    return made[kind]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_by_name(cls: type) -> None:
    fields = dataclasses.fields(cls)
    values = [_value(cls, f, i) for i, f in enumerate(fields)]
    obj = cls(**{f.name: value for f, value in zip(fields, values, strict=True)})
    assert [getattr(obj, f.name) for f in fields] == values


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_positional_order_and_defaults(cls: type) -> None:
    fields = dataclasses.fields(cls)
    required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    assert fields[:len(required)] == tuple(required)
    values = [_value(cls, f, i) for i, f in enumerate(required)]
    obj = cls(*values)
    for i, f in enumerate(fields):
        want = values[i] if i < len(values) else (
            f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
        assert getattr(obj, f.name) == want, f.name
