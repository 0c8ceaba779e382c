"""Turning a Decision into SIP: the changes a forward makes, the 302 of redirect mode,
the response of a reject. Pure functions over sipguard.sip messages (no I/O).

verstat (3GPP TS 24.229 section 7.2A.20): a parameter of the tel URI, or of the user
part of a sip URI with user=phone (``sip:+12025550123;verstat=TN-Validation-Passed@host``).
It goes on the identity the callee is shown and whose number the PASSporT's orig was checked
against (pipeline.Call): every P-Asserted-Identity value, or From when there is none; never
on From beside a PAI. ``TN-Validation-Passed`` only on a value carrying the number the
PASSporT named: a PAI whose sip and tel URIs carry two numbers gets Passed on the signed one
and ``TN-Validation-Failed`` on the other. Any verstat that arrives from upstream is removed
first: an upstream must not claim a verification it did not earn.
"""

from __future__ import annotations

import re

from sipguard.numbers import parse_tn, uri_span
from sipguard.pipeline import Outcome
from sipguard.policy.decision import Decision
from sipguard.policy.facts import shared_text
from sipguard.shaken.passport import tn_matches
from sipguard.shaken.reasons import Verstat
from sipguard.shaken.result import Verification
from sipguard.sip import Request, build_response
from sipguard.sip.parser import header_line, response_end, response_head

_VERSTAT = re.compile(r";verstat=[^;@>?,]*", re.IGNORECASE)

PHRASES = {
    200: "OK", 302: "Moved Temporarily", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    416: "Unsupported URI Scheme", 420: "Bad Extension",
    481: "Call/Transaction Does Not Exist", 483: "Too Many Hops", 487: "Request Terminated",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "Version Not Supported", 513: "Message Too Large",
}


def strip_verstat(value: str) -> str:
    return _VERSTAT.sub("", value) if "verstat" in value.lower() else value


def add_verstat(value: str, verstat: str) -> str:
    """Put ;verstat= into the URI of a name-addr or addr-spec header value."""
    start = value.find("<")
    if start >= 0:
        end = value.find(">", start)
        if end < 0:
            return value
        return value[:start + 1] + _uri_with_verstat(value[start + 1:end], verstat) + value[end:]
    # addr-spec without <>: header params follow the first ';' of the URI, so the
    # verstat goes into the user part (sip) or right after the number (tel).
    uri, sep, params = value.partition(";") if value.lower().startswith("tel:") else (value, "", "")
    if sep:
        return f"{uri};verstat={verstat};{params}"
    return _uri_with_verstat(value, verstat)


def _uri_with_verstat(uri: str, verstat: str) -> str:
    low = uri.lower()
    if low.startswith("tel:"):
        head, sep, rest = uri.partition(";")
        return f"{head};verstat={verstat}" + (sep + rest if sep else "")
    at = uri.find("@")
    if at < 0:
        return uri  # sip URI without a user part: nowhere to put it (caller is not a number)
    return f"{uri[:at]};verstat={verstat}{uri[at:]}"


def verstat_of(value: str, ver: Verification) -> str:
    """The verstat one identity value (a PAI value, or From without PAI) is given: the call's,
    except that Passed stays only where the value carries the number the PASSporT named."""
    if ver.verstat is _PASSED and not tn_matches(ver.orig_tn or "", forms_of(value)):
        return _FAILED_TEXT
    return shared_text(ver.verstat)


def forms_of(value: str) -> tuple[str, ...]:
    """``parse_tn(value).forms`` of a header value, read from its URI when it is a name-addr.
    parse_tn reads only what lies between a value's first ``<`` and the ``>`` after it (the
    display name and the header params, such as a per-call tag, go), and the forms depend on
    nothing else: parsed alone, that URI gives the same forms when it holds no ``<`` of its own
    (no forms for an empty one, which parse_tn reads as anonymous in ``<>`` and as no number
    alone; a value with a ``<`` in its display name is parsed whole). Where parse_tn caches (the
    forms its C reading does not take: names, anonymous, 011 ...), that URI is the entry Call.of
    made of it, where the whole value, tag and all, never hits it
    (tests/property/test_verstat_forms.py)."""
    start, end = uri_span(value)
    if start and end >= 0 and value.find("<", start, end) < 0:  # alone, a second < would be read as the first
        return parse_tn(value[start:end]).forms
    return parse_tn(value).forms


