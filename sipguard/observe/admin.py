"""The admin API on the HTTP listener: Commission-notice block rules and the operator's
allow/block lists at run time.

    GET    /admin/notices                    -> [{"ref": ..., "caller": ...}, ...]
    POST   /admin/notices   {"ref": "...", "caller_prefix": "1202555", "start": ..., ...}
    DELETE /admin/notices?ref=REF
    GET    /admin/lists[?kind=number]        -> [{"kind": ..., "list": ..., "value": ..., "note": ...}]
    POST   /admin/lists     {"kind": "number", "list": "block", "value": "+12025550123", "note": "..."}
    DELETE /admin/lists?kind=number&value=12025550123

Notices and lists live in the store, so with Redis every instance applies them at its next
lookup (the memory store: this process only, and a ``datasets: lists:`` file replaces the
lists when it is reloaded). Same conditions as ``sipguard notice add`` and ``sipguard list``.

Every field and query parameter is checked here, before the store sees it: a bad one is a
400 whose JSON names it (``{"error": ..., "parameter": "start"}``); a store that cannot
answer is a 503. Nothing a client sends makes a 500.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from sipguard.errors import SipguardError
from sipguard.store.base import LIST_KINDS, LIST_NAMES, ListEntry, Notice
from sipguard.store.keys import frn10
from sipguard.store.tables import NOTICE_TIME_MAX, normalise_list_value, normalise_notice

Handler = Callable[[dict[str, str], bytes], Awaitable[tuple[int, str, bytes]]]
FIELDS = tuple(f.name for f in dataclasses.fields(Notice))
_NUMBER_FIELDS = ("start", "end")
MAX_TEXT = 256        # a reference, number, trunk or SPC longer than this is not one


class FieldError(ValueError):
    """A bad field of the body or parameter of the query; ``name`` says which."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", (json.dumps(value, sort_keys=True) + "\n").encode()


def _bad(exc: FieldError) -> tuple[int, str, bytes]:
    return _json(400, {"error": str(exc), "parameter": exc.name})


def _json_object(body: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
    """A request body that must be a JSON object of ``fields`` only; FieldError otherwise."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError) as exc:     # RecursionError: [[[[... nested past the stack
        raise FieldError("body", f"body is not JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise FieldError("body", "body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise FieldError(unknown[0][:40], f"unknown field(s) {', '.join(u[:40] for u in unknown[:5])}; "
                                          f"expected: {', '.join(fields)}")
    return data


def notice_from_json(body: bytes) -> Notice:
    """Parse and check a notice; FieldError (a ValueError) naming the field, with a message a
    person can act on."""
    data = _json_object(body, FIELDS)
    ref = data.get("ref")
    if not isinstance(ref, str) or not ref.strip():
        raise FieldError("ref", "'ref' (the notice reference, e.g. the FCC notice number) is required")
    values: dict[str, Any] = {}
    for name in FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if name in _NUMBER_FIELDS:
            values[name] = _epoch(name, value)
            continue
        if not isinstance(value, str):
            raise FieldError(name, f"'{name}' must be a string")
        if len(value) > MAX_TEXT or not value.isprintable():
            raise FieldError(name, f"'{name}' must be printable and at most {MAX_TEXT} characters")
        values[name] = value.strip()
    if name_digits := [n for n in ("caller", "caller_prefix", "callee", "callee_prefix") if n in values]:
        for n in name_digits:
            values[n] = values[n].lstrip("+")
            if not (values[n].isascii() and values[n].isdigit()):
                raise FieldError(n, f"'{n}' must be digits (E.164 without '+')")
    if "frn" in values and frn10(values["frn"]) is None:
        raise FieldError("frn", "'frn' must be up to 10 digits (the provider's FCC Registration Number)")
    if "start" in values and "end" in values and values["end"] <= values["start"]:
        raise FieldError("end", "'end' must be after 'start'")
    notice = Notice(**values)
    if not notice.has_condition():
        raise FieldError("body", "a notice needs at least one condition (caller, callee, trunk, frn, spc ...)")
    try:
        normalise_notice(notice)        # what the store would refuse: checked above, kept in step here
    except SipguardError as exc:
        raise FieldError("body", str(exc)) from None
    return notice


def _epoch(name: str, value: Any) -> float:
    """Epoch seconds, finite, from 1970 to 2100 (NaN and 1e999 parse as JSON numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(name, f"'{name}' must be epoch seconds")
    try:
        seconds = float(value)
    except OverflowError:           # an integer of 400 digits
        seconds = math.inf
    if not (math.isfinite(seconds) and 0 <= seconds <= NOTICE_TIME_MAX):
        raise FieldError(name, f"'{name}' must be epoch seconds from 0 to {NOTICE_TIME_MAX:.0f} (2100)")
    return seconds


def _params(query: dict[str, str], allowed: tuple[str, ...]) -> None:
    for name in query:
        if name not in allowed:
            expected = ", ".join(allowed) if allowed else "none"
            raise FieldError(name[:40], f"unknown parameter {name[:40]!r}; expected: {expected}")


def notice_routes(store: Any) -> dict[tuple[str, str], Handler]:
    async def list_notices(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        try:
            _params(query, ())
            return _json(200, [dataclasses.asdict(n) for n in await store.notice_list()])
        except FieldError as exc:
            return _bad(exc)
        except SipguardError as exc:    # the store cannot answer
            return _json(503, {"error": str(exc)})

    async def add_notice(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        try:
            _params(query, ())
            notice = notice_from_json(body)
            await store.notice_add(notice)
        except FieldError as exc:
            return _bad(exc)
        except SipguardError as exc:
            return _json(503, {"error": str(exc)})
        return _json(201, dataclasses.asdict(notice))

    async def remove_notice(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        try:
            _params(query, ("ref",))
            ref = query.get("ref", "")
            if not ref or len(ref) > MAX_TEXT:
                raise FieldError("ref", f"give the notice with ?ref=REF (at most {MAX_TEXT} characters)")
            removed = await store.notice_remove(ref)
        except FieldError as exc:
            return _bad(exc)
        except SipguardError as exc:
            return _json(503, {"error": str(exc)})
        if not removed:
            return _json(404, {"error": f"no notice {ref!r}"})
        return _json(200, {"removed": ref})

    return {("GET", "/admin/notices"): list_notices, ("POST", "/admin/notices"): add_notice,
            ("DELETE", "/admin/notices"): remove_notice}


LIST_FIELDS = ("kind", "list", "value", "note")


def list_entry_from_json(body: bytes) -> ListEntry:
    """Parse and check a list entry; FieldError naming the field."""
    data = _json_object(body, LIST_FIELDS)
    for name in LIST_FIELDS:
        value = data.get(name)
        if value is None and name == "note":
            continue
        if not isinstance(value, str) or len(value) > MAX_TEXT or not value.isprintable():
            raise FieldError(name, f"'{name}' must be a printable string of at most {MAX_TEXT} characters")
    if data["kind"] not in LIST_KINDS:
        raise FieldError("kind", f"'kind' is one of {', '.join(LIST_KINDS)}")
    if data["list"] not in LIST_NAMES:
        raise FieldError("list", f"'list' is one of {', '.join(LIST_NAMES)}")
    return ListEntry(data["kind"], data["list"], _list_value(data["kind"], data["value"]),
                     (data.get("note") or "").strip() or None)


_NUMBER_CHARS = frozenset("0123456789+-.() ")


def _list_value(kind: str, value: str) -> str:
    """As the store keeps it; a number or prefix may be written with + - . ( ) and spaces, but
    a letter in it is a mistake, not something to drop."""
    if kind in ("number", "prefix") and not set(value) <= _NUMBER_CHARS:
        raise FieldError("value", f"{kind} {value[:40]!r}: expected digits (E.164, e.g. +12025550123)")
    try:
        return normalise_list_value(kind, value)
    except SipguardError as exc:
        raise FieldError("value", str(exc)) from None


def list_routes(store: Any) -> dict[tuple[str, str], Handler]:
    async def show(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        try:
            _params(query, ("kind",))
            kind = query.get("kind") or None
            if kind is not None and kind not in LIST_KINDS:
                raise FieldError("kind", f"'kind' is one of {', '.join(LIST_KINDS)}")
            entries = await store.list_show(kind)
        except FieldError as exc:
            return _bad(exc)
        except SipguardError as exc:
            return _json(503, {"error": str(exc)})
        return _json(200, [{"kind": e.kind, "list": e.list_name, "value": e.value, "note": e.note} for e in entries])

    async def add(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        try:
            _params(query, ())
            entry = list_entry_from_json(body)
            await store.list_add(entry.kind, entry.list_name, entry.value, entry.note)
        except FieldError as exc:
            return _bad(exc)
        except SipguardError as exc:
            return _json(503, {"error": str(exc)})
        return _json(201, {"kind": entry.kind, "list": entry.list_name, "value": entry.value, "note": entry.note})

    async def remove(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        try:
            _params(query, ("kind", "value"))
            kind = query.get("kind", "")
            if kind not in LIST_KINDS:
                raise FieldError("kind", f"give ?kind= one of {', '.join(LIST_KINDS)}")
            text = query.get("value", "")
            if not text or len(text) > MAX_TEXT:
                raise FieldError("value", f"give the entry with ?value=... (at most {MAX_TEXT} characters)")
            value = _list_value(kind, text)
            removed = await store.list_remove(kind, value)
        except FieldError as exc:
            return _bad(exc)
        except SipguardError as exc:
            return _json(503, {"error": str(exc)})
        if not removed:
            return _json(404, {"error": f"{kind} {value!r} is on no list"})
        return _json(200, {"removed": {"kind": kind, "value": value}})

    return {("GET", "/admin/lists"): show, ("POST", "/admin/lists"): add, ("DELETE", "/admin/lists"): remove}
