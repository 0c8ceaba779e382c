"""What sipguard signs, sipguard's own verifier accepts (and rejects once tampered with)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from sipguard.shaken.reasons import Reason, Verstat
from sipguard.shaken.sign import Signer, SigningConfig
from sipguard.shaken.verify import Verifier
from tests.shaken_pki import MapFetcher, StiPki

NOW = 1_790_000_000.0
X5U = "https://certs.example.net/good.pem"
ORIG, DEST = "12024561111", "13035551234"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[StiPki, Signer]:
    directory = tmp_path_factory.mktemp("pki")
    pki = StiPki(directory, now=NOW, spc="709J")
    key_path = directory / "good.key"
    key_path.write_bytes(pki.key("good").private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    cfg = SigningConfig(key=str(key_path), cert=str(Path(directory) / "good.pem"), x5u=X5U)
    return pki, Signer.load(cfg, NOW)


def _verify(pki: StiPki, identity: str, orig: str = ORIG, now: float = NOW):  # type: ignore[no-untyped-def]
    verifier = Verifier(pki.config(), MapFetcher({X5U: pki.chain_pem("good")}))
    return asyncio.run(verifier.verify([identity], [orig], [DEST], now))


def test_own_verifier_accepts_signed_call(setup: tuple[StiPki, Signer]) -> None:
    pki, signer = setup
    assert signer.spc == "709J"
    origid = signer.origid_for("carrier-a")
    res = _verify(pki, signer.sign(ORIG, [DEST], NOW, origid))
    assert res.verstat is Verstat.PASSED and res.reasons == ()
    assert (res.attest, res.spc, res.orig_tn, res.dest_tns, res.origid, res.x5u) == \
        ("C", "709J", ORIG, (DEST,), origid, X5U)


def test_own_verifier_rejects_tampering(setup: tuple[StiPki, Signer]) -> None:
    pki, signer = setup
    value = signer.sign(ORIG, [DEST], NOW, "x")
    token, params = value.split(";", 1)
    head, payload, sig = token.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    assert Reason.BAD_SIGNATURE in _verify(pki, f"{head}.{payload}.{flipped};{params}").reasons
    assert Reason.ORIG_MISMATCH in _verify(pki, value, orig="12024561112").reasons
    assert Reason.STALE_IAT in _verify(pki, value, now=NOW + 3600).reasons