# an enum member and its text read per call cost more than module globals (the texts: one
# table for the facts, the records and these lines, policy.facts.shared_text)
_PASSED, _FAILED, _FAILED_TEXT = Verstat.PASSED, Verstat.FAILED, shared_text(Verstat.FAILED)


def _identity_headers(req: Request, outcome: Outcome) -> list[tuple[str, str]]:
    """What the proxy adds to a forwarded INVITE, also carried in a 302."""
    decision, ver = outcome.decision, outcome.verification
    out: list[tuple[str, str]] = []
    for value in req.headers("P-Asserted-Identity"):
        bare = strip_verstat(value)
        out.append(("P-Asserted-Identity", add_verstat(bare, verstat_of(bare, ver))))
    if outcome.identity_added:
        out.append(("Identity", outcome.identity_added))
    if ver.reasons and ver.verstat is _FAILED:
        from sipguard.shaken.reasons import RFC8224_RESPONSE
        code = RFC8224_RESPONSE[ver.reasons[0]][0]
        out.append(("Reason", f'SIP;cause={code};text="{ver.reasons[0]}"'))
    if decision.tag is not None:
        out.extend(decision.tag.headers)
        if decision.tag.passports:
            out.extend(passport_headers(outcome))
    return out


PASSPORT_HEADERS = ("X-Sipguard-Div", "X-Sipguard-Rcd", "X-Sipguard-Replayed")


def passport_headers(outcome: Outcome) -> list[tuple[str, str]]:
    """A rule's ``tag: {passports: true}``: what the div, rcd and replay checks found, for the
    policy downstream (only what the call carried): ``X-Sipguard-Div: <div.verstat>;count=N``,
    ``X-Sipguard-Rcd: verified|failed``, ``X-Sipguard-Replayed: yes|unknown``."""
    facts = outcome.facts
    out: list[tuple[str, str]] = []
    if facts.div_count:
        out.append(("X-Sipguard-Div", f"{facts.div_verstat};count={facts.div_count}"))
    if facts.rcd_present:
        out.append(("X-Sipguard-Rcd", "verified" if facts.rcd_verified else "failed"))
    if facts.passport_replayed is not False:
        out.append(("X-Sipguard-Replayed", "yes" if facts.passport_replayed else "unknown"))
    return out


def apply_forward(req: Request, outcome: Outcome) -> None:
    """Mutate an accepted INVITE: verstat, signature, tags. Via/Max-Forwards are the relay's."""
    decision = outcome.decision
    headers = _identity_headers(req, outcome)
    req.remove_header("X-Sipguard-Source")  # between Kamailio and us only
    for name in PASSPORT_HEADERS:  # ours only: an upstream's claim of them goes
        if req.has(name):
            req.remove_header(name)
    pai_present = req.has("P-Asserted-Identity")
    if pai_present:
        req.remove_header("P-Asserted-Identity")
    from_value = req.header("From") or ""
    new_from = strip_verstat(from_value)
    if not pai_present:  # From is the identity shown; beside a PAI it carries no verstat
        new_from = add_verstat(new_from, verstat_of(new_from, outcome.verification))
    if decision.tag is not None and decision.tag.display_prefix:
        new_from = prefix_display(new_from, decision.tag.display_prefix)
    if new_from != from_value:
        req.set_header("From", new_from)
    for name, value in headers:
        req.append_header(name, value)


