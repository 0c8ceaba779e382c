"""The systemd units pass `systemd-analyze verify` without a single warning, and carry the
settings the deployment issue promises (notify + watchdog, unprivileged, hardened)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
REQUIRED = {
    "Type": "notify", "User": "sipguard", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "NoNewPrivileges": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service", "Restart": "on-failure", "NotifyAccess": "main",
    "ExecReload": "/bin/kill -HUP $MAINPID", "ProtectProc": "invisible", "ProcSubset": "pid", "UMask": "0077",
}


def settings(unit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), value.strip())
    return out


@pytest.mark.parametrize("name", ["sipguard.service", "sipguard@.service"])
def test_unit_has_the_promised_settings(name: str) -> None:
    unit = settings(UNITS / name)
    for key, value in REQUIRED.items():
        assert unit.get(key) == value, key
    assert int(unit["WatchdogSec"]) > 0 and int(unit["LimitNOFILE"]) >= 4096
    assert "/var/lib/sipguard" in unit["ReadWritePaths"]
    config = "/etc/sipguard/%i.yaml" if "@" in name else "/etc/sipguard/sipguard.yaml"
    assert unit["ExecStart"].endswith(f"serve -c {config}")


def verify(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not available on this machine")
    # verify insists the ExecStart binary exists: point it at this checkout's sipguard
    binary = Path(sys.executable).with_name("sipguard")
    unit = tmp_path / name
    unit.write_text(text.replace("/usr/local/bin/sipguard", str(binary)))
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          env={"SYSTEMD_LOG_LEVEL": "notice", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})


@pytest.mark.parametrize(("source", "name"), [("sipguard.service", "sipguard.service"),
                                              ("sipguard@.service", "sipguard@edge1.service")])
def test_systemd_analyze_verify(tmp_path: Path, source: str, name: str) -> None:
    if not Path(sys.executable).with_name("sipguard").exists():
        pytest.skip("the sipguard entry point is not installed in this environment")
    result = verify(tmp_path, name, (UNITS / source).read_text())
    assert result.returncode == 0, result.stderr
    # systemd only warns ("..., ignoring") about a bad value: any output is a finding
    assert result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr + result.stdout


def test_verify_catches_a_bad_setting(tmp_path: Path) -> None:
    if not Path(sys.executable).with_name("sipguard").exists():
        pytest.skip("the sipguard entry point is not installed in this environment")
    text = (UNITS / "sipguard.service").read_text().replace("NotifyAccess=main", "NotifyAccess=bogus")
    result = verify(tmp_path, "sipguard.service", text)
    assert "ignoring" in result.stderr


@pytest.mark.parametrize("name", ["sipguard.service", "sipguard@.service", "sipguard-trust-update.service"])
def test_systemd_analyze_security_exposure_stays_at_or_below_2(tmp_path: Path, name: str) -> None:
    """The units' exposure score (systemd-analyze security: 0 best, 10 worst) was 2.0 when the
    hardening issue closed; it may only go down."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not Path(sys.executable).with_name("sipguard").exists():
        pytest.skip("systemd-analyze or the sipguard entry point is not available")
    unit = tmp_path / name.replace("@", "@edge1")
    unit.write_text((UNITS / name).read_text().replace("/usr/local/bin/sipguard",
                                                        str(Path(sys.executable).with_name("sipguard"))))
    run = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True,
                         text=True, timeout=60, env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", run.stdout)
    assert found, run.stdout + run.stderr
    assert float(found.group(1)) < 2.0, run.stdout     # 2.0 before ProtectProc, ProcSubset, UMask=0077; 1.8 after
    # the trust list it writes is public (UMask=0022); sipguard's records are not
    for setting in ("ProtectProc=", "ProcSubset=") + (("UMask=",) if "trust" not in name else ()):
        assert not any(line.startswith("✗ " + setting) for line in run.stdout.splitlines()), setting


def test_trust_update_units(tmp_path: Path) -> None:
    service = settings(UNITS / "sipguard-trust-update.service")
    assert service["Type"] == "oneshot" and service["User"] == "sipguard"
    assert service["ExecStart"].endswith("trust update -c /etc/sipguard/sipguard.yaml")
    assert service["ExecStartPost"] == "+/bin/systemctl try-reload-or-restart sipguard.service"
    assert service["ProtectSystem"] == "strict" and "/var/lib/sipguard" in service["ReadWritePaths"]
    timer = settings(UNITS / "sipguard-trust-update.timer")
    assert timer["OnCalendar"] == "daily" and timer["Persistent"] == "true"
    assert timer["WantedBy"] == "timers.target"
    if not Path(sys.executable).with_name("sipguard").exists():
        pytest.skip("the sipguard entry point is not installed in this environment")
    result = verify(tmp_path, "sipguard-trust-update.service",
                    (UNITS / "sipguard-trust-update.service").read_text())
    assert result.returncode == 0 and not (result.stderr.strip() or result.stdout.strip()), result.stderr
    (tmp_path / "sipguard-trust-update.timer").write_text((UNITS / "sipguard-trust-update.timer").read_text())
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    timer_check = subprocess.run([analyze, "verify", str(tmp_path / "sipguard-trust-update.timer")],
                                 capture_output=True, text=True, timeout=60,
                                 env={"SYSTEMD_LOG_LEVEL": "notice", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    assert timer_check.returncode == 0 and not (timer_check.stderr.strip() or timer_check.stdout.strip()), \
        timer_check.stderr
