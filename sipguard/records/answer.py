"""The answer to one hop of an ITG traceback request, from the call records.

A traceback asks each provider in the call path: did you carry this call, and who handed it
to you? (47 CFR 64.1200(n)(1): fully, within 24 hours.) For a gateway the upstream is a
foreign provider, and the ITG needs its identity: legal name, FRN, RMD number, country and a
contact to send the next hop to. It also needs who signed the call: the STIR/SHAKEN identity
that arrived, and ours when sipguard signed it (gateway attestation).

``build`` turns the request and the matching records into one JSON-able document (the
answer), ``render`` into text ready to paste into the ITG portal: one line per call first,
then the details. "Not found" is an answer too, and says which window was searched. Times
are UTC; the zone the request gave is stated beside it, as the ITG gives local times.

Pure: no I/O; the caller finds the records (``records.query``) and passes the config.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipguard.records.query import QueryError, iso_utc, read_time
from sipguard.records.record import CallRecord

if TYPE_CHECKING:
    from sipguard.config import Config


@dataclass(frozen=True, slots=True)
class Request:
    """What the traceback request named, as the operator typed it, and the window searched."""

    caller: str | None
    callee: str | None
    at: str | None                  # the time as given (ISO 8601 or epoch)
    at_epoch: float | None
    call_id: str | None
    low: float | None               # the window searched, epoch seconds (None: open)
    high: float | None


# What an answer takes from the running config: trunk id -> the contact of its provider (the
# records carry the provider's name, FRN, RMD number and country, not the contact), and our
# signing settings (attest, x5u).
Context = tuple[dict[str, str | None], dict[str, str] | None]


def context_of(config: Config) -> Context:
    contacts = {t.id: t.provider.contact for t in config.trunks}
    signing = {"attest": config.signing.attest, "x5u": config.signing.x5u} if config.signing else None
    return contacts, signing


def zone_of(text: str | None) -> str:
    """The UTC offset a request time carried ("-04:00"), or what was assumed."""
    if not text:
        return "none"
    try:
        when = read_time(text)
    except QueryError:
        return "unknown"
    if isinstance(when, float):
        return "epoch seconds (UTC)"
    if when.tzinfo is None:
        return "none given: taken as UTC"
    offset = when.utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def build(request: Request, records: list[CallRecord], context: Context, prepared: float) -> dict[str, Any]:
    """The answer document; ``context`` from ``context_of`` (the config as it is now)."""
    contacts, signing = context
    return {
        "answer": "found" if records else "not found",
        "prepared_utc": iso_utc(prepared),
        "request": {
            "caller": request.caller, "callee": request.callee, "call_id": request.call_id,
            "at": request.at, "at_utc": iso_utc(request.at_epoch), "zone": zone_of(request.at),
            "searched_utc": [iso_utc(request.low), iso_utc(request.high)],
        },
        "calls": [_call(r, contacts.get(r.trunk or ""), signing) for r in records],
    }


def _call(r: CallRecord, contact: str | None, signing: dict[str, str] | None) -> dict[str, Any]:
    upstream = {
        "name": r.provider_name, "frn": r.provider_frn, "rmd": r.provider_rmd,
        "country": r.provider_country, "contact": contact,
        "trunk": r.trunk, "trunk_role": r.trunk_role,
        "source": f"{r.source_ip}:{r.source_port}/{r.transport}", "rmd_snapshot": r.rmd_snapshot,
    }
    we_signed: dict[str, Any] = {"signed": r.signed}
    if r.signed:
        we_signed["origid"] = r.signed_origid
        if r.signed_attest is not None:  # recorded at the time (rows before version 2 lack it)
            we_signed.update({"attest": r.signed_attest, "attest_rule": r.signed_rule})
            if signing:
                we_signed["x5u"] = signing.get("x5u")
        elif signing:
            we_signed.update({"attest": signing.get("attest"), "x5u": signing.get("x5u"),
                              "note": "attestation and x5u as configured now"})
    return {
        "received_utc": iso_utc(r.time),
        "call_id": r.call_id,
        "received_from": upstream,
        "summary": summary(r),
        "calling": {"e164": plus(r.caller), "as_received": r.caller_raw},
        "called": {"e164": plus(r.callee), "as_received": r.callee_raw},
        "identity_received": {"verstat": r.verstat, "attest": r.attest, "origid": r.origid, "x5u": r.x5u,
                              "signer_spc": r.spc, "reasons": list(r.reasons),
                              "dropped": r.identity_dropped},
        "our_action": {"action": r.action, "status": r.status, "rule": r.rule, "notice": r.notice,
                       "shadow_action": r.shadow_action,
                       "next_hop": r.next_hop if r.action == "forward" else None},
        "we_signed": we_signed,
        "instance": r.instance,
    }


def summary(r: CallRecord) -> str:
    """The one line the ITG asks for: from whom, on what, when; and what became of the call."""
    ids = [f"FRN {r.provider_frn}" if r.provider_frn else None, r.provider_rmd, r.provider_country]
    who = r.provider_name or "an unnamed upstream"
    detail = ", ".join(x for x in ids if x)
    fate = "forwarded" if r.action == "forward" else f"rejected with {r.status}" if r.status else r.action
    return (f"Received from {who}{f' ({detail})' if detail else ''} on trunk {r.trunk or '-'} "
            f"from {r.source_ip}:{r.source_port} at {iso_utc(r.time)}; {fate}"
            + (" and signed by us" if r.signed else "") + ".")


def render(answer: dict[str, Any]) -> str:
    """Text for the ITG portal form."""
    req = answer["request"]
    asked = ", ".join(f"{label} {req[key]}" for key, label in (
        ("caller", "calling"), ("callee", "called"), ("call_id", "Call-ID")) if req[key])
    low, high = req["searched_utc"]
    lines = [f"Traceback answer (sipguard), prepared {answer['prepared_utc']}",
             f"Request: {asked or 'all calls'}"
             + (f", at {req['at']} ({req['at_utc']}; zone given: {req['zone']})" if req["at"] else ""),
             f"Searched: {low or 'the first record'} to {high or 'now'} (UTC)"]
    calls = answer["calls"]
    if not calls:
        lines.append("Result: NOT FOUND. No call matching the request is in our records for that window.")
        return "\n".join(lines) + "\n"
    lines.append(f"Result: FOUND, {len(calls)} call{'s' if len(calls) != 1 else ''}.")
    for n, call in enumerate(calls, 1):
        up, ident, act, signed = call["received_from"], call["identity_received"], call["our_action"], \
            call["we_signed"]
        lines += [
            "",
            f"Call {n}: {call['summary']}",
            f"  Received (UTC):     {call['received_utc']}   Call-ID: {call['call_id']}",
            f"  Upstream provider:  {_join(up['name'], up['frn'] and 'FRN ' + up['frn'], up['rmd'], up['country'])}",
            f"  Upstream contact:   {up['contact'] or '(not configured: trunks[].provider.contact)'}",
            f"  Ingress:            trunk {up['trunk']} ({up['trunk_role']}), from {up['source']}",
            f"  Calling number:     {call['calling']['e164'] or '-'} (as received: {call['calling']['as_received']})",
            f"  Called number:      {call['called']['e164'] or '-'} (as received: {call['called']['as_received']})",
            f"  Identity received:  {ident['verstat']}"
            + (f", attestation {ident['attest']}" if ident["attest"] else "")
            + (f", signer SPC {ident['signer_spc']}" if ident["signer_spc"] else "")
            + (f", origid {ident['origid']}" if ident["origid"] else "")
            + (f", x5u {ident['x5u']}" if ident["x5u"] else "")
            + (f" ({', '.join(ident['reasons'])})" if ident["reasons"] else ""),
            f"  Our action:         {act['action']}" + (f" {act['status']}" if act["status"] else "")
            + _rule_text(act)
            + (f" (notice {act['notice']})" if act["notice"] else "")
            + (f" to {act['next_hop']}" if act["next_hop"] else ""),
            "  Signed by us:       " + ("no" if not signed["signed"] else _join(
                signed.get("attest") and "attestation " + signed["attest"]
                + (f" (decided by rule {signed['attest_rule']})" if signed.get("attest_rule") else ""),
                signed.get("origid") and "origid " + signed["origid"],
                signed.get("x5u") and "x5u " + signed["x5u"])
                + (" (attestation and x5u as configured now)" if signed.get("note") else "")),
        ]
    return "\n".join(lines) + "\n"


def _rule_text(act: dict[str, Any]) -> str:
    if not act["rule"]:
        return ""
    would = act["shadow_action"]
    if would and would != act["action"]:  # shadow mode, or an emergency call no rule may block
        return f" (rule {act['rule']} chose {would}; not applied: shadow mode or an emergency call)"
    return f" by rule {act['rule']}"


def _join(*parts: object) -> str:
    return ", ".join(str(p) for p in parts if p) or "-"


def plus(e164: str | None) -> str | None:
    """E.164 digits with their +; short codes (911, 988) stay as they are."""
    if not e164:
        return None
    return "+" + e164 if len(e164) > 6 else e164
