"""STI certificates: trust anchors, chain building, TNAuthList/SPC, the verdict for an x5u body.

Pure (data in, verdict out): the fetcher brings the bytes, this module says whether they form
a usable SHAKEN credential. Validation is done once per downloaded body and the result cached;
per call only the validity window is compared with `iat` and `now` (Kamailio PR #4202 removed a
path check that ran twice per call).

Chains are built and checked by `cryptography.x509.verification` (RFC 5280 path validation:
signatures, validity, basicConstraints and path length, name constraints, the signature
algorithms allowed) with an STI policy in place of the web-PKI one (ATIS-1000080): no SAN or
EKU is asked of the leaf (STI leaves have neither); a leaf keyUsage, when present, allows
digitalSignature; issuers are CAs (basicConstraints CA) and a keyUsage on them allows
keyCertSign; the leaf key is P-256; TNAuthList is required on the leaf (parsed here, as the
policy API cannot name an extension cryptography does not know). The path is checked at a
moment inside the leaf's validity, so a chain that is only expired says `cert-expired` (per
call, against iat and now: Credential.check_time) rather than `cert-untrusted`.
Measured against the hand-written walk this replaced: bench/RESULTS.md ("Chain building").
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from sipguard.errors import SipguardError
from sipguard.shaken.passport import check_window
from sipguard.shaken.reasons import Reason

TNAUTHLIST_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.26")
MAX_CHAIN = 6


class TrustStoreError(SipguardError):
    """The configured trust anchors cannot be used (missing, unreadable, no certificate)."""


@dataclass(frozen=True, slots=True)
class TrustStore:
    by_subject: dict[bytes, tuple[x509.Certificate, ...]]
    count: int
    store: Store | None = None  # the anchors for x509.verification (None: no anchor at all)

    def issuers_of(self, cert: x509.Certificate) -> tuple[x509.Certificate, ...]:
        return self.by_subject.get(cert.issuer.public_bytes(), ())

    @classmethod
    def of(cls, certs: list[x509.Certificate]) -> TrustStore:
        by_subject: dict[bytes, list[x509.Certificate]] = {}
        for cert in certs:
            by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)
        return cls({k: tuple(v) for k, v in by_subject.items()}, len(certs), Store(certs) if certs else None)


@dataclass(frozen=True, slots=True)
class TnAuth:
    """RFC 8226 TNAuthList: SPCs, single TNs and TN ranges (start, count)."""

    spcs: tuple[str, ...]
    tns: tuple[str, ...]
    ranges: tuple[tuple[str, int], ...]

    def covers(self, tn: str) -> bool:
        """For delegate certificates (ATIS-1000092): is the TN inside the list?"""
        if tn in self.tns:
            return True
        for start, count in self.ranges:
            if len(tn) == len(start) and tn.isdigit() and start.isdigit():
                if 0 <= int(tn) - int(start) < count:
                    return True
        return False


@dataclass(frozen=True, slots=True)
class Credential:
    """A validated x5u body: the leaf key, the SPC, the chain and its joint validity window."""

    key: ec.EllipticCurvePublicKey
    spc: str | None
    tnauth: TnAuth
    chain: tuple[x509.Certificate, ...]  # leaf first, trust anchor last
    not_before: float  # latest notBefore of the chain
    not_after: float  # earliest notAfter of the chain

    def check_time(self, iat: float, now: float) -> Reason | None:
        """CERT_EXPIRED unless both ``iat`` and ``now`` are inside the chain's validity window."""
        return check_window(self.not_before, self.not_after, iat, now)


def load_trust_anchors(path: str) -> TrustStore:
    """Read a PEM file, or every *.pem / *.crt / *.cer file of a folder."""
    files: list[str]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, name) for name in os.listdir(path)
                       if name.lower().endswith((".pem", ".crt", ".cer")))
    elif os.path.isfile(path):
        files = [path]
    else:
        raise TrustStoreError(f"file or folder not found: {path}")
    anchors: list[x509.Certificate] = []
    for name in files:
        try:
            with open(name, "rb") as fh:
                anchors += parse_certificates(fh.read())
        except OSError as exc:
            raise TrustStoreError(f"cannot read {name}: {exc.strerror}") from None
    if not anchors:
        raise TrustStoreError(f"no PEM certificate found in {path}")
    return TrustStore.of(anchors)