def prefix_display(value: str, prefix: str) -> str:
    """'"Bob" <sip:..>' -> '"SPAM? Bob" <sip:..>'; a bare URI gains a display name."""
    stripped = value.lstrip()
    if stripped.startswith('"'):
        return '"' + _quote(prefix) + stripped[1:]
    lt = stripped.find("<")
    if lt > 0:
        return '"' + _quote(prefix + stripped[:lt].strip()) + '" ' + stripped[lt:]
    if lt == 0:
        return '"' + _quote(prefix.rstrip()) + '" ' + stripped
    uri, sep, params = stripped.partition(";")
    return f'"{_quote(prefix.rstrip())}" <{uri}>' + (sep + params if sep else "")


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def redirect_response(req: Request, outcome: Outcome, contact: str, to_tag: str) -> bytes:
    """Redirect mode: the forward decision as a 302 whose Contact is the next hop and which
    carries what the proxy would have added (CONTRACT.md): PAI with verstat (always; Passed
    only on the value the PASSporT named), Identity when signed, tag headers; and for the
    policy downstream, X-Sipguard-Attest (the attestation of the PASSporT that verified,
    only when one did). The front proxy strips any verstat upstream put on From."""
    ver, decision = outcome.verification, outcome.decision
    extra = _identity_headers(req, outcome)
    if not req.has("P-Asserted-Identity"):
        # no PAI on the call: carry the verified caller as a PAI with verstat for the consumer
        caller = strip_verstat(_bare(req.header("From") or ""))
        extra.insert(0, ("P-Asserted-Identity", add_verstat(caller, verstat_of(caller, ver))))
    prefix = decision.tag.display_prefix if decision.tag else None
    if prefix:
        extra.append(("X-Sipguard-Display-Prefix", prefix))
    out = response_head(req, 302, PHRASES[302], to_tag)
    out.append(_contact_line(contact))
    for name, value in extra:
        out.append(header_line(name, value))
    out.append(_verdict_lines(shared_text(ver.verstat), ver.attest if ver.verstat is _PASSED else None, decision.rule))
    return response_end(out, b"")


# The lines of a 302 that repeat from call to call, encoded once: the Contact of each next hop,
# and the X-Sipguard-Verstat, -Attest and -Rule lines of each (verstat, attest, rule). Bounded:
# past LINES distinct ones a line is made per call, as before.
LINES = 256
_CONTACTS: dict[str, bytes] = {}
_VERDICTS: dict[tuple[str, str | None, str | None], bytes] = {}


def _contact_line(contact: str) -> bytes:
    line = _CONTACTS.get(contact)
    if line is None:
        line = header_line("Contact", f"<{contact}>")
        if len(_CONTACTS) < LINES:
            _CONTACTS[contact] = line
    return line


def _verdict_lines(verstat: str, attest: str | None, rule: str | None) -> bytes:
    """``X-Sipguard-Verstat``, then ``X-Sipguard-Attest`` (an attestation given) and
    ``X-Sipguard-Rule`` (a rule named), as one run of lines."""
    key = (verstat, attest, rule)
    lines = _VERDICTS.get(key)
    if lines is None:
        made = [header_line("X-Sipguard-Verstat", verstat)]
        if attest:
            made.append(header_line("X-Sipguard-Attest", attest))
        if rule:
            made.append(header_line("X-Sipguard-Rule", rule))
        lines = b"\r\n".join(made)
        if len(_VERDICTS) < LINES:
            _VERDICTS[key] = lines
    return lines


def _bare(value: str) -> str:
    """The name-addr of a From value without its header params (tag)."""
    gt = value.find(">")
    return value[:gt + 1] if gt >= 0 else value.split(";", 1)[0]


def reject_response(req: Request, decision: Decision, to_tag: str) -> bytes:
    status = decision.status or 403
    phrase = decision.phrase or PHRASES.get(status, "Rejected")
    return build_response(req, status, phrase, decision.headers, to_tag=to_tag)
