"""The STI-PA's list of approved STI-CAs: read it, check it, turn it into a trust-anchor file.

The STI-PA publishes the list as a JWS signed ES256 whose `x5u` names the signer's chain (to the
STI-PA root), with claims `version`, `sequence`, `exp` and `trustList` (PEM certificates); its
API answers `{"status": "success", "caList": "<JWS>"}` (research/regulatory.md section 7.1).
Pure: bytes and the signer's chain in, a TrustList or a TrustListError out; the download, the
file and the signal are `sipguard trust update`'s (cli/trust.py).

Everything here is hostile until checked: the size, the number of certificates and the JSON
depth are bounded; the signature is checked over the bytes received with a P-256 key from a
chain that ends at the configured STI-PA root; an expired list or one older than the file in
use (a lower `sequence`: a replay that would bring back a removed STI-CA) is refused. Only a
plain PEM bundle from an operator's own file (`--file`, a lab or a copy made by hand) is
accepted unsigned.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from sipguard.errors import SipguardError
from sipguard.shaken import passport as pp
from sipguard.shaken.certs import ANY_LEAF_POLICY, TrustStore, chain_to, parse_certificates

MAX_LIST_BYTES = 4 * 1024 * 1024  # the 2026 list holds a few dozen CAs (~50 KB)
MAX_CAS = 1000
_SEQUENCE_RE = re.compile(rb"^# sipguard trust list sequence (\d{1,18})\b", re.MULTILINE)


class TrustListError(SipguardError):
    """The list cannot be used; the anchors in force stay."""


@dataclass(frozen=True, slots=True)
class TrustList:
    cas: tuple[x509.Certificate, ...]
    sequence: int | None       # None: an unsigned PEM bundle
    expires: float | None
    signer_x5u: str | None

    def pem(self, source: str, now_text: str) -> bytes:
        """The anchor file: a comment naming the list (read back for the sequence check), then
        the certificates (comment lines outside the PEM blocks are ignored by PEM readers)."""
        head = f"# sipguard trust list sequence {self.sequence}\n" if self.sequence is not None else ""
        head += f"# STI-CAs from {source.replace(chr(10), ' ')}, written {now_text}\n"
        return head.encode() + b"".join(cert.public_bytes(Encoding.PEM) for cert in self.cas)


def jws_of(body: bytes) -> str | None:
    """The JWS inside a download: the API's JSON answer or a bare compact JWS; None otherwise."""
    text = body.strip()
    if text.startswith(b"{"):
        try:
            answer = json.loads(text)
        except (ValueError, RecursionError):
            raise TrustListError("the answer is JSON but not valid JSON") from None
        jws = answer.get("caList") if isinstance(answer, dict) else None
        if not isinstance(jws, str):
            raise TrustListError('the JSON answer has no "caList" string (status: '
                                 f'{answer.get("status") if isinstance(answer, dict) else "?"!r})')
        return jws.strip()
    if text.startswith(b"eyJ") and text.count(b".") == 2:
        return text.decode("ascii", "replace")
    return None


def signer_url(jws: str) -> str:
    passport = pp.decode(jws)
    if passport is None:
        raise TrustListError("the list is not a readable JWS")
    x5u = passport.header.get("x5u")
    if not isinstance(x5u, str):
        raise TrustListError("the list's JWS header has no x5u (the signer's certificate)")
    return x5u


def check_signed(jws: str, signer_chain: bytes, sti_pa_root: TrustStore, now: float,
                 current_sequence: int | None) -> TrustList:
    """Verify the STI-PA's signature and read the CA certificates of a signed list."""
    passport = pp.decode(jws)
    if passport is None:
        raise TrustListError("the list is not a readable JWS")
    if passport.header.get("alg") != "ES256":
        raise TrustListError(f"the list is signed with {passport.header.get('alg')!r}, not ES256")
    certs = parse_certificates(signer_chain)
    if not certs:
        raise TrustListError("the signer's x5u did not give a certificate")
    key = certs[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TrustListError("the signer's key is not P-256")
    chain = chain_to(certs[0], certs[1:], sti_pa_root, now, ANY_LEAF_POLICY)
    if chain is None:
        raise TrustListError("the signer's certificate does not chain to the STI-PA root "
                             "(shaken.trust_list.sti_pa_root)")
    for cert in chain:
        if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
            raise TrustListError(f"the signer's chain is not valid now ({cert.subject.rfc4514_string()})")
    if not pp.verify_es256(key, passport.signing_input, passport.signature):
        raise TrustListError("the list's signature does not verify")
    claims = passport.claims
    exp, sequence, pems = claims.get("exp"), claims.get("sequence"), claims.get("trustList")
    if not isinstance(exp, int) or isinstance(exp, bool) or exp <= now:
        raise TrustListError(f"the list has expired (exp {exp!r}): the STI-PA publishes a new one")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        raise TrustListError("the list has no sequence number")
    if current_sequence is not None and sequence < current_sequence:
        raise TrustListError(f"the list's sequence {sequence} is older than the one in use "
                             f"({current_sequence}): refused (a replayed list may bring back a removed "
                             "STI-CA); --force takes it anyway")
    if not isinstance(pems, list) or not all(isinstance(p, str) for p in pems):
        raise TrustListError("the list has no trustList array of PEM strings")
    cas = _cas("".join(pems).encode("ascii", "replace"), now)
    return TrustList(cas, sequence, float(exp), signer_url(jws))


def check_bundle(body: bytes, now: float) -> TrustList:
    """An operator's own PEM bundle (no signature to check)."""
    return TrustList(_cas(body, now), None, None, None)


def _cas(pem: bytes, now: float) -> tuple[x509.Certificate, ...]:
    certs = parse_certificates(pem) if b"-----BEGIN CERTIFICATE-----" in pem else []
    if not certs:
        raise TrustListError("the list holds no certificate")
    if len(certs) > MAX_CAS:
        raise TrustListError(f"the list holds {len(certs)} certificates, more than {MAX_CAS}")
    cas = []
    for cert in certs:
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (x509.ExtensionNotFound, ValueError):
            ca = False
        if not ca:
            raise TrustListError(f"{cert.subject.rfc4514_string()} is not a CA certificate "
                                 "(basicConstraints CA): not an STI-CA list")
        if cert.not_valid_after_utc.timestamp() > now:  # an expired CA anchors nothing
            cas.append(cert)
    if not cas:
        raise TrustListError("every certificate of the list has expired")
    return tuple(cas)


def sequence_of(anchor_file: bytes) -> int | None:
    """The sequence of the list an anchor file was written from (None: unknown)."""
    found = _SEQUENCE_RE.search(anchor_file[:4096])
    return int(found.group(1)) if found else None
