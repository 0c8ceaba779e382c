"""Compile a rule's action (or the policy ``default``) into a ``Decide`` closure.

Everything static (status line, headers, tag) is built into a ``Decision`` once, here;
at evaluation the closure returns that object, or picks a prebuilt one by the first
verification reason, or copies it to add the call's notice reference. Which status and
headers a reject gets is spelled out in model.py's docstring.

Keys: ``action`` (reject|forward); reject: ``status`` (a code or "603+"), ``reason``,
``class`` (analytics|deterministic|notice), ``retry_after`` (503 only); forward:
``sign``, ``tag: {display_prefix, headers}``, ``to`` (a SIP URI), ``class`` (recorded).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import replace
from typing import Any

from sipguard.errors import ConfigError
from sipguard.policy.decision import Decision, Tag
from sipguard.policy.facts import Facts
from sipguard.policy.model import (
    RULE_CLASSES,
    STATUS_PHRASES,
    Decide,
    Problems,
    Redress,
    declined,
    explicit,
    network_blocked,
    safe_text,
)
from sipguard.shaken.reasons import RFC8224_RESPONSE
from sipguard.yamlconf import Section

ACTIONS = ("reject", "forward")
REJECT_KEYS = ("status", "reason", "class", "retry_after")
FORWARD_KEYS = ("sign", "tag", "to", "class")

# Headers the proxy itself writes or must keep intact; a tag may not set them.
_MANAGED_HEADERS = frozenset({
    "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "contact", "m",
    "max-forwards", "content-length", "l", "content-type", "c", "route", "record-route",
    "identity", "y", "p-asserted-identity",
})
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")          # RFC 3261 token, for header names
_HOSTNAME = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?")
_SIP_URI = re.compile(r"sips?:(?:[^@\s;<>\"]+@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:;\s<>\"]+)"
                      r"(?::(?P<port>[0-9]{1,5}))?(?P<params>(?:;[^;\s<>\"]+)*)")


def compile_action(sec: Section, name: str | None, redress: Redress | None,
                   problems: Problems) -> tuple[str, str | None, Decide]:
    """``(action, class, decide)`` for a rule or the default; errors go to ``problems``."""
    action = sec.choice("action", ACTIONS)
    rule_class = _guard(problems, sec.choice, "class", RULE_CLASSES, None)
    who = "this rule" if name is not None else "the default"
    if action == "reject":
        _refuse(sec, ("sign", "tag", "to"), "forward", f"{who} rejects", problems)
        return action, rule_class, _reject(sec, name, rule_class, redress, problems)
    _refuse(sec, ("status", "reason", "retry_after"), "reject", f"{who} forwards", problems)
    return action, rule_class, _forward(sec, name, rule_class, problems)


def _refuse(sec: Section, keys: tuple[str, ...], other: str, verb: str, problems: Problems) -> None:
    for key in keys:
        if key in sec:
            problems.add(sec.error(key, f"{key} applies to action: {other} only; {verb}"))


def _guard(problems: Problems, fn: Any, *args: Any, default: Any = None) -> Any:
    """Run one getter; on ConfigError record it and carry on with ``default``."""
    try:
        return fn(*args)
    except ConfigError as exc:
        problems.add(exc)
        return default


# -- reject -------------------------------------------------------------------------------

def _reject(sec: Section, name: str | None, rule_class: str | None, redress: Redress | None,
            problems: Problems) -> Decide:
    status = _guard(problems, _status, sec)
    reason = _guard(problems, _reason, sec)
    retry_after = _guard(problems, sec.int, "retry_after", None, 0, 86400)
    if retry_after is not None and status != 503:
        problems.add(sec.error("retry_after", "retry_after goes with status: 503 only"))
    if status == "603+" or (status is None and rule_class == "analytics"):
        if redress is not None and redress.empty:
            key = "status" if status == "603+" else "class"
            problems.add(sec.error(key, "603+ carries the operator's redress contact: set "
                                   "blocking.redress (url, tel or email) in the config"))
        code, phrase, headers = network_blocked(redress or Redress())
    elif status is None and rule_class in ("deterministic", "notice"):
        code, phrase, headers = declined(reason)
    elif status is None:
        return _by_verification(name, rule_class, reason)
    else:
        code, phrase, headers = explicit(status, reason, redress or Redress(), retry_after)
    decision = Decision("reject", status=code, phrase=phrase, headers=headers, rule=name,
                        rule_class=rule_class)
    if rule_class == "notice":
        return _with_notice(decision)
    return lambda _f: decision


def _status(sec: Section) -> int | str | None:
    raw = sec.raw("status")
    if raw is None:
        return None
    if raw == "603+":
        return "603+"
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in STATUS_PHRASES:
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool) and 400 <= raw <= 699:
        raise sec.error("status", f"{raw} is not a SIP response code sipguard knows; use one of: "
                        f"{', '.join(map(str, STATUS_PHRASES))} or 603+")
    raise sec.error("status", f"status must be a SIP failure code (400-699) or 603+, got {raw!r}")


def _reason(sec: Section) -> str | None:
    reason = sec.str("reason", default=None)
    if reason is not None and not safe_text(reason):
        raise sec.error("reason", "reason text may not contain quotes, backslashes or control characters")
    return reason


def _by_verification(name: str | None, rule_class: str | None, reason: str | None) -> Decide:
    """No status, no class: the RFC 8224 response of the call's first verification reason."""
    table: dict[str, Decision] = {}
    for code, (status, phrase) in RFC8224_RESPONSE.items():
        header = ("Reason", f'SIP;cause={status};text="{code.value}"')
        table[code.value] = Decision("reject", status=status, phrase=phrase, headers=(header,),
                                     rule=name, rule_class=rule_class)
    # No verification reason (the call passed, or a reason code we do not know): 403.
    fallback_headers = (("Reason", f'SIP;cause=403;text="{reason}"'),) if reason else ()
    fallback = Decision("reject", status=403, phrase=STATUS_PHRASES[403], headers=fallback_headers,
                        rule=name, rule_class=rule_class)
    lookup = table.get

    def decide(f: Facts) -> Decision:
        reasons = f.reasons
        return lookup(reasons[0], fallback) if reasons else fallback
    return decide


