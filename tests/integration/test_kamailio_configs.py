"""Both Kamailio models pass `kamailio -c` with every feature switch their header documents,
with the defines the end-to-end tests use, and the sipguard configs paired with them load."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from sipguard.config import load_config
from tests.kamailio_fixtures import EDGE_CFG, REDIRECT_CFG, ROOT, define_args, kamailio_binary

pytestmark = pytest.mark.integration

DS_LIST = ROOT / "kamailio" / "edge-proxy" / "dispatcher.list"
EDGE_BASE: dict[str, str | None] = {"DS_LIST": f'"{DS_LIST}"'}
TEST_DEFINES: dict[str, str | None] = {"KAM_LISTEN": "udp:127.0.0.1:25060", "KAM_ALIAS": '"127.0.0.1:25060"',
                "CTL_SOCK": '"unix:/tmp/kamailio-check.sock"'}


def switches(cfg: Path) -> list[str]:
    """The WITH_* switches a config's header offers ('*** To ..., define WITH_X')."""
    header = cfg.read_text().split("####### Include")[0]
    return sorted(set(re.findall(r"define (WITH_[A-Z_]+)", header)) - {"WITH_FEATURE"})


def check(cfg: Path, defines: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kamailio_binary(), "-c", "-f", str(cfg), *define_args(defines)],
                          capture_output=True, text=True, timeout=30)


CASES: list[tuple[Path, dict[str, str | None]]] = [(EDGE_CFG, {**EDGE_BASE}), (EDGE_CFG, {**EDGE_BASE, **TEST_DEFINES, "DS_PING_INTERVAL": "1",
                                                 "SIPGUARD_TIMEOUT": "1000"}),
         (REDIRECT_CFG, {}), (REDIRECT_CFG, {**TEST_DEFINES, "SIPGUARD_URI": '"sip:127.0.0.1:25062"',
                                             "CORE_URI": '"sip:127.0.0.1:25070"'})]
CASES += [(EDGE_CFG, {**EDGE_BASE, name: None}) for name in switches(EDGE_CFG)]
CASES += [(REDIRECT_CFG, {name: None}) for name in switches(REDIRECT_CFG)]


@pytest.mark.parametrize(("cfg", "defines"), CASES,
                         ids=[f"{c.parent.name}-{'+'.join(d) or 'default'}" for c, d in CASES])
def test_kamailio_accepts_config(cfg: Path, defines: dict[str, str | None]) -> None:
    result = check(cfg, defines)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config file ok" in result.stdout + result.stderr


def test_header_documents_the_switches() -> None:
    assert switches(EDGE_CFG) == ["WITH_CTL", "WITH_DEBUG", "WITH_TCP"]
    assert switches(REDIRECT_CFG) == ["WITH_CTL", "WITH_DEBUG", "WITH_FAIL_CLOSED"]


def test_broken_config_is_refused(tmp_path: Path) -> None:
    """The check above can fail: a config calling a function no module exports is refused."""
    broken = tmp_path / "kamailio.cfg"
    broken.write_text(REDIRECT_CFG.read_text().replace("t_on_failure(", "t_on_failur(", 1))
    result = check(broken, {})
    assert result.returncode != 0


@pytest.mark.parametrize("name", ["sipguard.edge.yaml", "sipguard.redirect.yaml"])
def test_paired_sipguard_config_loads(name: str) -> None:
    config = load_config(str(ROOT / "config" / name))
    assert config.mode == ("redirect" if "redirect" in name else "proxy")
    assert config.store == "memory"
    assert config.signing is not None
