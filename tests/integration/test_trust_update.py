"""`sipguard trust update`: the STI-PA's signed CA list fetched over a real loopback HTTP
repository (the x5u rules apply), checked, written atomically, and read by a running sipguard on
the SIGHUP sent to its pid; every refused list leaves the anchors in force byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SipguardProcess, base_config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sipclient import MiniUas, UdpClient

from sipguard.cli import main
from sipguard.shaken.certs import load_trust_anchors
from tests.e2e_helpers import CALLEE, CALLER, E2eShaken, reason_text, wait_for, write_policy
from tests.shaken_pki import CertServer, StiPki, sign_passport

pytestmark = pytest.mark.integration


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class StiPa:
    """An STI-PA: a root, the list signer it certifies, published on a loopback repository."""

    def __init__(self, directory: Path, server: CertServer) -> None:
        now = time.time()
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._cert("STI-PA Test Root", self.root_key, "STI-PA Test Root", self.root_key, now, ca=True)
        signer = self._cert("STI-PA List Signer", self.key, "STI-PA Test Root", self.root_key, now, ca=False)
        self.root_file = directory / "sti-pa-root.pem"
        self.root_file.write_text(_pem(self.root))
        self.server = server
        server.route("/sti-pa-signer.pem", _pem(signer).encode())
        self.signer_url = server.url("/sti-pa-signer.pem")

    @staticmethod
    def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, now: float, *, ca: bool) -> x509.Certificate:
        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(dt.datetime.fromtimestamp(now - 86400, dt.UTC))
                .not_valid_after(dt.datetime.fromtimestamp(now + 86400 * 30, dt.UTC))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(issuer_key, hashes.SHA256()))

    def jws(self, cas: list[x509.Certificate], sequence: int, *, exp: int | None = None,
            key: Any = None) -> str:
        claims = {"version": 1, "sequence": sequence, "exp": exp or int(time.time()) + 86400,
                  "trustList": [_pem(c) for c in cas]}
        return sign_passport(key or self.key, {"alg": "ES256", "typ": "JWT", "x5u": self.signer_url}, claims)

    def publish(self, cas: list[x509.Certificate], sequence: int, **kw: Any) -> str:
        body = json.dumps({"status": "success", "caList": self.jws(cas, sequence, **kw)}).encode()
        self.server.route("/ca-list", body)
        return self.server.url("/ca-list")


class Env:
    def __init__(self, tmp: Path, shaken: E2eShaken, pa: StiPa, sg: SipguardProcess, config: Path,
                 anchors: Path) -> None:
        self.tmp, self.shaken, self.pa, self.sg, self.config, self.anchors = tmp, shaken, pa, sg, config, anchors

    @property
    def pki(self) -> StiPki:
        assert self.shaken.pki is not None
        return self.shaken.pki

    def update(self, *args: str) -> int:
        return main(["trust", "update", "-c", str(self.config), *args])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("trust")
    uas = MiniUas()
    with E2eShaken(tmp / "pki") as shaken:
        pa = StiPa(tmp, shaken.server)
        assert shaken.pki is not None
        anchors = tmp / "sti-cas.pem"
        anchors.write_bytes(Path(shaken.anchors).read_bytes())
        policy = write_policy(tmp / "policy.yaml", [
            {"name": "failed", "when": {"verstat": "TN-Validation-Failed"}, "action": "reject"}])
        section = shaken.section(trust_anchors=str(anchors),
                                 trust_list={"url": shaken.server.url("/ca-list"), "sti_pa_root": str(pa.root_file)})
        (tmp / "sg").mkdir()
        config = base_config(uas.port, shaken=section, policy=policy)
        sg = SipguardProcess(config, tmp / "sg")
        sg.start()
        cfg_file = tmp / "trust.yaml"
        cfg_file.write_text(yaml.safe_dump(config))
        try:
            yield Env(tmp, shaken, pa, sg, cfg_file, anchors)
        finally:
            sg.stop()
            uas.close()


def _status(env: Env, leaf: str) -> tuple[int, str | None]:
    client = UdpClient()
    try:
        final, _ = client.call(env.sg.addr, identity=[env.shaken.identity(leaf)], caller=CALLER, callee=CALLEE)
    finally:
        client.close()
    assert final is not None
    return final.status, reason_text(final.header("Reason"))


def test_signed_list_installs_and_the_running_service_takes_it(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert _status(env, "untrusted") == (437, "cert-untrusted")
    pid_file = env.tmp / "sipguard.pid"
    assert env.sg.proc is not None
    pid_file.write_text(f"{env.sg.proc.pid}\n")
    env.pa.publish([env.pki.root, env.pki.other_root], sequence=7)
    assert env.update("--pid-file", str(pid_file)) == 0
    assert "2 STI-CAs written" in capsys.readouterr().out
    assert load_trust_anchors(str(env.anchors)).count == 2
    assert env.anchors.read_text().startswith("# sipguard trust list sequence 7\n")
    # the running sipguard read the new list: a chain to the added STI-CA now verifies
    assert wait_for(lambda: _status(env, "untrusted")[0] == 200, timeout=10)
    assert _status(env, "good")[0] == 200
    # the same list again: nothing written, nothing signalled
    assert env.update() == 0
    assert "already current" in capsys.readouterr().out
    # the same CAs under a higher sequence: the sequence is recorded (a replay of 7 is then refused)
    env.pa.publish([env.pki.root, env.pki.other_root], sequence=8)
    assert env.update() == 0
    assert env.anchors.read_text().startswith("# sipguard trust list sequence 8\n")
    env.pa.publish([env.pki.root, env.pki.other_root], sequence=7)
    assert env.update() == 1


@pytest.mark.parametrize(("case", "words"), [
    ("older-sequence", "older than the one in use"),
    ("expired", "expired"),
    ("bad-signature", "signature does not verify"),
    ("wrong-signer", "signature does not verify"),
    ("not-ca", "not a CA certificate"),
    ("unsigned-from-url", "not a signed list"),
    ("refused-address", "could not be downloaded"),
])
def test_a_bad_list_changes_nothing(env: Env, case: str, words: str, capsys: pytest.CaptureFixture[str]) -> None:
    env.pa.publish([env.pki.root, env.pki.other_root], sequence=7)
    assert env.update("--force") == 0
    before = env.anchors.read_bytes()
    pki = env.pki
    config = env.config
    if case == "older-sequence":
        env.pa.publish([env.pki.root], sequence=6)
    elif case == "expired":
        env.pa.publish([env.pki.root], sequence=8, exp=int(time.time()) - 1)
    elif case == "bad-signature":
        jws = env.pa.jws([env.pki.root], sequence=8)
        head, payload, sig = jws.split(".")
        env.pa.server.route("/ca-list", f"{head}.{payload}.{sig[:-4]}AAAA".encode())
    elif case == "wrong-signer":
        env.pa.publish([env.pki.root], sequence=8, key=ec.generate_private_key(ec.SECP256R1()))
    elif case == "not-ca":
        env.pa.publish([x509.load_pem_x509_certificate(pki.chain_pem("good"))], sequence=8)
    elif case == "unsigned-from-url":
        env.pa.server.route("/ca-list", _pem(pki.root).encode())
    elif case == "refused-address":
        # the x5u SSRF guard: ::1 is not in shaken.x5u.allow_networks
        doc = yaml.safe_load(config.read_text())
        doc["shaken"]["trust_list"]["url"] = f"http://[::1]:{env.pa.server.port}/ca-list"
        config = env.tmp / "refused.yaml"
        config.write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    assert main(["trust", "update", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert words in err and "kept" in err, err
    assert env.anchors.read_bytes() == before


def test_offline_file_pem_bundle_and_jws(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = env.tmp / "cas.pem"
    bundle.write_text(_pem(env.pki.root))
    assert env.update("--file", str(bundle)) == 0
    assert load_trust_anchors(str(env.anchors)).count == 1
    jws_file = env.tmp / "list.jws"
    jws_file.write_text(env.pa.jws([env.pki.root, env.pki.other_root], sequence=9))
    assert env.update("--file", str(jws_file)) == 0
    assert load_trust_anchors(str(env.anchors)).count == 2
    # a folder of anchors cannot be replaced whole: refused with what to do
    doc = yaml.safe_load(env.config.read_text())
    doc["shaken"]["trust_anchors"] = str(env.tmp)
    folder_cfg = env.tmp / f"{uuid.uuid4().hex}.yaml"
    folder_cfg.write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    assert main(["trust", "update", "-c", str(folder_cfg), "--file", str(bundle)]) == 1
    assert "point it at a file" in capsys.readouterr().err
