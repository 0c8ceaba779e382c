"""STI-AS: the gateway signs unauthenticated foreign calls that show a US caller ID.

Builds SHAKEN PASSporTs (RFC 8225, RFC 8588, ATIS-1000074) and returns the whole
``Identity`` header value (RFC 8224): ``<jws>;info=<x5u>;alg=ES256;ppt=shaken``. Which
calls get signed is the pipeline's decision (``should_sign`` keeps the rule in one place);
this module only checks the key and certificate at load time and signs fast.

Speed: the JWS header is fixed per x5u, so it is encoded once; the payload is assembled
in canonical form (keys sorted, no whitespace: RFC 8225 section 9) without building a
dict, and ``cryptography`` signs directly (pyjwt would re-serialise and convert the DER
signature on every call). The signature is JWS raw ``r || s`` (RFC 7518 3.4), not DER.
"""

from __future__ import annotations

import binascii
import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sipguard.errors import ConfigError
from sipguard.numbers import TN
from sipguard.shaken.keys import DerError, load_certificates, load_signing_key, tnauthlist_of
from sipguard.yamlconf import Section

ATTEST_LEVELS = ("A", "B", "C")
ORIGID_MODES = ("trunk", "call")
_ORIGID_NAMESPACE = uuid.UUID("5a1c2a3e-7f0b-4d0c-9a57-3e0c6b1e9d42")  # sipguard's own
_ECDSA = ec.ECDSA(hashes.SHA256())
_PLAIN = frozenset("0123456789abcdefABCDEF-")  # a UUID needs no JSON escaping
_SPC_RE = re.compile(r"[0-9A-Z]{1,16}")  # ATIS-1000080 v005: numbers and uppercase letters


@dataclass(frozen=True, slots=True)
class SigningConfig:
    key: str
    cert: str
    x5u: str
    attest: str = "C"
    origid: str = "trunk"       # "trunk": uuid5 stable per trunk id | "call": uuid4 per call
    sign_failed: bool = False   # also sign calls whose arriving signature failed
    path: str | None = field(default=None, compare=False)  # config file, for error messages
    spc: str | None = None      # the operator's own SPC: the certificate must carry it (FCC 24-120)
    lines: tuple[int | None, int | None] = field(default=(None, None), compare=False)  # of key, cert

    @classmethod
    def from_section(cls, sec: Section) -> SigningConfig:
        """Build from `shaken.signing`; relative paths are relative to the config file."""
        sec.check_keys(("key", "cert", "x5u", "attest", "origid", "sign_failed", "spc"))
        base = os.path.dirname(os.path.abspath(sec.path)) if sec.path and not sec.path.startswith("<") \
            else os.getcwd()
        x5u = sec.str("x5u")
        if not x5u.startswith(("https://", "http://")) or len(x5u) < 12 or any(c in x5u for c in " <>\"'"):
            raise sec.error("x5u", f"{x5u!r} is not an http(s) URL of the certificate "
                                   "(e.g. https://certs.example.net/sipguard.pem)")
        spc = sec.str("spc", default=None)
        if spc is not None and not _SPC_RE.fullmatch(spc):
            raise sec.error("spc", f"{spc!r} is not an SPC (your OCN-style service provider code from the "
                                   "STI-PA: digits and uppercase letters, e.g. 567J)")
        return cls(
            spc=spc,
            key=_resolve(base, sec.str("key")),
            cert=_resolve(base, sec.str("cert")),
            x5u=x5u,
            attest=sec.choice("attest", ATTEST_LEVELS, default="C"),
            origid=sec.choice("origid", ORIGID_MODES, default="trunk"),
            sign_failed=sec.bool("sign_failed", default=False),
            path=sec.path,
            lines=(sec.line_of("key"), sec.line_of("cert")),
        )