def _with_notice(decision: Decision) -> Decide:
    def decide(f: Facts) -> Decision:
        return replace(decision, notice=f.notice) if f.notice is not None else decision
    return decide


# -- forward ------------------------------------------------------------------------------

def _forward(sec: Section, name: str | None, rule_class: str | None, problems: Problems) -> Decide:
    sign = bool(_guard(problems, sec.bool, "sign", False, default=False))
    tag = _guard(problems, _tag, sec)
    to = _guard(problems, _to, sec)
    decision = Decision("forward", rule=name, rule_class=rule_class, sign=sign, tag=tag, to=to)
    if rule_class == "notice":
        return _with_notice(decision)
    return lambda _f: decision


def _tag(sec: Section) -> Tag | None:
    if "tag" not in sec:
        return None
    tag = sec.section("tag")
    tag.check_keys(("display_prefix", "headers", "passports"))
    passports = bool(tag.bool("passports", default=False))
    prefix = tag.str("display_prefix", default=None)
    if prefix is not None and not safe_text(prefix):
        raise tag.error("display_prefix", "display_prefix may not contain quotes, backslashes or "
                        "control characters")
    headers = tag.section("headers")
    pairs: list[tuple[str, str]] = []
    for header in headers.keys():
        if not _TOKEN.fullmatch(header):
            raise headers.error(header, f"{header!r} is not a valid SIP header name")
        if header.lower() in _MANAGED_HEADERS:
            raise headers.error(header, f"{header} is managed by sipguard; a tag cannot set it")
        value = headers.str(header)
        if any(ch in value for ch in "\r\n\0"):
            raise headers.error(header, "header values may not contain line breaks")
        pairs.append((header, value))
    if prefix is None and not pairs and not passports:
        raise sec.error("tag", "tag needs display_prefix, headers or passports: true")
    return Tag(display_prefix=prefix, headers=tuple(pairs), passports=passports)


def _to(sec: Section) -> str | None:
    uri = sec.str("to", default=None)
    if uri is None:
        return None
    match = _SIP_URI.fullmatch(uri)
    if match is None or not _valid_host(match["host"]):
        raise sec.error("to", f"{uri!r} is not a SIP URI like sip:192.0.2.10:5060 or sip:sbc.example.net")
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        raise sec.error("to", f"port {match['port']} is out of range (1-65535)")
    return uri


def _valid_host(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if host.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return _HOSTNAME.fullmatch(host) is not None
