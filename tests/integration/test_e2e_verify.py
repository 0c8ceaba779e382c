"""End to end, verification (issue 3): real INVITEs to a running sipguard whose policy rejects
failed verification without a status, so every reason code comes back as its RFC 8224 response
(CONTRACT.md table) with the code in the Reason header; valid calls are forwarded with verstat.

One sipguard serves the whole module (it is started once; each case is one call). The
certificates come from a loopback repository (tests.shaken_pki) and the CRL from the same one.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SipguardProcess, base_config
from cryptography.hazmat.primitives import serialization
from sipclient import MiniUas, UdpClient, invite

from tests.e2e_helpers import CALLEE, CALLER, E2eShaken, cli, reason_text, wait_for, write_policy
from tests.shaken_pki import CertServer, StiPki, identity_header, shaken_identity, sign_passport

pytestmark = pytest.mark.integration

NEEDS_IDENTITY = "13036239999"     # the callee a rule reserves for signed calls (428 otherwise)
RESPONSES = {  # CONTRACT.md, "Verification reason codes and their RFC 8224 responses"
    "no-identity": (428, "Use Identity Header"),
    "stale-iat": (403, "Stale Date"), "future-iat": (403, "Stale Date"),
    "x5u-fetch-failed": (436, "Bad Identity Info"), "x5u-refused": (436, "Bad Identity Info"),
    "cert-untrusted": (437, "Unsupported Credential"), "cert-expired": (437, "Unsupported Credential"),
    "cert-revoked": (437, "Unsupported Credential"), "cert-no-tnauthlist": (437, "Unsupported Credential"),
    **{code: (438, "Invalid Identity Header") for code in (
        "malformed-identity", "bad-alg", "bad-ppt", "missing-alg", "missing-ppt", "x5u-mismatch",
        "bad-signature", "orig-mismatch", "dest-mismatch", "bad-claims")},
}


def call_once(sg: SipguardProcess, identity: list[str] | None = None, **kw: Any) -> tuple[Any, str]:
    """One INVITE from the trunk (CALLER to CALLEE unless told); returns (final, call id)."""
    client = UdpClient()
    call_id = uuid.uuid4().hex
    kw.setdefault("caller", CALLER)
    kw.setdefault("callee", CALLEE)
    try:
        final, _ = client.call(sg.addr, identity=identity, call_id=call_id, **kw)
    finally:
        client.close()
    return final, call_id


class Env:
    def __init__(self, sg: SipguardProcess, uas: MiniUas, shaken: E2eShaken) -> None:
        self.sg, self.uas, self.shaken = sg, uas, shaken

    def call(self, identity: list[str] | None = None, **kw: Any) -> tuple[Any, str]:
        """One INVITE from the trunk; returns (final response, call id)."""
        return call_once(self.sg, identity, **kw)

    def forwarded(self, call_id: str) -> list[Any]:
        return [m for m in self.uas.invites() if m.header("Call-ID") == call_id]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("e2e-verify")
    uas = MiniUas()
    with E2eShaken(tmp / "pki") as shaken:
        policy = write_policy(tmp / "policy.yaml", [
            {"name": "identity-required", "when": {"verstat": "No-TN-Validation", "callee": NEEDS_IDENTITY},
             "action": "reject"},
            {"name": "failed", "when": {"verstat": "TN-Validation-Failed"}, "action": "reject"},
        ])
        (tmp / "sg").mkdir()
        sg = SipguardProcess(base_config(uas.port, shaken=shaken.section(), policy=policy), tmp / "sg")
        sg.start()
        try:
            yield Env(sg, uas, shaken)
        finally:
            sg.stop()
            uas.close()


def _flip_signature(identity: str) -> str:
    token, params = identity.split(";", 1)
    head, payload, sig = token.split(".")
    sig = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    return f"{head}.{payload}.{sig};{params}"


def _with_header(shaken: E2eShaken, leaf: str = "good", **header: Any) -> str:
    """A correctly signed PASSporT whose JOSE header has the given fields changed."""
    assert shaken.pki is not None
    x5u = shaken.url(leaf)
    jose = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": x5u, **header}
    claims = {"attest": "A", "dest": {"tn": [CALLEE[1:]]}, "iat": int(time.time()),
              "orig": {"tn": CALLER[1:]}, "origid": str(uuid.uuid4())}
    return identity_header(sign_passport(shaken.pki.key(leaf), jose, claims), x5u)


def _dead_url() -> str:
    with socket.socket() as sock:   # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/cert.pem"


CASES: dict[str, Any] = {
    "malformed-identity": lambda s: [f"not-a-passport;info=<{s.url('good')}>;alg=ES256;ppt=shaken"],
    "bad-alg": lambda s: [_with_header(s, alg="HS256")],
    "bad-ppt": lambda s: [_with_header(s, ppt="div")],
    # ATIS-1000074 requires both on a SHAKEN Identity header (both suites expect 438)
    "missing-ppt": lambda s: [s.identity().replace(";ppt=shaken", "")],
    "missing-alg": lambda s: [s.identity().replace(";alg=ES256", "")],
    "x5u-mismatch": lambda s: [s.identity(info=s.url("implicit"))],
    "stale-iat": lambda s: [s.identity(iat=int(time.time()) - 600)],
    "future-iat": lambda s: [s.identity(iat=int(time.time()) + 600)],
    "x5u-fetch-failed-404": lambda s: [s.identity(x5u=s.server.url("/missing.pem"))],
    "x5u-fetch-failed-dead": lambda s: [s.identity(x5u=_dead_url())],
    # loopback, but ::1 is not in allow_networks (127.0.0.0/8): the SSRF guard refuses it
    "x5u-refused": lambda s: [s.identity(x5u=f"http://[::1]:{s.server.port}/good.pem")],
    "cert-untrusted": lambda s: [s.identity("untrusted")],
    "cert-expired": lambda s: [s.identity("expired")],
    "cert-revoked": lambda s: [s.identity("revoked")],
    "cert-no-tnauthlist": lambda s: [s.identity("no_tnauth")],
    "bad-signature": lambda s: [_flip_signature(s.identity())],
    "orig-mismatch": lambda s: [s.identity(orig="12127363199")],
    "dest-mismatch": lambda s: [s.identity(dest=["13036231099"])],
    "bad-claims": lambda s: [s.identity(attest="D")],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_reason_gets_its_rfc8224_response(env: Env, case: str) -> None:
    code = case.removesuffix("-404").removesuffix("-dead")
    final, call_id = env.call(CASES[case](env.shaken))
    assert final is not None, env.sg.logs()
    status, phrase = RESPONSES[code]
    assert (final.status, final.first) == (status, f"SIP/2.0 {status} {phrase}"), env.sg.logs()[-2000:]
    assert reason_text(final.header("Reason")) == code
    assert f"cause={status}" in (final.header("Reason") or "")
    assert env.forwarded(call_id) == []


def test_no_identity_where_a_rule_requires_it_is_428(env: Env) -> None:
    final, call_id = env.call(callee="+" + NEEDS_IDENTITY)
    assert final is not None and final.status == 428
    assert final.first == "SIP/2.0 428 Use Identity Header"
    assert reason_text(final.header("Reason")) == "no-identity"
    # the same unsigned call to another number is not concerned by that rule
    final, call_id = env.call()
    assert final is not None and final.status == 200
    pai_or_from = env.forwarded(call_id)[0].header("From") or ""
    assert "verstat=No-TN-Validation" in pai_or_from


def test_valid_call_is_forwarded_with_verstat_and_identity_untouched(env: Env) -> None:
    ident = env.shaken.identity()
    # a second Identity with a ppt sipguard does not verify rides along, in order
    other = f"{env.shaken.token()};info=<{env.shaken.url('good')}>;alg=ES256;ppt=foo"
    pai = f"<sip:{CALLER};verstat=TN-Validation-Passed@127.0.0.1;user=phone>"
    final, call_id = env.call([ident, other], pai=pai)
    assert final is not None and final.status == 200, env.sg.logs()[-2000:]
    got = env.forwarded(call_id)
    assert len(got) == 1
    fwd = got[0]
    assert fwd.all("Identity") == [ident, other]
    assert f"\r\nIdentity: {ident}\r\n".encode() in fwd.raw          # byte for byte
    pais = fwd.all("P-Asserted-Identity")
    assert len(pais) == 1 and pais[0].count("verstat=") == 1
    assert "verstat=TN-Validation-Passed" in pais[0]
    assert "verstat" not in (fwd.header("From") or "")
    assert fwd.header("Reason") is None


def test_upstream_verstat_is_stripped_and_replaced(env: Env) -> None:
    """An upstream claiming Passed on an unsigned call gets sipguard's No-TN-Validation."""
    pai = f"<sip:{CALLER};verstat=TN-Validation-Passed@127.0.0.1;user=phone>"
    extra_from = f"sip:{CALLER};verstat=TN-Validation-Passed@127.0.0.1;user=phone"
    final, call_id = env.call(pai=pai)
    assert final is not None and final.status == 200
    fwd = env.forwarded(call_id)[0]
    pai_out = fwd.header("P-Asserted-Identity") or ""
    assert "TN-Validation-Passed" not in pai_out and "verstat=No-TN-Validation" in pai_out
    # without PAI the verstat goes on From, and a claimed one there is stripped too
    client = UdpClient()
    call_id = uuid.uuid4().hex
    try:
        data = invite(env.sg.addr, client.addr, caller=CALLER, callee=CALLEE, call_id=call_id).replace(
            f"<sip:{CALLER}@127.0.0.1;user=phone>".encode(), f"<{extra_from}>".encode(), 1)
        assert extra_from.encode() in data
        client.send(data, env.sg.addr)
        final, _ = client.final()
    finally:
        client.close()
    assert final is not None and final.status == 200
    from_out = env.forwarded(call_id)[0].header("From") or ""
    assert from_out.count("verstat=") == 1 and "verstat=No-TN-Validation" in from_out


def test_failed_verification_forwarded_keeps_identity(tmp_path: Path, sipguard: Any) -> None:
    """Without a rejecting rule a failed call goes on with TN-Validation-Failed, its Identity
    unaltered (64.6302(b)) and a Reason header naming the failure."""
    uas = MiniUas()
    with E2eShaken(tmp_path / "pki") as shaken:
        policy = write_policy(tmp_path / "policy.yaml", [])
        sg = sipguard(base_config(uas.port, shaken=shaken.section(), policy=policy))
        bad = _flip_signature(shaken.identity())
        env = Env(sg, uas, shaken)
        final, call_id = env.call([bad])
        assert final is not None and final.status == 200
        fwd = env.forwarded(call_id)[0]
        assert fwd.all("Identity") == [bad]
        assert "verstat=TN-Validation-Failed" in (fwd.header("From") or "")
        assert reason_text(fwd.header("Reason")) == "bad-signature"
    uas.close()


def test_sighup_reads_the_trust_anchors_again(tmp_path: Path, sipguard: Any) -> None:
    """The STI-PA's list of STI-CAs changes: the operator replaces the anchors file and sends
    SIGHUP; the running sipguard judges certificates against the new list from then on."""
    uas = MiniUas()
    with E2eShaken(tmp_path / "pki") as shaken:
        assert shaken.pki is not None
        anchors = tmp_path / "sti-roots.pem"
        anchors.write_bytes(Path(shaken.anchors).read_bytes())
        policy = write_policy(tmp_path / "policy.yaml", [])
        sg = sipguard(base_config(uas.port, shaken=shaken.section(trust_anchors=str(anchors)), policy=policy))
        env = Env(sg, uas, shaken)

        def forwarded_from() -> str:
            final, call_id = env.call([shaken.identity()])
            assert final is not None and final.status == 200
            return env.forwarded(call_id)[0].header("From") or ""

        assert "verstat=TN-Validation-Passed" in forwarded_from()
        anchors.write_bytes(shaken.pki.other_root.public_bytes(serialization.Encoding.PEM))
        sg.signal(signal.SIGHUP)
        assert wait_for(lambda: "trust anchors reloaded" in sg.logs()), sg.logs()
        assert "verstat=TN-Validation-Failed" in forwarded_from()
    uas.close()


