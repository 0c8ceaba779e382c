"""Signing credentials for signer tests: a root, and leaves the test asks for.

    creds = make_credentials(tmp_path, now=NOW)                      # good SPC leaf "709J"
    creds = make_credentials(tmp_path, now=NOW, tnauth=None)         # no TNAuthList
    cfg = creds.config()                                             # SigningConfig over the files
Files: creds.key_path (PKCS#8 PEM), creds.cert_path (leaf + root PEM), creds.pub_path.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sipguard.shaken.keys import TNAUTHLIST_OID, encode_tnauthlist
from sipguard.shaken.sign import SigningConfig

DAY = 86400.0
X5U = "https://certs.example.net/sipguard.pem"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _at(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


@dataclass
class Credentials:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    key_path: Path
    cert_path: Path
    pub_path: Path

    def config(self, **kw: Any) -> SigningConfig:
        return SigningConfig(key=str(self.key_path), cert=str(self.cert_path), x5u=kw.pop("x5u", X5U), **kw)


def make_credentials(directory: Path, now: float, *, tnauth: bytes | None = encode_tnauthlist(("709J",)),
                     start: float | None = None, end: float | None = None,
                     cert_key: ec.EllipticCurvePrivateKey | None = None, name: str = "signer") -> Credentials:
    """A leaf for `key` (or for `cert_key` when testing a mismatch) issued by a fresh root."""
    start = now - DAY if start is None else start
    end = now + 60 * DAY if end is None else end
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(_name("Test STI-CA")).issuer_name(_name("Test STI-CA"))
            .public_key(root_key.public_key()).serial_number(1)
            .not_valid_before(_at(now - 10 * DAY)).not_valid_after(_at(now + 3650 * DAY))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name("SHAKEN 709J sipguard test"))
               .issuer_name(root.subject).public_key((cert_key or key).public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(_at(start)).not_valid_after(_at(end))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if tnauth is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(TNAUTHLIST_OID, tnauth), critical=False)
    cert = builder.sign(root_key, hashes.SHA256())
    pem = serialization.Encoding.PEM
    key_path, cert_path, pub_path = (directory / f"{name}.key", directory / f"{name}.pem",
                                     directory / f"{name}.pub.pem")
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(pem) + root.public_bytes(pem))
    pub_path.write_bytes(key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo))
    return Credentials(key, cert, key_path, cert_path, pub_path)
