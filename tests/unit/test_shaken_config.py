"""The `shaken:` config section: defaults, resolution of paths, and file:line:key errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from sipguard.errors import ConfigError
from sipguard.shaken.config import ShakenConfig
from sipguard.yamlconf import parse, section_of
from tests.shaken_pki import StiPki


def _cfg(text: str, base: Path) -> ShakenConfig:
    root = section_of(parse(text, "sipguard.yaml"), "sipguard.yaml")
    return ShakenConfig.from_section(root.section("shaken"), str(base))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StiPki:
    return StiPki(tmp_path_factory.mktemp("pki"))


def test_defaults(tmp_path: Path) -> None:
    cfg = _cfg("shaken: {}\n", tmp_path)
    assert cfg == ShakenConfig()
    assert cfg.x5u.ports == (443, 8443) and cfg.x5u.timeout == 2.0 and cfg.crl.failure == "fail-open"


def test_full_section(pki: StiPki) -> None:
    text = f"""shaken:
  trust_anchors: {Path(pki.anchors).name}
  iat_max_age: 30
  iat_max_future: 2
  x5u:
    timeout: 1.5
    ports: [443]
    allow_http: true
    allow_networks: ["127.0.0.0/8", "::1"]
    allow_private: true
    trunk_fetch_rate: 2.5
    trunk_fetch_burst: 7
    tls_ca_bundle: {Path(pki.anchors).name}
  crl: {{enabled: false, failure: fail-closed}}
  signing: {{key: whatever.key, attest: C}}
"""
    cfg = _cfg(text, pki.dir)
    assert cfg.trust_anchors == pki.anchors and cfg.iat_max_age == 30 and cfg.iat_max_future == 2
    assert cfg.x5u.allow_networks == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert cfg.x5u.tls_ca_bundle == pki.anchors and cfg.x5u.ports == (443,) and cfg.x5u.allow_http
    assert cfg.x5u.trunk_fetch_rate == 2.5 and cfg.x5u.trunk_fetch_burst == 7
    assert not cfg.crl.enabled and cfg.crl.failure == "fail-closed"


@pytest.mark.parametrize(("body", "line", "key", "words"), [
    ("  trust_anchors: nope/\n", 2, "shaken.trust_anchors", "not found"),
    ("  trust_anchors: empty.pem\n", 2, "shaken.trust_anchors", "no PEM certificate"),
    ("  iat_max_age: 0\n", 2, "shaken.iat_max_age", ">= 1"),
    ("  iat_max_age: soon\n", 2, "shaken.iat_max_age", "number"),
    ("  x5u:\n    ports: [443, 70000]\n", 3, "shaken.x5u.ports", "between 1 and 65535"),
    ("  x5u:\n    allow_networks:\n      - 2001:4860::/32\n      - lan\n", 5, "shaken.x5u.allow_networks", "'lan'"),
    ("  x5u:\n    trunk_fetch_burst: 0\n", 3, "shaken.x5u.trunk_fetch_burst", ">= 1"),
    ("  x5u: {timeout: -1}\n", 2, "shaken.x5u.timeout", ">= 0.01"),
    ("  x5u: {tls_ca_bundle: /no/such.pem}\n", 2, "shaken.x5u.tls_ca_bundle", "not found"),
    ("  crl: {failure: maybe}\n", 2, "shaken.crl.failure", "fail-open"),
    ("  iat_max_agee: 5\n", 2, "shaken.iat_max_agee", "unknown key"),
])
def test_errors_name_file_line_key(tmp_path: Path, body: str, line: int, key: str, words: str) -> None:
    (tmp_path / "empty.pem").write_text("no certificate here\n")
    with pytest.raises(ConfigError) as info:
        _cfg("shaken:\n" + body, tmp_path)
    err = info.value
    assert (err.path, err.line, err.key) == ("sipguard.yaml", line, key)
    assert words in err.message


def test_identity_lenient(tmp_path: Path) -> None:
    assert _cfg("shaken: {}\n", tmp_path).identity_lenient == frozenset()
    cfg = _cfg("shaken:\n  identity: {lenient: [ppt, alg]}\n", tmp_path)
    assert cfg.identity_lenient == frozenset({"ppt", "alg"})


@pytest.mark.parametrize(("name", "words"), [("info", "info mandatory"), ("typ", "one of alg, ppt")])
def test_identity_lenient_refuses_other_parameters(tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(f"shaken:\n  identity:\n    lenient: [ppt, {name}]\n", tmp_path)
    text = str(err.value)
    assert "sipguard.yaml:3" in text and "shaken.identity.lenient" in text and words in text


def test_trust_list(pki: StiPki, tmp_path: Path) -> None:
    cfg = _cfg(f"shaken:\n  trust_list: {{url: 'https://sti-pa.example/ca-list', sti_pa_root: {pki.anchors}}}\n",
               tmp_path)
    assert (cfg.trust_list.url, cfg.trust_list.sti_pa_root) == ("https://sti-pa.example/ca-list", pki.anchors)
    (tmp_path / "empty.pem").write_text("nothing\n")
    for body, key, words in [
        ("{url: 'https://sti-pa.example/ca-list'}", "shaken.trust_list.url", "must be signed"),
        ("{url: 'ftp://x/list'}", "shaken.trust_list.url", "not an http(s) URL"),
        ("{sti_pa_root: empty.pem}", "shaken.trust_list.sti_pa_root", "no PEM certificate"),
    ]:
        with pytest.raises(ConfigError) as err:
            _cfg(f"shaken:\n  trust_list: {body}\n", tmp_path)
        assert f"sipguard.yaml:2: {key}" in str(err.value) and words in str(err.value), str(err.value)