def _resolve(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def should_sign(has_identity: bool, caller: TN, verification_failed: bool, cfg: SigningConfig) -> bool:
    """The gateway signing rule (47 CFR 64.6302(d), issue 4), given a foreign trunk and a
    policy that asked for signing: only valid US caller IDs (territories included), never
    emergency or anonymous ones; calls that already carry Identity only when it failed
    verification and the operator chose `sign_failed: true` (default no)."""
    if not (caller.us and caller.valid) or caller.emergency or caller.anonymous:
        return False
    if has_identity:
        return verification_failed and cfg.sign_failed
    return True


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    # binascii + translate: the same bytes as base64.urlsafe_b64encode, a third cheaper.
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _raw_signature(der: bytes) -> bytes:
    """DER ECDSA-Sig-Value -> JWS r || s (32 bytes each). A P-256 signature is < 128 bytes,
    so every length is one short-form byte: SEQUENCE(0x30 L INTEGER(0x02 L r) INTEGER(0x02 L s))."""
    rlen = der[3]
    r = der[4:4 + rlen]
    s = der[6 + rlen:6 + rlen + der[5 + rlen]]
    # An INTEGER carries a leading 0x00 when the top bit is set, and drops leading zeros.
    return r[-32:].rjust(32, b"\0") + s[-32:].rjust(32, b"\0")


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _tn_json(tn: str) -> str:
    # Callers pass TN.e164 (digits); a leading "+" is tolerated and dropped (ATIS-1000074
    # canonical TNs have none). json.dumps keeps anything odd correctly escaped.
    if tn.startswith("+"):
        tn = tn[1:]
    return f'"{tn}"' if tn.isdigit() else json.dumps(tn)


class Signer:
    """A loaded key + certificate, ready to sign. Immutable; reload() returns a new one."""

    __slots__ = ("cfg", "spc", "not_before", "not_after", "_key", "_header_b64", "_attest_json",
                 "_origids")

    def __init__(self, cfg: SigningConfig, key: ec.EllipticCurvePrivateKey, spc: str,
                 not_before: float, not_after: float) -> None:
        self.cfg = cfg
        self.spc = spc
        self.not_before = not_before
        self.not_after = not_after
        self._key = key
        header = _canonical({"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": cfg.x5u})
        self._header_b64 = _b64(header)
        self._attest_json = json.dumps(cfg.attest)
        self._origids: dict[str | None, str] = {}

    @classmethod
    def load(cls, cfg: SigningConfig, now: float) -> Signer:
        """Read and check key and certificate; ConfigError names the config file, line and key
        (shaken.signing.key or .cert), then the key or certificate file and what is wrong."""
        try:
            return cls._load(cfg, now)
        except ConfigError as exc:
            if cfg.path is None or exc.path not in (cfg.key, cfg.cert):
                raise
            line = cfg.lines[0] if exc.path == cfg.key else cfg.lines[1]
            message = exc.message if exc.path in exc.message else f"{exc.path}: {exc.message}"
            raise ConfigError(message, cfg.path, line, exc.key) from None

    @classmethod
    def _load(cls, cfg: SigningConfig, now: float) -> Signer:
        key = load_signing_key(cfg.key)
        leaf = load_certificates(cfg.cert)[0]

        def bad_cert(message: str) -> ConfigError:
            return ConfigError(message, cfg.cert, key="shaken.signing.cert")

        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.DER
        if leaf.public_key().public_bytes(enc, pub) != key.public_key().public_bytes(enc, pub):
            raise bad_cert(f"the certificate does not match the private key {cfg.key} "
                              "(the first certificate in the file must be the one issued for this key)")
        try:
            tnauth = tnauthlist_of(leaf)
        except (DerError, ValueError) as exc:
            raise bad_cert(f"the certificate's TNAuthList extension is unreadable ({exc})") from None
        if tnauth is None:
            raise bad_cert("the certificate has no TNAuthList extension (OID 1.3.6.1.5.5.7.1.26); "
                              "a SHAKEN certificate from an STI-CA carries one with your SPC")
        if not tnauth.spcs:
            raise bad_cert("the certificate's TNAuthList holds telephone numbers but no SPC; "
                              "the gateway signs with an SPC certificate")
        if cfg.spc is not None and cfg.spc not in tnauth.spcs:
            # FCC 24-120 (in force 2025-09-18): a provider signs with a certificate issued under
            # its own SPC token, never another provider's (third-party signing included)
            raise bad_cert(f"the certificate's SPC is {', '.join(tnauth.spcs)}, not ours "
                           f"(shaken.signing.spc {cfg.spc}): sign only with a certificate issued under "
                           "your own SPC token (FCC 24-120)")
        not_before = leaf.not_valid_before_utc.timestamp()
        not_after = leaf.not_valid_after_utc.timestamp()
        if now < not_before:
            raise bad_cert("the certificate is not valid yet (notBefore "
                              f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC)")
        if now >= not_after:
            raise bad_cert(f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC; "
                              "get a new one from your STI-CA")
        return cls(cfg, key, cfg.spc or tnauth.spcs[0], not_before, not_after)

    def reload(self, now: float) -> Signer:
        """SIGHUP: a new Signer from the same files, or ConfigError (keep using this one)."""
        return Signer.load(self.cfg, now)

    def origid_for(self, trunk_id: str | None) -> str:
        """ATIS-1000074 origid: stable per trunk (uuid5) or fresh per call (uuid4), per config."""
        if self.cfg.origid == "call":
            return str(uuid.uuid4())
        origid = self._origids.get(trunk_id)
        if origid is None:
            name = f"{self.spc}/{trunk_id if trunk_id is not None else ''}"
            origid = self._origids[trunk_id] = str(uuid.uuid5(_ORIGID_NAMESPACE, name))
        return origid

    def passport(self, orig_tn: str, dest_tns: Sequence[str], now: float, origid: str) -> str:
        """The compact JWS (header.payload.signature)."""
        dest = ",".join(_tn_json(tn) for tn in dest_tns)
        origid_json = f'"{origid}"' if _PLAIN.issuperset(origid) else json.dumps(origid)
        payload = (f'{{"attest":{self._attest_json},"dest":{{"tn":[{dest}]}},"iat":{int(now)},'
                   f'"orig":{{"tn":{_tn_json(orig_tn)}}},"origid":{origid_json}}}')
        signing_input = f"{self._header_b64}.{_b64(payload.encode('utf-8'))}"
        der = self._key.sign(signing_input.encode("ascii"), _ECDSA)
        return f"{signing_input}.{_b64(_raw_signature(der))}"

    def sign(self, orig_tn: str, dest_tns: Sequence[str], now: float, origid: str) -> str:
        """The full Identity header value (RFC 8224 section 4.1)."""
        return f"{self.passport(orig_tn, dest_tns, now, origid)};info=<{self.cfg.x5u}>;alg=ES256;ppt=shaken"