def parse_certificates(data: bytes) -> list[x509.Certificate]:
    """PEM (one or more certificates) or a single DER certificate; [] when neither."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        if data[:1] == b"\x30":
            return [x509.load_der_x509_certificate(data)]
    except ValueError:
        pass
    return []


def build_credential(body: bytes, store: TrustStore, now: float | None = None) -> Credential | Reason:
    """Validate an x5u body (leaf + optional intermediates) against the STI trust anchors."""
    certs = parse_certificates(body)
    if not certs:
        return Reason.X5U_FETCH_FAILED  # the repository served something that is not a certificate
    leaf, pool = certs[0], certs[1:]
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return Reason.CERT_UNTRUSTED  # ES256 needs P-256: nothing else is a SHAKEN credential
    chain = chain_to(leaf, pool, store, now)
    if chain is None:
        return Reason.CERT_UNTRUSTED
    tnauth = parse_tnauthlist(leaf)
    if tnauth is None or not (tnauth.spcs or tnauth.tns or tnauth.ranges):
        return Reason.CERT_NO_TNAUTHLIST
    not_before = max(c.not_valid_before_utc.timestamp() for c in chain)
    not_after = min(c.not_valid_after_utc.timestamp() for c in chain)
    spc = tnauth.spcs[0] if tnauth.spcs else None
    return Credential(key, spc, tnauth, tuple(chain), not_before, not_after)


def _leaf_usage(_policy: Any, _cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.digital_signature:  # absent on many live leaves: tolerated
        raise ValueError("leaf keyUsage without digitalSignature")


def _leaf_not_ca(_policy: Any, _cert: x509.Certificate, bc: x509.BasicConstraints | None) -> None:
    if bc is not None and bc.ca:
        raise ValueError("a CA certificate cannot sign PASSporTs")


def _issuer_is_ca(_policy: Any, _cert: x509.Certificate, bc: x509.BasicConstraints | None) -> None:
    if bc is None or not bc.ca:
        raise ValueError("issuer without basicConstraints CA")


def _issuer_usage(_policy: Any, _cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("issuer keyUsage without keyCertSign")


_AGNOSTIC = Criticality.AGNOSTIC
# STI (ATIS-1000080) in place of the web-PKI profile: every other extension is allowed
STI_LEAF_POLICY = (ExtensionPolicy.permit_all()
                   .may_be_present(x509.KeyUsage, _AGNOSTIC, _leaf_usage)
                   .may_be_present(x509.BasicConstraints, _AGNOSTIC, _leaf_not_ca))
STI_CA_POLICY = (ExtensionPolicy.permit_all()
                 .require_present(x509.BasicConstraints, _AGNOSTIC, _issuer_is_ca)
                 .may_be_present(x509.KeyUsage, _AGNOSTIC, _issuer_usage))
ANY_LEAF_POLICY = ExtensionPolicy.permit_all()  # the STI-PA's list signer (trustlist.py)


def chain_to(leaf: x509.Certificate, pool: list[x509.Certificate], store: TrustStore,
             now: float | None = None,
             leaf_policy: ExtensionPolicy = STI_LEAF_POLICY) -> list[x509.Certificate] | None:
    """The path from ``leaf`` through ``pool`` to an anchor of ``store`` (leaf first, anchor
    last), or None when there is none. It is checked at ``now`` brought inside the joint
    validity of the certificates it can be made of (None: the start of that window): whether
    the path is valid at iat and now is the per-call check (Credential.check_time), which says
    `cert-expired` where a path check at now would say only "untrusted"."""
    if store.store is None:
        return None
    lo, hi = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    for cert in (*pool, *(a for c in (leaf, *pool) for a in store.issuers_of(c))):
        lo, hi = max(lo, cert.not_valid_before_utc), min(hi, cert.not_valid_after_utc)
    if lo > hi:  # no common moment: judge the leaf's own
        lo, hi = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    at = lo if now is None else min(max(dt.datetime.fromtimestamp(now, dt.UTC), lo), hi)
    verifier = (PolicyBuilder().store(store.store).time(at).max_chain_depth(MAX_CHAIN)
                .extension_policies(ca_policy=STI_CA_POLICY, ee_policy=leaf_policy)
                .build_client_verifier())
    try:
        return list(verifier.verify(leaf, pool).chain)
    except (VerificationError, ValueError, TypeError):
        return None


def crl_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """HTTP(S) URLs of the certificate's CRL distribution points."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    urls = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith("http"):
                urls.append(name.value)
    return tuple(urls)


