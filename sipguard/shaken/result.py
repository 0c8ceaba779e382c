"""The typed result of verifying a call's Identity headers (STI-VS)."""

from __future__ import annotations

from dataclasses import dataclass

from sipguard.shaken.reasons import Reason, Verstat


@dataclass(frozen=True, slots=True)
class DivInfo:
    """An RFC 8946 `div` PASSporT seen on the call. ``valid``: its signature, header and iat
    are good and it links into the chain (the call's shaken PASSporT, then div after div) and
    into the History-Info / Diversion the call carries; ``reasons`` say why not."""

    orig_tn: str | None
    dest_tns: tuple[str, ...]
    div_tn: str | None
    x5u: str | None
    valid: bool
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class PassportResult:
    """One Identity header's outcome, as the call record reports it."""

    ppt: str                    # shaken | div | rcd | another ppt (ignored) | "?" (unreadable)
    result: str                 # passed | failed | skipped (not needed) | ignored (unknown ppt)
    reasons: tuple[Reason, ...] = ()

    def text(self) -> str:
        """``shaken:passed``, ``div:failed:div-no-history+bad-signature``."""
        base = f"{self.ppt}:{self.result}"
        return base + ":" + "+".join(self.reasons) if self.reasons else base


@dataclass(frozen=True, slots=True)
class Verification:
    """What STI-VS concluded about a call.

    ``reasons`` is empty when the call passed, or when no Identity header was present
    (verstat No-TN-Validation, reasons ("no-identity",)).
    Claims (attest, origid, ...) come from the shaken PASSporT that decided the verstat.
    ``passports``: each Identity header's result in the order received, filled when the call
    carried more than one (one header: ``report`` derives it from the verstat).
    ``replay_key``: a short hash of the signature of the shaken PASSporT that decided, set
    only when that signature verified (a forged token must not poison the seen-set).
    ``rcd``: None without an rcd PASSporT, else whether every one verified (signature,
    header, iat, numbers, inline ``rcdi`` digests).
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
    div: tuple[DivInfo, ...] = ()
    rcd: bool | None = None
    passports: tuple[PassportResult, ...] = ()
    replay_key: str | None = None

    def __init__(self, verstat: Verstat, attest: str | None = None, orig_tn: str | None = None,
                 dest_tns: tuple[str, ...] = (), origid: str | None = None, x5u: str | None = None,
                 spc: str | None = None, iat: int | None = None, reasons: tuple[Reason, ...] = (),
                 div: tuple[DivInfo, ...] = (), rcd: bool | None = None,
                 passports: tuple[PassportResult, ...] = (), replay_key: str | None = None) -> None:
        # written out (dataclass keeps it): compiled, where the generated one runs interpreted
        object.__setattr__(self, "verstat", verstat)
        object.__setattr__(self, "attest", attest)
        object.__setattr__(self, "orig_tn", orig_tn)
        object.__setattr__(self, "dest_tns", dest_tns)
        object.__setattr__(self, "origid", origid)
        object.__setattr__(self, "x5u", x5u)
        object.__setattr__(self, "spc", spc)
        object.__setattr__(self, "iat", iat)
        object.__setattr__(self, "reasons", reasons)
        object.__setattr__(self, "div", div)
        object.__setattr__(self, "rcd", rcd)
        object.__setattr__(self, "passports", passports)
        object.__setattr__(self, "replay_key", replay_key)

    @property
    def passed(self) -> bool:
        return self.verstat is Verstat.PASSED

    @property
    def div_verstat(self) -> Verstat:
        """The div chain: No-TN-Validation without div PASSporTs, Passed when every one is
        valid and links into the chain, else Failed."""
        if not self.div:
            return Verstat.NONE
        return Verstat.PASSED if all(d.valid for d in self.div) else Verstat.FAILED

    def report(self) -> tuple[str, ...]:
        """Each Identity header's result for the call record (``PassportResult.text``)."""
        if self.passports:
            return tuple(p.text() for p in self.passports)
        verstat, reasons = self.verstat, self.reasons
        if verstat is _PASSED and not reasons:
            return _SHAKEN_PASSED  # nearly every signed call
        if verstat is _NONE and (not reasons or reasons == (Reason.NO_IDENTITY,)):
            return ()
        return (PassportResult("shaken", "passed" if verstat is _PASSED else "failed", reasons).text(),)


# member reads of an enum class cost more than a module global, on every call
_PASSED = Verstat.PASSED
_NONE = Verstat.NONE
_SHAKEN_PASSED = ("shaken:passed",)


NOT_VERIFIED = Verification(Verstat.NONE, reasons=(Reason.NO_IDENTITY,))
