"""Values the policy is made of: the redress contact, compiled rules, and the SIP text
(status phrases, Reason / Call-Info headers) a reject carries.

Everything a reject puts on the wire is built here, once, at load time, so the exact
header forms live in one place:

* 603+ (ATIS-1000099, 47 CFR 64.1200(k)(9) since 2026-03-25), for ``class: analytics``
  or ``status: 603+``::

      SIP/2.0 603 Network Blocked
      Reason: Q.850;cause=21;location=TN;text="Network Blocked;url=https://example.net/blocked-calls;tel=+18005550100;email=noc@example.net"

  RFC 3326 ``Reason`` with the Q.850 cause 21 (call rejected) that 603 interworks to,
  the RFC 8606 ``location`` (TN, transit network: what a gateway is; configurable as
  ``blocking.redress.location``) and a ``text`` carrying the operator's redress contact
  as ``name=value`` pairs (url, tel, email: only those configured). The ABNF of that
  ``text`` is in the paywalled ATIS document and was not read (research/regulatory.md
  Appendix B): keep this function the only place that spells it.
* deterministic / notice blocks: ``603 Decline`` + ``Reason: Q.850;cause=21`` (plus
  ``;text="<rule reason>"`` when the rule has one). R1.14's documented default.
* no status, no class: the RFC 8224 response of the first verification reason, with
  ``Reason: SIP;cause=<code>;text="<reason code>"``; with no reasons, ``403 Forbidden``.
* 608: ``608 Rejected`` + RFC 8688 ``Call-Info: <redress url>;purpose=jwscard``. RFC 8688
  wants that URI to dereference to a signed jCard; we point at the operator's redress
  page (the only contact we have). Without a redress url the Call-Info is left out.
* 503: ``Retry-After: <rule retry_after, default 30>``.
* any other code: the phrase from ``STATUS_PHRASES`` and, when the rule has a reason,
  ``Reason: SIP;cause=<code>;text="<reason>"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sipguard.errors import ConfigError
from sipguard.policy.decision import Decision
from sipguard.policy.facts import Facts
from sipguard.yamlconf import Section

Predicate = Callable[[Facts], bool]
Decide = Callable[[Facts], Decision]

# RFC 3261 section 21 plus the later registrations a policy may want (IANA "Response Codes").
# Only final failure codes: a rule may not answer 1xx/2xx/3xx.
STATUS_PHRASES: dict[int, str] = {
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    428: "Use Identity Header", 433: "Anonymity Disallowed", 436: "Bad Identity Info",
    437: "Unsupported Credential", 438: "Invalid Identity Header", 480: "Temporarily Unavailable",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}

NETWORK_BLOCKED = "Network Blocked"          # ATIS-1000099 status-line phrase of 603+
DEFAULT_RETRY_AFTER = 30                      # seconds, for a 503 rule without retry_after
RULE_CLASSES = ("analytics", "deterministic", "notice")
# RFC 8606 section 3: where in the network the cause arose.
LOCATIONS = ("U", "LPN", "LN", "TN", "RLN", "RPN", "INTL", "BI")

# Text that goes inside a quoted-string header parameter: no quotes, backslashes or
# control characters, so nothing a policy author writes can break or inject a header.
_SAFE_TEXT = re.compile(r'[^"\\\x00-\x1f\x7f]*')
_CONTACT = re.compile(r'[^"\\;\s\x00-\x1f\x7f]+')
_TEL = re.compile(r"\+?[0-9]{3,15}")
_EMAIL = re.compile(r'[^@"\\;\s]+@[^@"\\;\s]+\.[^@"\\;\s]+')


def safe_text(value: str) -> bool:
    """True when ``value`` can go inside ``text="..."`` or a display name unchanged."""
    return _SAFE_TEXT.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Redress:
    """The operator's single point of contact for erroneously blocked calls (R1.18).

    Config ``blocking.redress``: ``{url, tel, email, location}``; it goes into the 603+
    Reason text and the 608 Call-Info.
    """

    url: str | None = None
    tel: str | None = None
    email: str | None = None
    location: str = "TN"

    @classmethod
    def from_section(cls, sec: Section) -> Redress:
        sec.check_keys(("url", "tel", "email", "location"))
        url = sec.str("url", default=None)
        tel = sec.str("tel", default=None)
        email = sec.str("email", default=None)
        location = sec.choice("location", LOCATIONS, default="TN")
        if url is not None and (not url.startswith("https://") or not _CONTACT.fullmatch(url)):
            raise sec.error("url", "must be an https:// URL without spaces, quotes or ';'")
        if tel is not None and not _TEL.fullmatch(tel):
            raise sec.error("tel", "must be a phone number like +18005550100")
        if email is not None and not _EMAIL.fullmatch(email):
            raise sec.error("email", "must be an address like noc@example.net")
        return cls(url, tel, email, location)

    @property
    def empty(self) -> bool:
        return self.url is None and self.tel is None and self.email is None


class Cond(NamedTuple):
    """A compiled condition: a Python expression over ``f`` (the Facts) and the values
    its names stand for (conditions.py builds these; the engine chains them)."""

    src: str
    env: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule after loading: what it matches and what it decides."""

    name: str
    line: int
    action: str
    rule_class: str | None
    match: Predicate
    decide: Decide
    catch_all: bool
    condition: Cond


def network_blocked(redress: Redress) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    """The 603+ status, phrase and headers (see the module docstring)."""
    pairs = [f"{name}={value}" for name, value in
             (("url", redress.url), ("tel", redress.tel), ("email", redress.email)) if value]
    text = ";".join([NETWORK_BLOCKED, *pairs])
    reason = f'Q.850;cause=21;location={redress.location};text="{text}"'
    return 603, NETWORK_BLOCKED, (("Reason", reason),)


def declined(reason: str | None) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    """Deterministic block: 603 Decline + Q.850 cause 21 (R1.14 default)."""
    header = "Q.850;cause=21" + (f';text="{reason}"' if reason else "")
    return 603, STATUS_PHRASES[603], (("Reason", header),)


def explicit(status: int, reason: str | None, redress: Redress,
             retry_after: int | None) -> tuple[int, str, tuple[tuple[str, str], ...]]:
    """A rule's own status code with the headers that code calls for."""
    if status == 603:
        return declined(reason)
    headers: list[tuple[str, str]] = []
    if reason:
        headers.append(("Reason", f'SIP;cause={status};text="{reason}"'))
    if status == 608 and redress.url:
        headers.append(("Call-Info", f"<{redress.url}>;purpose=jwscard"))
    if status == 503:
        headers.append(("Retry-After", str(retry_after if retry_after is not None else DEFAULT_RETRY_AFTER)))
    return status, STATUS_PHRASES[status], tuple(headers)



class Problems:
    """Collects every ConfigError of one policy file (``policy check`` shows them all)."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.errors.append(error)
