"""The typed result of verifying a call's Identity headers (STI-VS)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sipguard.shaken.reasons import Reason, Verstat


@dataclass(frozen=True, slots=True)
class DivInfo:
    """An RFC 8946 `div` PASSporT seen on the call (reported, checked when possible)."""

    orig_tn: str | None
    dest_tns: tuple[str, ...]
    div_tn: str | None
    x5u: str | None
    valid: bool


@dataclass(frozen=True, slots=True)
class Verification:
    """What STI-VS concluded about a call.

    ``reasons`` is empty when the call passed, or when no Identity header was present
    (verstat No-TN-Validation, reasons ("no-identity",)).
    Claims (attest, origid, ...) come from the shaken PASSporT that decided the verstat.
    """

    verstat: Verstat
    attest: str | None = None
    orig_tn: str | None = None
    dest_tns: tuple[str, ...] = ()
    origid: str | None = None
    x5u: str | None = None
    spc: str | None = None
    iat: int | None = None
    reasons: tuple[Reason, ...] = ()
    div: tuple[DivInfo, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.verstat is Verstat.PASSED


NOT_VERIFIED = Verification(Verstat.NONE, reasons=(Reason.NO_IDENTITY,))
