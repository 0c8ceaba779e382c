"""Loading the signer's key and certificate, and the RFC 8226 TNAuthList extension.

Shared by the signer (sign.py) and anything else that needs an SPC out of a certificate.
Chain validation against STI roots is *not* here (that is certs.py): this module reads
files and DER, says clearly what is wrong with them, and nothing more.

TNAuthList (RFC 8226 section 9, EXPLICIT TAGS module)::

    TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry
    TNEntry ::= CHOICE { spc [0] ServiceProviderCode, range [1] TelephoneNumberRange,
                         one [2] TelephoneNumber }
    ServiceProviderCode ::= IA5String
    TelephoneNumberRange ::= SEQUENCE { start TelephoneNumber, count INTEGER (2..MAX), ... }
    TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*"))

In SHAKEN end-entity certificates it holds a single SPC (ATIS-1000080 section 6.4.1), e.g.
``30 08 a0 06 16 04 37 30 39 4a`` for SPC "709J".
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sipguard.errors import ConfigError

TNAUTHLIST_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")


@dataclass(frozen=True, slots=True)
class TNAuthList:
    spcs: tuple[str, ...] = ()
    tns: tuple[str, ...] = ()
    ranges: tuple[tuple[str, int], ...] = ()


class DerError(ValueError):
    """The bytes are not the DER the grammar above describes."""


# -- DER ------------------------------------------------------------------------------
def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _ia5(text: str) -> bytes:
    return _der(0x16, text.encode("ascii"))


def encode_tnauthlist(spcs: tuple[str, ...] = (), tns: tuple[str, ...] = (),
                      ranges: tuple[tuple[str, int], ...] = ()) -> bytes:
    """DER of a TNAuthorizationList (for test PKIs and certificate requests)."""
    entries = [_der(0xA0, _ia5(spc)) for spc in spcs]
    for start, count in ranges:
        count_der = _der(0x02, count.to_bytes((count.bit_length() + 8) // 8, "big"))
        entries.append(_der(0xA1, _der(0x30, _ia5(start) + count_der)))
    entries += [_der(0xA2, _ia5(tn)) for tn in tns]
    return _der(0x30, b"".join(entries))


def _read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, content, next position) of the TLV at pos."""
    if pos + 2 > len(data):
        raise DerError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        width = first & 0x7F
        if width == 0 or width > 4 or pos + width > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[pos:pos + width], "big")
        pos += width
    else:
        length = first
    if pos + length > len(data):
        raise DerError("truncated")
    return tag, data[pos:pos + length], pos + length


def _text(content: bytes) -> str:
    try:
        return content.decode("ascii")
    except UnicodeDecodeError:
        raise DerError("non-ASCII IA5String") from None


def _inner_string(tag: int, content: bytes) -> str:
    # EXPLICIT (the RFC module: constructed [n] wrapping an IA5String) or, leniently,
    # IMPLICIT (primitive [n] holding the characters) as some issuers produce.
    if tag & 0x20:
        inner, value, end = _read(content, 0)
        if inner != 0x16 or end != len(content):
            raise DerError("expected an IA5String")
        return _text(value)
    return _text(content)


def decode_tnauthlist(der: bytes) -> TNAuthList:
    tag, body, end = _read(der, 0)
    if tag != 0x30 or end != len(der):
        raise DerError("TNAuthList is not a SEQUENCE")
    spcs: list[str] = []
    tns: list[str] = []
    ranges: list[tuple[str, int]] = []
    pos = 0
    while pos < len(body):
        tag, content, pos = _read(body, pos)
        number = tag & 0x1F
        if tag & 0xC0 != 0x80:
            raise DerError(f"unexpected tag 0x{tag:02x} in TNAuthList")
        if number == 0:
            spcs.append(_inner_string(tag, content))
        elif number == 2:
            tns.append(_inner_string(tag, content))
        elif number == 1:
            seq_tag, seq, _ = _read(content, 0) if tag & 0x20 else (0x30, content, 0)
            if seq_tag != 0x30:
                raise DerError("TN range is not a SEQUENCE")
            start_tag, start, p = _read(seq, 0)
            count_tag, count, _ = _read(seq, p)
            if start_tag != 0x16 or count_tag != 0x02:
                raise DerError("TN range needs a start and a count")
            ranges.append((_text(start), int.from_bytes(count, "big", signed=True)))
        else:
            raise DerError(f"unknown TNEntry [{number}]")
    if not (spcs or tns or ranges):
        raise DerError("TNAuthList is empty")
    return TNAuthList(tuple(spcs), tuple(tns), tuple(ranges))


def tnauthlist_of(cert: x509.Certificate) -> TNAuthList | None:
    """The certificate's TNAuthList, None if it has none. Raises DerError if unreadable."""
    try:
        ext = cert.extensions.get_extension_for_oid(TNAUTHLIST_OID)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    der = value.value if isinstance(value, x509.UnrecognizedExtension) else value.public_bytes()
    return decode_tnauthlist(der)


# -- files ----------------------------------------------------------------------------
def _read_file(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", path, key=key) from None


def load_signing_key(path: str, key: str = "shaken.signing.key") -> ec.EllipticCurvePrivateKey:
    """An unencrypted P-256 private key (PKCS#8 or SEC1 PEM), as ES256 requires."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read_file(path, key)
    try:
        private = load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError("the private key is encrypted; sipguard needs it unencrypted "
                          "(protect the file with permissions instead)", path, key=key) from None
    except (ValueError, Exception):
        raise ConfigError("not a PEM private key (expected '-----BEGIN PRIVATE KEY-----' or "
                          "'-----BEGIN EC PRIVATE KEY-----')", path, key=key) from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise ConfigError("the key is not an EC P-256 (prime256v1) key, which ES256 requires",
                          path, key=key)
    return private


def load_certificates(path: str, key: str = "shaken.signing.cert") -> list[x509.Certificate]:
    """The PEM certificates in a file, leaf first (the order an x5u serves them in)."""
    data = _read_file(path, key)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ConfigError("no PEM certificate found (expected '-----BEGIN CERTIFICATE-----')",
                          path, key=key)
    return certs
