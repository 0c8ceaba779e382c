"""The STI-AS: load-time checks with their messages, the token checked independently (pyjwt)."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sipguard.errors import ConfigError
from sipguard.numbers import parse_tn
from sipguard.shaken.keys import DerError, decode_tnauthlist, encode_tnauthlist
from sipguard.shaken.sign import Signer, SigningConfig, should_sign
from sipguard.yamlconf import parse, section_of
from tests.sign_fixtures import DAY, X5U, make_credentials

NOW = 1_790_000_000.0


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.fixture
def creds(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_credentials(tmp_path, NOW)


def test_signed_identity_verifies_with_pyjwt(creds) -> None:  # type: ignore[no-untyped-def]
    signer = Signer.load(creds.config(), NOW)
    assert signer.spc == "709J"
    value = signer.sign("12024561111", ["13035551234"], NOW + 0.7, "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc")
    token, params = value.split(";", 1)
    assert params == f"info=<{X5U}>;alg=ES256;ppt=shaken"
    claims = jwt.decode(token, creds.key.public_key(), algorithms=["ES256"], options={"verify_iat": False})
    assert claims == {"attest": "C", "dest": {"tn": ["13035551234"]}, "iat": int(NOW),
                      "orig": {"tn": "12024561111"}, "origid": "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc"}
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}


def test_token_is_canonical_json_and_raw_signature(creds) -> None:  # type: ignore[no-untyped-def]
    signer = Signer.load(creds.config(attest="A"), NOW)
    token = signer.passport("+12024561111", ["13035551234", "13035551235"], NOW, "id")
    header, payload, sig = token.split(".")
    assert "=" not in token
    assert _b64decode(header) == b'{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"' + X5U.encode() + b'"}'
    body = _b64decode(payload)
    assert body == (b'{"attest":"A","dest":{"tn":["13035551234","13035551235"]},"iat":1790000000,'
                    b'"orig":{"tn":"12024561111"},"origid":"id"}')
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    assert len(_b64decode(sig)) == 64  # r || s, not DER


def test_odd_characters_stay_valid_json(creds) -> None:  # type: ignore[no-untyped-def]
    signer = Signer.load(creds.config(), NOW)
    token = signer.passport('12"3', ["45\\6"], NOW, 'o"id')
    claims = jwt.decode(token, creds.key.public_key(), algorithms=["ES256"], options={"verify_iat": False})
    assert claims["orig"]["tn"] == '12"3' and claims["dest"]["tn"] == ["45\\6"] and claims["origid"] == 'o"id'


def test_origid_modes(creds) -> None:  # type: ignore[no-untyped-def]
    per_trunk = Signer.load(creds.config(), NOW)
    a = per_trunk.origid_for("carrier-a")
    assert a == per_trunk.origid_for("carrier-a") == Signer.load(creds.config(), NOW).origid_for("carrier-a")
    assert a != per_trunk.origid_for("carrier-b") != per_trunk.origid_for(None)
    assert uuid.UUID(a).version == 5
    per_call = Signer.load(creds.config(origid="call"), NOW)
    first, second = per_call.origid_for("carrier-a"), per_call.origid_for("carrier-a")
    assert first != second and uuid.UUID(first).version == 4


def test_reload_picks_up_new_files_and_keeps_errors_typed(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path, NOW)
    signer = Signer.load(creds.config(), NOW)
    fresh = make_credentials(tmp_path, NOW)  # same file names, new key
    reloaded = signer.reload(NOW)
    token = reloaded.passport("12024561111", ["13035551234"], NOW, "x")
    jwt.decode(token, fresh.key.public_key(), algorithms=["ES256"], options={"verify_iat": False})
    creds.cert_path.write_text("garbage")
    with pytest.raises(ConfigError):
        reloaded.reload(NOW)


# -- load-time checks: each failure names the file and says what is wrong ------------------------
def test_key_does_not_match_certificate(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path, NOW, cert_key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="does not match the private key") as err:
        Signer.load(creds.config(), NOW)
    assert err.value.path == str(creds.cert_path) and err.value.key == "shaken.signing.cert"


def test_no_tnauthlist(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path, NOW, tnauth=None)
    with pytest.raises(ConfigError, match=r"no TNAuthList extension \(OID 1.3.6.1.5.5.7.1.26\)"):
        Signer.load(creds.config(), NOW)


def test_tnauthlist_without_spc(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path, NOW, tnauth=encode_tnauthlist(tns=("12024561111",)))
    with pytest.raises(ConfigError, match="no SPC"):
        Signer.load(creds.config(), NOW)


def test_unreadable_tnauthlist(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path, NOW, tnauth=b"\x30\x05\xa0\x03\x16")
    with pytest.raises(ConfigError, match="TNAuthList extension is unreadable"):
        Signer.load(creds.config(), NOW)


def test_expired_certificate(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path, NOW, start=NOW - 90 * DAY, end=NOW - DAY)
    with pytest.raises(ConfigError, match="certificate expired on"):
        Signer.load(creds.config(), NOW)


def test_not_yet_valid_certificate(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path, NOW, start=NOW + DAY, end=NOW + 90 * DAY)
    with pytest.raises(ConfigError, match="not valid yet"):
        Signer.load(creds.config(), NOW)


def test_missing_files(tmp_path: Path) -> None:
    cfg = SigningConfig(key=str(tmp_path / "none.key"), cert=str(tmp_path / "none.pem"), x5u=X5U)
    with pytest.raises(ConfigError, match="cannot read") as err:
        Signer.load(cfg, NOW)
    assert "none.key" in str(err.value)


def test_a_missing_key_is_named_by_the_config_file_line_and_key(tmp_path: Path, creds) -> None:  # type: ignore[no-untyped-def]
    """As every other config error: file:line: key first, then the file that is missing."""
    path = str(tmp_path / "sipguard.yaml")
    cfg = _signing(f"# config\nshaken:\n  signing:\n    key: none.key\n    cert: {creds.cert_path}\n"
                   f"    x5u: {X5U}\n", path)
    with pytest.raises(ConfigError) as err:
        Signer.load(cfg, NOW)
    assert str(err.value).startswith(f"{path}:4: shaken.signing.key: cannot read {tmp_path / 'none.key'}")
    (tmp_path / "bad.pem").write_text("garbage")
    cfg = _signing(f"shaken:\n  signing:\n    key: {creds.key_path}\n    cert: bad.pem\n    x5u: {X5U}\n", path)
    with pytest.raises(ConfigError) as err:
        Signer.load(cfg, NOW)
    assert str(err.value) == (f"{path}:4: shaken.signing.cert: {tmp_path / 'bad.pem'}: no PEM certificate found "
                              "(expected '-----BEGIN CERTIFICATE-----')")


def test_key_of_the_wrong_kind(tmp_path: Path, creds) -> None:  # type: ignore[no-untyped-def]
    pem = serialization.Encoding.PEM
    rsa_path = tmp_path / "rsa.key"
    rsa_path.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="not an EC P-256"):
        Signer.load(SigningConfig(key=str(rsa_path), cert=str(creds.cert_path), x5u=X5U), NOW)
    enc_path = tmp_path / "enc.key"
    enc_path.write_bytes(creds.key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                 serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(ConfigError, match="encrypted"):
        Signer.load(SigningConfig(key=str(enc_path), cert=str(creds.cert_path), x5u=X5U), NOW)
    with pytest.raises(ConfigError, match="not a PEM private key"):
        Signer.load(SigningConfig(key=str(creds.cert_path), cert=str(creds.cert_path), x5u=X5U), NOW)
    with pytest.raises(ConfigError, match="no PEM certificate"):
        Signer.load(SigningConfig(key=str(creds.key_path), cert=str(creds.key_path), x5u=X5U), NOW)


# -- config --------------------------------------------------------------------------------------
def _signing(text: str, path: str) -> SigningConfig:
    root = section_of(parse(text, path), path)
    return SigningConfig.from_section(root.section("shaken").section("signing"))


def test_config_from_yaml_resolves_paths(tmp_path: Path) -> None:
    path = str(tmp_path / "sipguard.yaml")
    cfg = _signing("shaken:\n  signing:\n    key: certs/s.key\n    cert: /etc/s.pem\n"
                   "    x5u: https://certs.example.net/s.pem\n    origid: call\n    sign_failed: true\n", path)
    assert cfg.key == str(tmp_path / "certs" / "s.key") and cfg.cert == "/etc/s.pem"
    assert (cfg.attest, cfg.origid, cfg.sign_failed) == ("C", "call", True)


@pytest.mark.parametrize(("body", "where", "message"), [
    ("    key: k\n    cert: c\n    x5u: https://x.example/c.pem\n    attest: D\n", ":7: shaken.signing.attest", "not one of"),
    ("    key: k\n    cert: c\n    x5u: ftp://x.example/c.pem\n", ":6: shaken.signing.x5u", r"http\(s\) URL"),
    ("    key: k\n    cert: c\n", ":4: shaken.signing.x5u", "required"),
    ("    key: k\n    cert: c\n    x5u: https://x.example/c.pem\n    origid: dialog\n", ":7: shaken.signing.origid", "dialog"),
    ("    key: k\n    cert: c\n    x5u: https://x.example/c.pem\n    keyfile: k\n", ":7: shaken.signing.keyfile", "unknown key"),
])
def test_config_errors_name_file_line_key(tmp_path: Path, body: str, where: str, message: str) -> None:
    path = str(tmp_path / "sipguard.yaml")
    with pytest.raises(ConfigError, match=message) as err:
        _signing("# config\nshaken:\n  signing:\n" + body, path)
    assert str(err.value).startswith(path + where)


# -- which calls get signed ----------------------------------------------------------------------
CFG = SigningConfig(key="k", cert="c", x5u=X5U)
CFG_FAILED = SigningConfig(key="k", cert="c", x5u=X5U, sign_failed=True)


@pytest.mark.parametrize(("has_identity", "caller", "failed", "cfg", "expected"), [
    (False, "+12024561111", False, CFG, True),             # US, unsigned: sign
    (False, "+17875551234", False, CFG, True),             # Puerto Rico is US
    (False, "+14165551234", False, CFG, False),            # Canada
    (False, "+18765551234", False, CFG, False),            # Jamaica
    (False, "+442071838750", False, CFG, False),           # foreign
    (False, "sip:anonymous@anonymous.invalid", False, CFG, False),
    (False, "911", False, CFG, False),
    (False, "+12021234567", False, CFG, False),            # invalid NXX
    (True, "+12024561111", False, CFG, False),             # already signed and fine
    (True, "+12024561111", True, CFG, False),              # failed: default no
    (True, "+12024561111", True, CFG_FAILED, True),        # failed, operator opted in
])
def test_should_sign(has_identity: bool, caller: str, failed: bool, cfg: SigningConfig, expected: bool) -> None:
    assert should_sign(has_identity, parse_tn(caller), failed, cfg) is expected


# -- TNAuthList DER ------------------------------------------------------------------------------
def test_tnauthlist_round_trip_and_known_bytes() -> None:
    assert encode_tnauthlist(("709J",)) == bytes.fromhex("3008a00616043730394a")
    assert decode_tnauthlist(bytes.fromhex("3008a00616043730394a")).spcs == ("709J",)
    assert decode_tnauthlist(bytes.fromhex("300680043730394a")).spcs == ("709J",)  # IMPLICIT, lenient
    der = encode_tnauthlist(("1234",), tns=("12024561111",), ranges=(("12024560000", 200),))
    parsed = decode_tnauthlist(der)
    assert (parsed.spcs, parsed.tns, parsed.ranges) == (("1234",), ("12024561111",), (("12024560000", 200),))
    long = encode_tnauthlist(tns=tuple(f"1202456{i:04d}" for i in range(20)))
    assert len(decode_tnauthlist(long).tns) == 20


@pytest.mark.parametrize("hexdata", ["", "30", "3000", "3003a00116", "3102a000", "3004a302160000", "300280ff"])
def test_tnauthlist_rejects_bad_der(hexdata: str) -> None:
    with pytest.raises(DerError):
        decode_tnauthlist(bytes.fromhex(hexdata))


# -- DER signature -> JWS r || s -----------------------------------------------------------------
_EDGES = [1, 2, 127, 128, 255, 256, 2**248 - 1, 2**255 - 1, 2**255, 2**256 - 1]


@pytest.mark.parametrize("r", _EDGES)
@pytest.mark.parametrize("s", [1, 2**255, 2**256 - 1])
def test_raw_signature_from_der_edges(r: int, s: int) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from sipguard.shaken.sign import _raw_signature

    assert _raw_signature(encode_dss_signature(r, s)) == r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_raw_signature_matches_cryptography_on_real_signatures() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from sipguard.shaken.sign import _raw_signature

    key = ec.generate_private_key(ec.SECP256R1())
    for i in range(300):  # ~1 in 128 has a short r or s: 300 draws cover both paddings often
        der = key.sign(str(i).encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        assert _raw_signature(der) == r.to_bytes(32, "big") + s.to_bytes(32, "big")


# -- our own SPC (FCC 24-120, third-party authentication, in force 2025-09-18) ---------------------
def test_signing_refuses_a_certificate_of_another_spc(creds) -> None:  # type: ignore[no-untyped-def]
    assert Signer.load(creds.config(spc="709J"), NOW).spc == "709J"
    with pytest.raises(ConfigError) as err:
        Signer.load(creds.config(spc="567J"), NOW)
    text = str(err.value)
    assert "shaken.signing.cert" in text and "709J, not ours" in text and "FCC 24-120" in text


def test_spc_config(tmp_path: Path) -> None:
    path = str(tmp_path / "sipguard.yaml")
    base = "shaken:\n  signing:\n    key: k\n    cert: c\n    x5u: https://x.example/c.pem\n"
    assert _signing(base, path).spc is None
    assert _signing(base + "    spc: 567J\n", path).spc == "567J"
    with pytest.raises(ConfigError, match="not an SPC") as err:
        _signing(base + "    spc: 'my spc'\n", path)
    assert str(err.value).startswith(path + ":6: shaken.signing.spc")
