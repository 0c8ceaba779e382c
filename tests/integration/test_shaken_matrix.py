"""The STIR/SHAKEN interop matrix (issue 18, item 7): every case of
tests/data/shaken_matrix/cases.yaml (its INVITE, the certificate served at its x5u, the expected
response and verstat) sent to a real `sipguard serve` over UDP, twice: to a callee whose rule
rejects failed verification (the RFC 8224 response and the reason code come back) and to one
where every call is forwarded (the verstat of each identity header reaching the next hop).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SipguardProcess, base_config
from cryptography.hazmat.primitives.asymmetric import ec
from sipclient import MiniUas, UdpClient

from sipguard.shaken.rcd import integrity, json_pointer
from tests.e2e_helpers import E2eShaken, reason_text, write_policy
from tests.shaken_pki import _cert, _pem, sign_passport, tnauthlist_der

pytestmark = pytest.mark.integration

CASES: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "data" / "shaken_matrix" / "cases.yaml").read_text())["cases"]
REJECTING = "+13036239000"   # a rule rejects TN-Validation-Failed calls to this callee
FORWARDING = "+13036231000"  # every call to this one is forwarded
_VERSTAT = re.compile(r";verstat=([^;@>]+)", re.IGNORECASE)


class Matrix:
    def __init__(self, sg: SipguardProcess, uas: MiniUas, shaken: E2eShaken, ca_leaf_key: Any) -> None:
        self.sg, self.uas, self.shaken, self.ca_leaf_key = sg, uas, shaken, ca_leaf_key

    def identity(self, spec: dict[str, Any], callee: str) -> str:
        pki = self.shaken.pki
        assert pki is not None
        cert = spec["cert"]
        x5u = self.shaken.server.url(f"/{cert}.pem")
        key = self.ca_leaf_key if cert == "ca-leaf" else pki.key(cert)
        jose = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": x5u, **spec.get("header", {})}
        claims = {"attest": "A", "dest": {"tn": [callee.lstrip("+")]}, "iat": int(time.time()) + spec.get("iat_offset", 0),
                  "orig": {"tn": spec["orig"]}, "origid": str(uuid.uuid4())}
        params = spec.get("params", "info=<{x5u}>;alg=ES256;ppt=shaken").replace("{x5u}", x5u)
        return f"{sign_passport(key, jose, claims)};{params}"

    def more(self, spec: dict[str, Any], callee: str) -> str:
        """A div or rcd PASSporT of a case's `more` list (cases.yaml)."""
        pki = self.shaken.pki
        assert pki is not None
        x5u = self.shaken.server.url(f"/{spec['cert']}.pem")
        jose = {"alg": "ES256", "ppt": spec["ppt"], "typ": "passport", "x5u": x5u}
        claims: dict[str, Any] = {"iat": int(time.time()), "orig": {"tn": spec["orig"]}}
        if spec["ppt"] == "div":
            claims.update(dest={"tn": [spec["dest"].replace("{callee}", callee).lstrip("+")]}, div={"tn": spec["div"]})
        else:
            claims.update(dest={"tn": [callee.lstrip("+")]}, rcd=spec["rcd"])
            claims["rcdi"] = {pointer: integrity(json_pointer(spec["rcd"], pointer) if how == "good" else ["x"])
                              for pointer, how in spec.get("rcdi", {}).items()}
        return f"{sign_passport(pki.key(spec['cert']), jose, claims)};info=<{x5u}>;alg=ES256;ppt={spec['ppt']}"

    def call(self, case: dict[str, Any], callee: str) -> tuple[Any, list[Any]]:
        client = UdpClient()
        host, port = client.addr
        call_id = uuid.uuid4().hex
        to = case.get("to", callee)  # retargeted: To is the number first called
        lines = [f"INVITE sip:{callee}@{self.sg.addr[0]}:{self.sg.addr[1]};user=phone SIP/2.0",
                 f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
                 *(h.replace("{host}", host).replace("{callee}", callee) for h in case["headers"]),
                 f"To: <sip:{to}@{self.sg.addr[0]};user=phone>", f"Call-ID: {call_id}", "CSeq: 1 INVITE",
                 f"Contact: <sip:caller@{host}:{port}>", "Max-Forwards: 70"]
        if "identity" in case:  # a given Identity value (a replay)
            lines.append(f"Identity: {case['identity']}")
        if "passport" in case:
            shaken = self.identity(case["passport"], to)
            lines.append(f"Identity: {shaken}")
            for spec in case.get("more", ()):
                lines += [f"Identity: {shaken}"] * spec["copies"] if "copies" in spec else \
                    [f"Identity: {self.more(spec, callee)}"]
        try:
            client.send(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), self.sg.addr)
            final, _ = client.final()
        finally:
            client.close()
        return final, [m for m in self.uas.invites() if m.header("Call-ID") == call_id]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    tmp = tmp_path_factory.mktemp("matrix")
    uas = MiniUas()
    with E2eShaken(tmp / "pki") as shaken:
        pki = shaken.pki
        assert pki is not None
        # a CA certificate (basicConstraints CA) used as the PASSporT signer: refused by the path checks
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _cert("SHAKEN ca-leaf", key, "STI Test Intermediate", pki.int_key, pki.now - 86400,
                     pki.now + 86400 * 30, ca=True, tnauth=tnauthlist_der(pki.spc))
        shaken.server.route("/ca-leaf.pem", _pem(leaf) + _pem(pki.int))
        policy = write_policy(tmp / "policy.yaml", [
            {"name": "failed", "when": {"verstat": "TN-Validation-Failed", "callee": REJECTING.lstrip("+")},
             "action": "reject"},
            {"name": "tag-passports", "when": {"callee": FORWARDING.lstrip("+")},
             "action": "forward", "tag": {"passports": True}}])
        (tmp / "sg").mkdir()
        sg = SipguardProcess(base_config(uas.port, shaken=shaken.section(crl={"enabled": False}), policy=policy),
                             tmp / "sg")
        sg.start()
        try:
            yield Matrix(sg, uas, shaken, key)
        finally:
            sg.stop()
            uas.close()