def test_loopback_x5u_without_allow_networks_is_refused(tmp_path: Path, sipguard: Any) -> None:
    uas = MiniUas()
    with E2eShaken(tmp_path / "pki") as shaken:
        policy = write_policy(tmp_path / "policy.yaml",
                              [{"name": "failed", "when": {"verstat": "TN-Validation-Failed"}, "action": "reject"}])
        sg = sipguard(base_config(uas.port, shaken=shaken.section(allow_networks=[]), policy=policy))
        final, call_id = Env(sg, uas, shaken).call([shaken.identity()])
        assert final is not None and final.first == "SIP/2.0 436 Bad Identity Info"
        assert reason_text(final.header("Reason")) == "x5u-refused"
        assert shaken.server.hits("/good.pem") == 0     # refused before any connection
    uas.close()


def _secsipidx_identity(env: Env, tmp_path: Path) -> str:
    assert env.shaken.pki is not None
    key = tmp_path / "good.key"
    key.write_bytes(env.shaken.pki.key("good").private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    out = subprocess.run(["secsipidx", "-sign-full", "-o", CALLER[1:], "-d", CALLEE[1:], "-a", "A",
                          "-orig-id", str(uuid.uuid4()), "-x5u", env.shaken.url("good"), "-k", str(key)],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(shutil.which("secsipidx") is None, reason="secsipidx is not installed")
def test_secsipidx_signed_identity_verifies(env: Env, tmp_path: Path) -> None:
    ident = _secsipidx_identity(env, tmp_path)
    final, call_id = env.call([ident])
    assert final is not None and final.status == 200, (ident, env.sg.logs()[-2000:])
    fwd = env.forwarded(call_id)[0]
    assert fwd.all("Identity") == [ident]
    assert "verstat=TN-Validation-Passed" in (fwd.header("From") or "")
    # tampered: the same header with one signature character changed fails with 438
    final, _ = env.call([_flip_signature(ident)])
    assert final is not None and final.status == 438
    assert reason_text(final.header("Reason")) == "bad-signature"


def test_cold_burst_for_a_new_x5u_fetches_once(env: Env) -> None:
    assert env.shaken.pki is not None
    path = f"/burst-{uuid.uuid4().hex[:8]}.pem"
    # a slow repository keeps the first download in flight while the burst arrives
    env.shaken.server.route(path, env.shaken.pki.chain_pem("good"), delay=0.5)
    x5u = env.shaken.server.url(path)
    client = UdpClient()
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    burst = 100
    try:
        for n in range(burst):
            ident = env.shaken.identity(x5u=x5u, origid=str(uuid.UUID(int=n)))
            client.send(invite(env.sg.addr, client.addr, caller=CALLER, callee=CALLEE, identity=[ident],
                               call_id=f"burst-{n}-{uuid.uuid4().hex[:6]}"), env.sg.addr)
        finals: dict[str, int] = {}
        end = time.monotonic() + 15
        while len(finals) < burst and time.monotonic() < end:
            msg = client.recv(1.0)
            if msg is not None and msg.status is not None and msg.status >= 200:
                finals[msg.header("Call-ID") or ""] = msg.status
    finally:
        client.close()
    assert len(finals) == burst
    assert set(finals.values()) == {200}, env.sg.logs()[-2000:]
    assert env.shaken.server.hits(path) == 1


def test_dead_repository_costs_one_attempt_not_one_per_call(env: Env) -> None:
    """A 404 is cached (negative cache): ten calls for the same missing x5u, one request."""
    path = f"/gone-{uuid.uuid4().hex[:8]}.pem"
    x5u = env.shaken.server.url(path)
    for _ in range(10):
        final, _ = env.call([env.shaken.identity(x5u=x5u)])
        assert final is not None and final.status == 436
    assert env.shaken.server.hits(path) == 1


FORMS: dict[str, dict[str, Any]] = {
    # orig.tn is matched against P-Asserted-Identity when there is one
    "pai-tel-with-separators": {"pai": "<tel:+1-212-736-3100>", "caller": "anonymous"},
    "pai-sip-user-phone": {"pai": f"<sip:{CALLER}@carrier.example;user=phone>", "caller": "anonymous"},
    "from-national-nanp": {"caller": "2127363100"},
    "from-11-digits-no-plus": {"caller": "12127363100"},
    "from-visual-separators": {"caller": "+1-212-736-3100"},
    "from-rfc4904-params": {"caller": f"{CALLER};tgrp=TG-1;trunk-context=carrier.example"},
    "to-national-nanp": {"callee": "3036231000"},
    # dest.tn may match the Request-URI when To shows something else
    "dest-in-request-uri-only": {"callee": "+13039990000", "ruri": f"sip:{CALLEE}@127.0.0.1;user=phone"},
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_number_forms_still_verify(env: Env, form: str) -> None:
    final, call_id = env.call([env.shaken.identity()], **FORMS[form])
    assert final is not None and final.status == 200, (final.first if final else None,
                                                       final.header("Reason") if final else None)
    fwd = env.forwarded(call_id)[0]
    marked = fwd.header("P-Asserted-Identity") or fwd.header("From") or ""
    assert "verstat=TN-Validation-Passed" in marked


def test_any_element_of_dest_matches(env: Env) -> None:
    ident = env.shaken.identity(dest=["13039990000", CALLEE[1:]])
    final, _ = env.call([ident])
    assert final is not None and final.status == 200


def test_compact_form_identity_header_is_verified(env: Env) -> None:
    """`y:` is the compact form of Identity (RFC 8224 section 4.1)."""
    bad = _flip_signature(env.shaken.identity())
    final, _ = env.call(extra=[f"y: {bad}"])
    assert final is not None and final.status == 438
    good = env.shaken.identity()
    final, call_id = env.call(extra=[f"y: {good}"])
    assert final is not None and final.status == 200
    assert env.forwarded(call_id)[0].all("Identity") == [good]


def test_https_x5u_with_the_configured_ca_bundle(tmp_path: Path, sipguard: Any) -> None:
    """x5u over HTTPS: the web-PKI bundle (tls_ca_bundle) is separate from the STI anchors."""
    uas = MiniUas()
    with CertServer(https=True, directory=tmp_path) as server:
        pki = StiPki(tmp_path / "pki", now=time.time())
        pki.publish(server)
        policy = write_policy(tmp_path / "policy.yaml",
                              [{"name": "failed", "when": {"verstat": "TN-Validation-Failed"}, "action": "reject"}])
        x5u = {"allow_networks": ["127.0.0.0/8"], "allow_private": True, "ports": [server.port],
               "timeout": 1.0}
        trusted = sipguard(base_config(uas.port, policy=policy, shaken={
            "trust_anchors": pki.anchors, "x5u": {**x5u, "tls_ca_bundle": server.ca_bundle}}))
        untrusted = sipguard(base_config(uas.port, policy=policy, shaken={
            "trust_anchors": pki.anchors, "x5u": x5u}))
        url = server.url("/good.pem")
        ident = shaken_identity_for(pki, url)
        final, _ = call_once(trusted, [ident])
        assert final is not None and final.status == 200, trusted.logs()[-1500:]
        # the system bundle does not know the test server's certificate: the download fails
        final, _ = call_once(untrusted, [shaken_identity_for(pki, url)])
        assert final is not None and final.status == 436
        assert reason_text(final.header("Reason")) == "x5u-fetch-failed"
    uas.close()


def shaken_identity_for(pki: Any, x5u: str) -> str:
    return shaken_identity(pki.key("good"), x5u, orig=CALLER[1:], dest=[CALLEE[1:]], iat=int(time.time()))


@pytest.mark.parametrize("case", ["cert-revoked", "orig-mismatch", "stale-iat"])
def test_the_record_of_a_rejected_call_names_the_reason(env: Env, case: str) -> None:
    final, call_id = env.call(CASES[case](env.shaken))
    assert final is not None and final.status == RESPONSES[case][0]

    def record() -> list[dict[str, Any]]:
        done = cli("traceback", "-c", str(env.sg.path), "--call-id", call_id, "--since", "0",
                   "--format", "jsonl")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    found = wait_for(record, timeout=5, step=0.2)
    assert len(found) == 1, found
    rec = found[0]
    assert (rec["action"], rec["status"], rec["rule"], rec["verstat"]) == \
        ("reject", RESPONSES[case][0], "failed", "TN-Validation-Failed")
    assert rec["reasons"][0] == case


# -- verstat only on the number that was signed (PAI when present, else From) -------------------

def send_invite(sg: SipguardProcess, from_: str, pai: tuple[str, ...] = (), identity: tuple[str, ...] = (),
                to: str = f"<sip:{CALLEE}@127.0.0.1;user=phone>", ruri_user: str = CALLEE) -> tuple[Any, str]:
    """One INVITE whose From, P-Asserted-Identity, To and Request-URI user are exactly these."""
    client = UdpClient()
    call_id = uuid.uuid4().hex
    host, port = client.addr
    lines = [f"INVITE sip:{ruri_user}@{sg.addr[0]}:{sg.addr[1]};user=phone SIP/2.0",
             f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{call_id[:16]};rport",
             f"From: {from_};tag=f1", f"To: {to}", f"Call-ID: {call_id}", "CSeq: 1 INVITE",
             f"Contact: <sip:caller@{host}:{port}>", "Max-Forwards: 70",
             *[f"P-Asserted-Identity: {value}" for value in pai], *[f"Identity: {value}" for value in identity],
             "Content-Length: 0"]
    try:
        client.send(("\r\n".join(lines) + "\r\n\r\n").encode(), sg.addr)
        final, _ = client.final()
    finally:
        client.close()
    return final, call_id


def test_verstat_only_on_the_number_signed(tmp_path: Path, sipguard: Any) -> None:
    """The issue's call and its mirror through a real ``sipguard serve`` whose policy forwards
    everything: the exact P-Asserted-Identity and From lines the next hop receives."""
    uas = MiniUas()
    with E2eShaken(tmp_path / "pki") as shaken:
        sg = sipguard(base_config(uas.port, shaken=shaken.section(),
                                  policy=write_policy(tmp_path / "policy.yaml", [])))
        env = Env(sg, uas, shaken)
        from_212 = "<sip:+12125551234@127.0.0.1;user=phone>"
        pai_312 = "<sip:+13125550000@127.0.0.1;user=phone>"

        def forwarded(from_: str, pai: tuple[str, ...], orig: str) -> Any:
            final, call_id = send_invite(sg, from_, pai, (shaken.identity(orig=orig),))
            assert final is not None and final.status == 200, sg.logs()[-2000:]
            got = env.forwarded(call_id)
            assert len(got) == 1
            return got[0]

        # a PASSporT for the From does not make the PAI the callee is shown "verified"
        fwd = forwarded(from_212, (pai_312,), "12125551234")
        assert fwd.all("P-Asserted-Identity") == ["<sip:+13125550000;verstat=TN-Validation-Failed@127.0.0.1;user=phone>"]
        assert fwd.all("From") == [from_212 + ";tag=f1"]
        assert reason_text(fwd.header("Reason")) == "orig-mismatch"
        # the mirror: a PASSporT for the PAI passes on the PAI, nothing on From
        fwd = forwarded(from_212, (pai_312,), "13125550000")
        assert fwd.all("P-Asserted-Identity") == ["<sip:+13125550000;verstat=TN-Validation-Passed@127.0.0.1;user=phone>"]
        assert fwd.all("From") == [from_212 + ";tag=f1"]
        assert fwd.header("Reason") is None
        # a sip and a tel URI of the same number: both Passed
        fwd = forwarded(from_212, (pai_312, "<tel:+1-312-555-0000>"), "13125550000")
        assert fwd.all("P-Asserted-Identity") == [
            "<sip:+13125550000;verstat=TN-Validation-Passed@127.0.0.1;user=phone>",
            "<tel:+1-312-555-0000;verstat=TN-Validation-Passed>"]
        # ... of two numbers: Passed only on the one signed
        fwd = forwarded(from_212, (pai_312, "<tel:+12125551234>"), "12125551234")
        assert fwd.all("P-Asserted-Identity") == [
            "<sip:+13125550000;verstat=TN-Validation-Failed@127.0.0.1;user=phone>",
            "<tel:+12125551234;verstat=TN-Validation-Passed>"]
        assert fwd.all("From") == [from_212 + ";tag=f1"]
        # an anonymous From with a PAI: the PAI is the identity
        anonymous = '"Anonymous" <sip:anonymous@anonymous.invalid>'
        fwd = forwarded(anonymous, ("<tel:+12125551234>",), "12125551234")
        assert fwd.all("P-Asserted-Identity") == ["<tel:+12125551234;verstat=TN-Validation-Passed>"]
        assert fwd.all("From") == [anonymous + ";tag=f1"]
        # no PAI: From is the identity and carries the verstat
        fwd = forwarded(from_212, (), "12125551234")
        assert fwd.all("From") == ["<sip:+12125551234;verstat=TN-Validation-Passed@127.0.0.1;user=phone>;tag=f1"]
        assert fwd.all("P-Asserted-Identity") == []
    uas.close()


# (From, PAI, To, Request-URI user, PASSporT orig, PASSporT dest): foreign caller IDs and callees,
# with and without "+", in sip and tel URIs, compared as the PASSporT means them
FOREIGN: dict[str, tuple[str, tuple[str, ...], str, str, str, str]] = {
    "from-austria-no-plus": ("<sip:439991001@127.0.0.1>", (), f"<sip:{CALLEE}@127.0.0.1;user=phone>", CALLEE,
                             "439991001", CALLEE[1:]),
    "from-uk-plus": ("<sip:+442071838750@127.0.0.1;user=phone>", (), f"<sip:{CALLEE}@127.0.0.1;user=phone>",
                     CALLEE, "442071838750", CALLEE[1:]),
    "pai-tel-japan": ("<sip:anonymous@anonymous.invalid>", ("<tel:+81-3-1234-5678>",),
                      f"<sip:{CALLEE}@127.0.0.1;user=phone>", CALLEE, "81312345678", CALLEE[1:]),
    "pai-sip-india-no-plus": (f"<sip:{CALLER}@127.0.0.1;user=phone>", ("<sip:919876543210@127.0.0.1>",),
                              f"<sip:{CALLEE}@127.0.0.1;user=phone>", CALLEE, "919876543210", CALLEE[1:]),
    "to-and-ruri-austria-no-plus": (f"<sip:{CALLER}@127.0.0.1;user=phone>", (), "<sip:439991002@127.0.0.1>",
                                    "439991002", CALLER[1:], "439991002"),
    "to-tel-mexico-ruri-plus": (f"<sip:{CALLER}@127.0.0.1;user=phone>", (), "<tel:+52-55-1234-5678>",
                                "+525512345678", CALLER[1:], "525512345678"),
}


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_foreign_numbers_verify_as_the_passport_means_them(env: Env, case: str) -> None:
    from_, pai, to, ruri_user, orig, dest = FOREIGN[case]
    final, call_id = send_invite(env.sg, from_, pai, (env.shaken.identity(orig=orig, dest=[dest]),), to, ruri_user)
    assert final is not None and final.status == 200, (final.first if final else None,
                                                       final.header("Reason") if final else None)
    fwd = env.forwarded(call_id)[0]
    shown = fwd.all("P-Asserted-Identity")[-1] if pai else fwd.header("From") or ""
    assert "verstat=TN-Validation-Passed" in shown
    assert "verstat" not in (fwd.header("From") or "") or not pai


def test_a_foreign_number_of_other_digits_is_orig_mismatch(env: Env) -> None:
    """+49 30 123456 (10 digits) is not the NANP number 1-493-012-3456."""
    final, _ = send_invite(env.sg, "<sip:+4930123456@127.0.0.1;user=phone>",
                           identity=(env.shaken.identity(orig="14930123456"),))
    assert final is not None and final.status == 438 and reason_text(final.header("Reason")) == "orig-mismatch"
