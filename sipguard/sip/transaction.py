"""What makes two requests the same transaction: one definition for serve and replay.

RFC 3261 17.2.3: a request matches a server transaction when its top Via has the same
branch and the same sent-by (host and port) as the request that started it; CANCEL and
ACK of a non-2xx response carry the INVITE's branch, so the INVITE's key finds its
transaction. The key is a plain string, cheap to hash and to keep for the transaction's
lifetime. Sans-I/O like the rest of ``sipguard.sip``: the proxy's transaction table
(``proxy/transactions.py``) and anything that reads captures use this one function.
"""

from __future__ import annotations

from typing import Protocol


class SentBy(Protocol):
    """What the key reads of a top Via: ``sip.Via``, or another parser's (replay takes one)."""

    @property
    def branch(self) -> str | None: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int | None: ...


def server_key(via: SentBy) -> str:
    """RFC 3261 17.2.3: a server transaction is its top Via's branch and sent-by."""
    return f"{via.branch}|{via.host}|{via.port}"
