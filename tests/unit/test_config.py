"""The main config file (issue 2, section 4): every mistake names the file, the line and the
key; ``check-config`` and ``serve`` exit non-zero with that message; the shipped examples load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sipguard.config import load_config
from sipguard.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BAD = [
    # (case, file text, line, key, words of the message)
    ("unknown key", "listen: ['udp://127.0.0.1:5060']\nlisten_port: 5\n", 2, "listen_port", "unknown key"),
    ("bad mode", "mode: proxyy\n", 1, "mode", "'proxyy' is not one of: proxy, redirect"),
    ("bad port", "listen: ['udp://127.0.0.1:99999']\n", 1, "listen", "bad port '99999'"),
    ("bad steering", "proxy:\n  steering: random\n", 2, "proxy.steering", "not one of: transaction, peer"),
    ("unknown proxy key", "proxy:\n  record_rout: true\n", 2, "proxy.record_rout", "unknown key"),
    ("trunk role", "trunks:\n  - id: a\n    role: weird\n    sources: ['10.0.0.0/8']\n", 3, "trunks[0].role",
     "'weird' is not one of: foreign, domestic"),
    ("trunk CIDR", "trunks:\n  - id: a\n    role: foreign\n    sources: ['10.0.0.300/8']\n", 4,
     "trunks[0].sources", "not an IP address or CIDR"),
    ("duplicate trunk", "trunks:\n  - {id: a, role: foreign, sources: ['10.0.0.1']}\n"
     "  - {id: a, role: foreign, sources: ['10.0.0.2']}\n", 3, "trunks", "duplicate trunk id 'a'"),
    ("store URL", "store: mysql://x\n", 1, "store", "expected memory or a redis://"),
    ("missing policy file", "policy: nope.yaml\n", 1, "policy", "file not found"),
    ("workers", "workers: 0\n", 1, "workers", "must be >= 1"),
    ("next hop", "next_hop: 'http://x'\n", 1, "next_hop", "must be a sip: URI"),
    ("store timeout", "store_timeout: 100\n", 1, "store_timeout", "must be <= 10"),
    ("tls listen without a certificate", "listen: ['tls://127.0.0.1:5061']\n", 1, "listen",
     "needs tls.cert and tls.key"),
    ("tls file missing", "tls:\n  cert: nope.pem\n  key: nope.key\n", 2, "tls.cert", "file not found"),
    ("tls ca not a certificate", "tls:\n  ca: sipguard.yaml\n", 2, "tls.ca", "cannot use it for TLS"),
    ("tls unknown key", "tls:\n  verify_peer: true\n", 2, "tls.verify_peer", "unknown key"),
    ("sips over udp", "next_hop: 'sips:10.0.0.5;transport=udp'\n", 1, "next_hop", "over TLS only"),
    ("listen scheme", "listen: ['sctp://127.0.0.1:5060']\n", 1, "listen", "tls://HOST:PORT"),
    ("http beyond loopback without a token", "http:\n  listen: '0.0.0.0:9090'\n", 2, "http.listen",
     "set http.token_file"),
    ("http token too short", "http:\n  listen: '127.0.0.1:9090'\n  token_file: short.token\n", 3,
     "http.token_file", "16 characters or more"),
    ("YAML syntax", "mode: [proxy\n", 2, None, "invalid YAML"),
    ("not a mapping", "- a\n- b\n", 1, None, "expected a mapping"),
]


@pytest.mark.parametrize(("text", "line", "key", "words"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str | None, words: str) -> None:
    path = tmp_path / "sipguard.yaml"
    path.write_text(text)
    (tmp_path / "short.token").write_text("abc\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    err = info.value
    assert (err.path, err.line, err.key) == (str(path), line, key)
    assert words in err.message
    assert str(err).startswith(f"{path}:{line}: " + (f"{key}: " if key else ""))


def test_http_token_file(tmp_path: Path) -> None:
    (tmp_path / "admin.token").write_text("  s3cret-0123456789abcdef\n")
    path = tmp_path / "sipguard.yaml"
    path.write_text("http: {listen: '0.0.0.0:9090', token_file: admin.token}\n")
    assert load_config(str(path)).http_token == "s3cret-0123456789abcdef"
    path.write_text("http: {listen: '[::1]:9090'}\n")        # loopback: no token needed
    assert load_config(str(path)).http_token is None


def test_http_limits(tmp_path: Path) -> None:
    from sipguard.observe.http_wire import HttpLimits

    path = tmp_path / "sipguard.yaml"
    path.write_text("http: {listen: '127.0.0.1:9090'}\n")
    assert load_config(str(path)).http_limits == HttpLimits(max_connections=64, max_body=65536, read_timeout=5.0)
    path.write_text("http:\n  listen: '127.0.0.1:9090'\n  max_connections: 8\n  max_body: 4096\n"
                    "  read_timeout: 0.5\n")
    assert load_config(str(path)).http_limits == HttpLimits(8, 4096, 0.5)
    for line, text in (("max_connections: 0", "http.max_connections"), ("max_body: 100", "http.max_body"),
                       ("read_timeout: 1000", "http.read_timeout"), ("max_head: 9", "http.max_head")):
        path.write_text(f"http:\n  listen: '127.0.0.1:9090'\n  {line}\n")
        with pytest.raises(ConfigError) as info:
            load_config(str(path))
        assert (info.value.line, info.value.key) == (3, text)


def test_proxy_secret_file(tmp_path: Path) -> None:
    """proxy.secret_file: at least 16 bytes (a short or empty file is refused on its line);
    a huge or endless file is read only as far as its first 4 KiB; a missing one is named."""
    path = tmp_path / "sipguard.yaml"
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    path.write_text("proxy: {secret_file: secret}\n")
    assert load_config(str(path)).proxy.secret == b"0123456789abcdef0123456789abcdef"
    secret.write_bytes(b"A" * (64 << 20))  # hostile: 64 MiB
    assert load_config(str(path)).proxy.secret == b"A" * 4096
    path.write_text("proxy: {secret_file: /dev/zero}\n")  # endless: read is bounded too
    assert load_config(str(path)).proxy.secret == b"\0" * 4096
    for content in (b"", b"short\n"):
        secret.write_bytes(content)
        path.write_text("proxy:\n  secret_file: secret\n")
        with pytest.raises(ConfigError) as info:
            load_config(str(path))
        assert (info.value.line, info.value.key) == (2, "proxy.secret_file") and "at least 16" in str(info.value)
    path.write_text("proxy:\n  secret_file: nowhere\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.key == "proxy.secret_file"


def test_tls_next_hops_and_listen_defaults() -> None:
    from sipguard.addresses import next_hop_address, parse_listen

    assert next_hop_address("sips:10.0.0.5") == ("10.0.0.5", 5061, "tls")
    assert next_hop_address("sip:10.0.0.5;transport=TLS") == ("10.0.0.5", 5061, "tls")
    assert next_hop_address("sips:sbc@10.0.0.5:5071") == ("10.0.0.5", 5071, "tls")
    assert next_hop_address("sip:10.0.0.5") == ("10.0.0.5", 5060, "udp")
    assert (parse_listen("tls://0.0.0.0").port, parse_listen("tcp://0.0.0.0").port) == (5061, 5060)


def test_defaults_and_steering(tmp_path: Path) -> None:
    path = tmp_path / "sipguard.yaml"
    path.write_text("next_hop: 'sip:10.0.0.5:5070'\n")
    config = load_config(str(path))
    assert config.mode == "proxy" and config.store == "memory" and config.workers == 1
    assert config.proxy.steering == "transaction" and config.proxy.max_pending == 2000
    path.write_text("proxy: {steering: peer}\n")
    assert load_config(str(path)).proxy.steering == "peer"


@pytest.mark.parametrize("name", ["sipguard.example.yaml", "sipguard.demo.yaml", "sipguard.edge.yaml",
                                  "sipguard.redirect.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(str(REPO / "config" / name))
    assert config.trunks


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sipguard", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60, check=False)


def test_check_config_and_serve_exit_non_zero_with_the_message(tmp_path: Path) -> None:
    good = run("check-config", str(REPO / "config" / "sipguard.example.yaml"), cwd=tmp_path)
    assert good.returncode == 0 and ": ok (proxy mode" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: ['udp://127.0.0.1:5999']\nmode: relay\n")
    for args in (("check-config", str(bad)), ("serve", "-c", str(bad))):
        result = run(*args, cwd=tmp_path)
        assert result.returncode != 0, args
        assert f"{bad}:2: mode: 'relay' is not one of: proxy, redirect" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    missing = run("check-config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode != 0 and "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr
