"""The admin API on the HTTP listener: Commission-notice block rules at run time.

    GET    /admin/notices                    -> [{"ref": ..., "caller": ...}, ...]
    POST   /admin/notices   {"ref": "...", "caller_prefix": "1202555", "start": ..., ...}
    DELETE /admin/notices?ref=REF

Notices live in the store, so with Redis every instance applies them at its next lookup
(the memory store: this process only). Same conditions as ``sipguard notice add``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sipguard.store.base import Notice

Handler = Callable[[dict[str, str], bytes], Awaitable[tuple[int, str, bytes]]]
FIELDS = tuple(f.name for f in dataclasses.fields(Notice))
_NUMBER_FIELDS = ("start", "end")


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", (json.dumps(value, sort_keys=True) + "\n").encode()


def notice_from_json(body: bytes) -> Notice:
    """Parse and check a notice; ValueError with a message a person can act on."""
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; expected: {', '.join(FIELDS)}")
    ref = data.get("ref")
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError("'ref' (the notice reference, e.g. the FCC notice number) is required")
    values: dict[str, Any] = {}
    for name in FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if name in _NUMBER_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"'{name}' must be epoch seconds")
        elif not isinstance(value, str):
            raise ValueError(f"'{name}' must be a string")
        values[name] = value.strip() if isinstance(value, str) else float(value)
    if name_digits := [n for n in ("caller", "caller_prefix", "callee", "callee_prefix") if n in values]:
        for n in name_digits:
            values[n] = values[n].lstrip("+")
            if not values[n].isdigit():
                raise ValueError(f"'{n}' must be digits (E.164 without '+')")
    notice = Notice(**values)
    if not notice.has_condition():
        raise ValueError("a notice needs at least one condition (caller, callee, trunk, frn, spc ...)")
    return notice


def notice_routes(store: Any) -> dict[tuple[str, str], Handler]:
    async def list_notices(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        return _json(200, [dataclasses.asdict(n) for n in await store.notice_list()])

    async def add_notice(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        try:
            notice = notice_from_json(body)
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        await store.notice_add(notice)
        return _json(201, dataclasses.asdict(notice))

    async def remove_notice(query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        ref = query.get("ref")
        if not ref:
            return _json(400, {"error": "give the notice with ?ref=REF"})
        if not await store.notice_remove(ref):
            return _json(404, {"error": f"no notice {ref!r}"})
        return _json(200, {"removed": ref})

    return {("GET", "/admin/notices"): list_notices, ("POST", "/admin/notices"): add_notice,
            ("DELETE", "/admin/notices"): remove_notice}
