"""The one source of truth for verification reason codes, verstat values and the
RFC 8224 responses they map to (CONTRACT.md, "Verification reason codes").
"""

from __future__ import annotations

import enum


class Verstat(enum.StrEnum):
    """3GPP TS 24.229 verstat values (the parameter on P-Asserted-Identity / From)."""

    PASSED = "TN-Validation-Passed"
    FAILED = "TN-Validation-Failed"
    NONE = "No-TN-Validation"


class Reason(enum.StrEnum):
    """Stable machine-readable verification failure codes (CONTRACT.md)."""

    NO_IDENTITY = "no-identity"
    MALFORMED_IDENTITY = "malformed-identity"
    BAD_ALG = "bad-alg"
    BAD_PPT = "bad-ppt"
    MISSING_ALG = "missing-alg"  # Identity header without `alg` (ATIS-1000074; shaken.identity.lenient)
    MISSING_PPT = "missing-ppt"  # Identity header without `ppt` (ATIS-1000074; shaken.identity.lenient)
    X5U_MISMATCH = "x5u-mismatch"
    STALE_IAT = "stale-iat"
    FUTURE_IAT = "future-iat"
    X5U_FETCH_FAILED = "x5u-fetch-failed"
    X5U_REFUSED = "x5u-refused"
    CERT_UNTRUSTED = "cert-untrusted"
    CERT_EXPIRED = "cert-expired"
    CERT_REVOKED = "cert-revoked"
    CERT_NO_TNAUTHLIST = "cert-no-tnauthlist"
    BAD_SIGNATURE = "bad-signature"
    ORIG_MISMATCH = "orig-mismatch"
    DEST_MISMATCH = "dest-mismatch"
    BAD_CLAIMS = "bad-claims"
    # more Identity header values than shaken.identity.max_headers (the call fails: 438)
    TOO_MANY_IDENTITY = "too-many-identity"
    # div and rcd PASSporTs only (their PassportResult, never the call's verstat):
    DIV_CHAIN_BROKEN = "div-chain-broken"  # orig/div.tn do not link to the shaken PASSporT or the div before
    DIV_NO_HISTORY = "div-no-history"  # the retarget is in no History-Info / Diversion of the call
    RCDI_MISMATCH = "rcdi-mismatch"  # an rcdi digest does not match the inline content it names


# The Identity header parameters a SHAKEN verifier may be told to do without
# (`shaken.identity.lenient`); `info` is not one of them: RFC 8224 makes it mandatory and it is
# what binds the header to the certificate the PASSporT names.
LENIENT_PARAMS = ("alg", "ppt")

# RFC 8224 section 6.2.2 responses. The status a policy `reject` without `status` sends.
RFC8224_RESPONSE: dict[Reason, tuple[int, str]] = {
    Reason.NO_IDENTITY: (428, "Use Identity Header"),
    Reason.STALE_IAT: (403, "Stale Date"),
    Reason.FUTURE_IAT: (403, "Stale Date"),
    Reason.X5U_FETCH_FAILED: (436, "Bad Identity Info"),
    Reason.X5U_REFUSED: (436, "Bad Identity Info"),
    Reason.CERT_UNTRUSTED: (437, "Unsupported Credential"),
    Reason.CERT_EXPIRED: (437, "Unsupported Credential"),
    Reason.CERT_REVOKED: (437, "Unsupported Credential"),
    Reason.CERT_NO_TNAUTHLIST: (437, "Unsupported Credential"),
    Reason.MALFORMED_IDENTITY: (438, "Invalid Identity Header"),
    Reason.BAD_ALG: (438, "Invalid Identity Header"),
    Reason.BAD_PPT: (438, "Invalid Identity Header"),
    Reason.MISSING_ALG: (438, "Invalid Identity Header"),
    Reason.MISSING_PPT: (438, "Invalid Identity Header"),
    Reason.X5U_MISMATCH: (438, "Invalid Identity Header"),
    Reason.BAD_SIGNATURE: (438, "Invalid Identity Header"),
    Reason.ORIG_MISMATCH: (438, "Invalid Identity Header"),
    Reason.DEST_MISMATCH: (438, "Invalid Identity Header"),
    Reason.BAD_CLAIMS: (438, "Invalid Identity Header"),
    Reason.TOO_MANY_IDENTITY: (438, "Invalid Identity Header"),
    Reason.DIV_CHAIN_BROKEN: (438, "Invalid Identity Header"),
    Reason.DIV_NO_HISTORY: (438, "Invalid Identity Header"),
    Reason.RCDI_MISMATCH: (438, "Invalid Identity Header"),
}