# -- TNAuthList (RFC 8226 section 9) -------------------------------------------------------------
# TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry
# TNEntry ::= CHOICE { spc [0] ServiceProviderCode, range [1] TelephoneNumberRange, one [2] TelephoneNumber }
# The RFC module uses EXPLICIT tags (A0 16 ..); some CAs issued IMPLICIT ones (80 ..): accept both.


def parse_tnauthlist(cert: x509.Certificate) -> TnAuth | None:
    try:
        ext = cert.extensions.get_extension_for_oid(TNAUTHLIST_OID).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    raw = getattr(ext, "value", None)
    return parse_tnauthlist_der(raw) if isinstance(raw, bytes) else None


def parse_tnauthlist_der(data: bytes) -> TnAuth | None:
    outer = _read_tlv(data, 0)
    if outer is None or outer[0] != 0x30 or outer[2] != len(data):
        return None
    spcs: list[str] = []
    tns: list[str] = []
    ranges: list[tuple[str, int]] = []
    pos = outer[1]
    while pos < len(data):
        tlv = _read_tlv(data, pos)
        if tlv is None:
            return None
        tag, start, end = tlv
        content = data[start:end]
        number = tag & 0x1F
        if tag & 0xC0 != 0x80 or number > 2:
            return None  # not a context-specific [0]/[1]/[2] TNEntry
        explicit = tag & 0x20 and (number != 1 or content[:1] == b"\x30")
        if explicit:  # EXPLICIT: the context tag wraps the universal IA5String / SEQUENCE
            inner = _read_tlv(content, 0)
            if inner is None or inner[2] != len(content):
                return None
            itag, istart, iend = inner
            content_tag, content = itag, content[istart:iend]
        else:
            content_tag = 0x16 if number != 1 else 0x30
        if number in (0, 2):
            if content_tag != 0x16 or not content:
                return None
            text = _ia5(content)
            if text is None:
                return None
            (spcs if number == 0 else tns).append(text)
        else:
            rng = _parse_range(content)
            if rng is None:
                return None
            ranges.append(rng)
        pos = end
    return TnAuth(tuple(spcs), tuple(tns), tuple(ranges))


def _parse_range(content: bytes) -> tuple[str, int] | None:
    first = _read_tlv(content, 0)
    if first is None or first[0] != 0x16:
        return None
    second = _read_tlv(content, first[2])
    if second is None or second[0] != 0x02 or second[2] != len(content):
        return None
    start = _ia5(content[first[1]:first[2]])
    count = int.from_bytes(content[second[1]:second[2]], "big", signed=True)
    return (start, count) if start and count > 0 else None


def _ia5(raw: bytes) -> str | None:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _read_tlv(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, content start, content end) of the DER element at pos; None if truncated."""
    if pos + 2 > len(data):
        return None
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 3 or pos + size > len(data):
            return None
        length = int.from_bytes(data[pos:pos + size], "big")
        pos += size
    end = pos + length
    return (tag, pos, end) if end <= len(data) else None
