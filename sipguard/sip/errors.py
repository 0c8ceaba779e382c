"""The one exception the SIP layer raises on bad bytes, carrying the answer to send."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipguard.errors import SipguardError

if TYPE_CHECKING:
    from sipguard.sip.message import Request


class SipParseError(SipguardError):
    """A malformed SIP message.

    ``reason`` is short text for a log line and the Warning header; ``status_hint`` the
    response to send (400, 505 for another SIP version, 513 past the size limit);
    ``partial`` the request when enough of it parsed to build that response (start line,
    Via, From, To, Call-ID, CSeq), else None: the message can only be dropped.
    """

    def __init__(self, reason: str, status_hint: int = 400, partial: Request | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint
        self.partial = partial