def _verstats(values: list[str]) -> list[str | None]:
    out: list[str | None] = []
    for line in values:
        for value in re.split(r",(?![^<]*>)", line):
            found = _VERSTAT.search(value)
            out.append(found.group(1) if found else None)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_rejecting(matrix: Matrix, name: str) -> None:
    case = CASES[name]
    expect = case["expect"]
    final, forwarded = matrix.call(case, REJECTING)
    assert final is not None, matrix.sg.logs()[-2000:]
    assert final.status == expect["status"], (final.first, final.header("Reason"), matrix.sg.logs()[-2000:])
    if expect["status"] >= 300:
        assert reason_text(final.header("Reason")) == expect["reason"]
        assert forwarded == []
    else:
        assert len(forwarded) == 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_forwarded_verstat(matrix: Matrix, name: str) -> None:
    case = CASES[name]
    final, forwarded = matrix.call(case, FORWARDING)
    assert final is not None and final.status == 200, matrix.sg.logs()[-2000:]
    assert len(forwarded) == 1
    fwd = forwarded[0]
    want = case["expect"]["verstat"]
    assert _verstats(fwd.all("P-Asserted-Identity")) == want["pai"], fwd.all("P-Asserted-Identity")
    assert _verstats([fwd.header("From") or ""]) == [want["from"]], fwd.header("From")
    if "passport" in case:  # the Identity received goes on, every header, whatever the verdict
        more = sum(spec.get("copies", 1) for spec in case.get("more", ()))
        assert len(fwd.all("Identity")) == 1 + more
    tags = case["expect"].get("tags", {})
    for name in ("X-Sipguard-Div", "X-Sipguard-Rcd", "X-Sipguard-Replayed"):
        assert fwd.header(name) == tags.get(name), (name, fwd.header(name))


def test_replayed_passport_on_a_second_call(matrix: Matrix) -> None:
    """The same signed Identity on a second call (another Call-ID): flagged; the first is not."""
    case = {"headers": ["From: <sip:+12125551234@{host};user=phone>;tag=1"]}
    identity = matrix.identity({"cert": "good", "orig": "12125551234"}, FORWARDING)
    first, first_fwd = matrix.call({**case, "identity": identity}, FORWARDING)
    second, second_fwd = matrix.call({**case, "identity": identity}, FORWARDING)
    assert first is not None and second is not None and first.status == second.status == 200
    assert first_fwd[0].header("X-Sipguard-Replayed") is None
    assert second_fwd[0].header("X-Sipguard-Replayed") == "yes"
