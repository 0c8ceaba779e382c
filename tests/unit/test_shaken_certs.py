"""Certificates: TNAuthList tagging variants, chain building, and third-party test PKIs.

libstirshaken's vector (MIT) is copied in tests/data/libstirshaken; Asterisk's testsuite keys
(GPL-2.0) are used in place from ../shared and skipped when that folder is absent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sipguard.shaken import passport as pp
from sipguard.shaken.certs import (
    Credential,
    TrustStoreError,
    build_credential,
    load_trust_anchors,
    parse_tnauthlist_der,
)
from sipguard.shaken.config import CrlConfig, ShakenConfig
from sipguard.shaken.reasons import Reason
from sipguard.shaken.verify import Verifier
from tests.shaken_pki import TNAUTHLIST_OID, MapFetcher, StiPki, shaken_identity, tnauthlist_der

DATA = Path(__file__).resolve().parents[1] / "data" / "libstirshaken"
ASTERISK = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "asterisk-testsuite"


@pytest.mark.parametrize(("der", "spcs", "tns", "ranges"), [
    (tnauthlist_der("1234"), ("1234",), (), ()),
    (tnauthlist_der("1234", implicit=True), ("1234",), (), ()),
    (bytes.fromhex("3005A003160131"), ("1",), (), ()),                       # Asterisk SPAST1
    (bytes.fromhex("3007a2051603313233"), (), ("123",), ()),                 # [2] one, explicit
    (bytes.fromhex("3005820331323"[:-1] + "33"), (), ("123",), ()),          # [2] one, implicit
    # [1] range explicit: A1 { SEQUENCE { IA5 "2025550100", INTEGER 100 } }
    (bytes.fromhex("3013a111300f160a32303235353530313030020164"), (), (), (("2025550100", 100),)),
    # [1] range implicit: A1 { IA5 "2025550100", INTEGER 100 }
    (bytes.fromhex("3011a10f160a32303235353530313030020164"), (), (), (("2025550100", 100),)),
])
def test_tnauthlist_variants(der: bytes, spcs: tuple[str, ...], tns: tuple[str, ...],
                             ranges: tuple[tuple[str, int], ...]) -> None:
    auth = parse_tnauthlist_der(der)
    assert auth is not None and (auth.spcs, auth.tns, auth.ranges) == (spcs, tns, ranges)


@pytest.mark.parametrize("der", [
    b"", b"\x30", b"\x30\x05\xa0\x03\x16\x01", b"\x16\x03abc", bytes.fromhex("3003a40131"),
    bytes.fromhex("3005a003020101"), bytes.fromhex("3006A00316013100"),
])
def test_tnauthlist_garbage(der: bytes) -> None:
    assert parse_tnauthlist_der(der) is None


def test_range_covers() -> None:
    auth = parse_tnauthlist_der(bytes.fromhex("3011a10f160a32303235353530313030020164"))
    assert auth is not None
    assert auth.covers("2025550100") and auth.covers("2025550199") and not auth.covers("2025550200")


def test_pki_leaves(tmp_path: Path) -> None:
    pki = StiPki(tmp_path)
    store = load_trust_anchors(pki.anchors)
    good = build_credential(pki.chain_pem("good"), store)
    assert isinstance(good, Credential) and good.spc == "1234" and len(good.chain) == 3
    assert build_credential(pki.chain_pem("untrusted"), store) is Reason.CERT_UNTRUSTED
    assert build_credential(pki.chain_pem("no_tnauth"), store) is Reason.CERT_NO_TNAUTHLIST
    assert build_credential(pki.chain_pem("rsa"), store) is Reason.CERT_UNTRUSTED
    assert build_credential(b"junk", store) is Reason.X5U_FETCH_FAILED
    # leaf alone (intermediate missing from the x5u body): the chain cannot be built
    leaf_only = pki.chain_pem("good").split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    assert build_credential(leaf_only, store) is Reason.CERT_UNTRUSTED
    expired = build_credential(pki.chain_pem("expired"), store)
    assert isinstance(expired, Credential) and expired.check_time(pki.now, pki.now) is Reason.CERT_EXPIRED


def test_trust_anchor_folder_and_errors(tmp_path: Path) -> None:
    pki = StiPki(tmp_path / "pki")
    folder = tmp_path / "roots"
    folder.mkdir()
    (folder / "a.pem").write_bytes(Path(pki.anchors).read_bytes())
    (folder / "notes.txt").write_text("ignored")
    assert load_trust_anchors(str(folder)).count == 1
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing")
    with pytest.raises(TrustStoreError, match="no PEM certificate"):
        load_trust_anchors(str(empty))
    with pytest.raises(TrustStoreError, match="not found"):
        load_trust_anchors(str(tmp_path / "missing"))


# -- libstirshaken test vector -------------------------------------------------------------------

def _passport_lines() -> tuple[str, str]:
    lines = (DATA / "passport.txt").read_text().splitlines()
    signed = lines[lines.index("PASSporT signed is:") + 1].strip()
    identity = lines[lines.index("SIP Identity Header with PASSporT is:") + 1].strip()
    return signed, identity


def test_libstirshaken_signatures_verify_over_received_bytes() -> None:
    store = load_trust_anchors(str(DATA / "ca.pem"))
    from cryptography import x509

    key = x509.load_pem_x509_certificate((DATA / "sp.pem").read_bytes()).public_key()
    for token in (_passport_lines()[0], _passport_lines()[1].split(";")[0]):
        p = pp.decode(token)
        assert p is not None and pp.verify_es256(key, p.signing_input, p.signature)  # type: ignore[arg-type]
    # its TNAuthList is an IA5String URL, not RFC 8226: no SPC can be extracted
    assert build_credential((DATA / "sp.pem").read_bytes(), store) is Reason.CERT_NO_TNAUTHLIST
    assert build_credential((DATA / "wrongsp.pem").read_bytes(), store) is Reason.CERT_UNTRUSTED


def test_libstirshaken_identity_is_bad_claims() -> None:
    """orig/dest are JSON strings in this vector (not RFC 8225 objects): bad-claims, no fetch."""
    identity = _passport_lines()[1]
    fetcher = MapFetcher({"http://shaken.signalwire.cloud/sp.pem": (DATA / "sp.pem").read_bytes()})
    cfg = ShakenConfig(trust_anchors=str(DATA / "ca.pem"), crl=CrlConfig(enabled=False))
    res = asyncio.run(Verifier(cfg, fetcher).verify([identity], ["01256789999"], ["01256500600"], 1603458131))
    assert res.reasons == (Reason.BAD_CLAIMS,) and fetcher.calls == {}


# -- Asterisk testsuite keys (GPL: used in place) ------------------------------------------------

needs_asterisk = pytest.mark.skipif(not ASTERISK.is_dir(), reason="../shared/corpus/asterisk-testsuite absent")


def _asterisk_verify(cert: str, key: str, ca: str, now: float) -> tuple[Reason, ...]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    url = "https://stir.example/SPAST1.pem"
    signer = load_pem_private_key((ASTERISK / key).read_bytes(), None)
    ident = shaken_identity(signer, url, orig="12025550100", dest=["13035550100"], iat=int(now))
    fetcher = MapFetcher({url: (ASTERISK / cert).read_bytes()})
    cfg = ShakenConfig(trust_anchors=str(ASTERISK / ca), crl=CrlConfig(enabled=False))
    res = asyncio.run(Verifier(cfg, fetcher).verify([ident], ["12025550100"], ["13035550100"], now))
    assert res.spc in (None, "1")
    return res.reasons


@needs_asterisk
def test_asterisk_spast1_verifies() -> None:
    now = dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    assert _asterisk_verify("SPAST1-cert.pem", "SPAST1-key.pem", "astdev-ca.crt", now) == ()


@needs_asterisk
def test_asterisk_expired_ca_chain() -> None:
    # the CA is valid for no time at all (notBefore == notAfter, 2024-02-08 15:20) and the leaf
    # was issued after it: there is no moment at which the path is valid, so RFC 5280 path
    # validation (x509.verification) finds no chain: untrusted, 437 like an expired one
    now = dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    reasons = _asterisk_verify("SPAST1-caexp-cert.pem", "SPAST1-caexp-key.pem", "astdev-ca-expired.crt", now)
    assert reasons == (Reason.CERT_UNTRUSTED,)


@needs_asterisk
def test_asterisk_spast1_before_its_validity() -> None:
    now = dt.datetime(2026, 5, 1, tzinfo=dt.UTC).timestamp()  # SPAST1 is valid from 2026-06-01
    assert _asterisk_verify("SPAST1-cert.pem", "SPAST1-key.pem", "astdev-ca.crt", now) == (Reason.CERT_EXPIRED,)


@needs_asterisk
def test_asterisk_wrong_anchor_is_untrusted() -> None:
    now = dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    assert _asterisk_verify("SPAST2-cert.pem", "SPAST2-key.pem", "astdev-ca-expired.crt", now) == \
        (Reason.CERT_UNTRUSTED,)


# -- standard path checks (x509.verification with the STI policy) ---------------------------------

def _issue(subject: str, key: Any, issuer: str, issuer_key: Any, now: float, *, ca: bool,
           path_length: int | None = None, tnauth: bool = False) -> x509.Certificate:
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(dt.datetime.fromtimestamp(now - 86400, dt.UTC))
               .not_valid_after(dt.datetime.fromtimestamp(now + 86400 * 30, dt.UTC))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True))
    if tnauth:
        builder = builder.add_extension(x509.UnrecognizedExtension(TNAUTHLIST_OID, tnauthlist_der("1234")),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pems(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_path_checks_the_hand_walk_missed(tmp_path: Path) -> None:
    """RFC 5280 path validation: a CA limited to path length 0 cannot certify another CA, and a
    CA certificate is no PASSporT signer; the chain is otherwise fine (the control passes)."""
    now = 1_790_000_000.0
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    root = _issue("Root", keys[0], "Root", keys[0], now, ca=True)
    anchors = tmp_path / "root.pem"
    anchors.write_bytes(_pems(root))
    store = load_trust_anchors(str(anchors))
    int0 = _issue("Int0", keys[1], "Root", keys[0], now, ca=True, path_length=0)
    sub = _issue("Sub", keys[2], "Int0", keys[1], now, ca=True)
    leaf_under_sub = _issue("Leaf", keys[3], "Sub", keys[2], now, ca=False, tnauth=True)
    assert build_credential(_pems(leaf_under_sub, sub, int0), store, now) is Reason.CERT_UNTRUSTED
    ca_leaf = _issue("CA leaf", keys[3], "Int0", keys[1], now, ca=True, tnauth=True)
    assert build_credential(_pems(ca_leaf, int0), store, now) is Reason.CERT_UNTRUSTED
    good = _issue("Leaf", keys[3], "Int0", keys[1], now, ca=False, tnauth=True)
    cred = build_credential(_pems(good, int0), store, now)
    assert isinstance(cred, Credential) and [c.subject for c in cred.chain] == [good.subject, int0.subject,
                                                                                root.subject]
