"""``sipguard serve`` refuses an address it cannot have, in one line that names it: a port
another program holds, and a second sipguard on the addresses of one that runs (the
workers' SO_REUSEPORT would otherwise let the two share the port silently)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import base_config, free_port

pytestmark = pytest.mark.integration


def serve(config: dict[str, Any], folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    path = folder / "second.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run([sys.executable, "-m", "sipguard", "serve", "-c", str(path), *args],
                          cwd=folder, capture_output=True, text=True, timeout=60)


def test_a_port_another_program_holds_is_one_line_naming_it(tmp_path: Path) -> None:
    port = free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", port))
    try:
        config = base_config(free_port(), listen=[f"udp://127.0.0.1:{port}"])
        run = serve(config, tmp_path)
    finally:
        holder.close()
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"second.yaml: listen: cannot listen on udp://127.0.0.1:{port}: already in use" in lines[0]


def test_a_busy_http_port_is_named_too(tmp_path: Path) -> None:
    http = free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", http))
    holder.listen()
    try:
        config = base_config(free_port(), listen=[f"udp://127.0.0.1:{free_port()}"],
                             http={"listen": f"127.0.0.1:{http}"})
        run = serve(config, tmp_path)
    finally:
        holder.close()
    assert run.returncode == 1, run.stderr
    assert f"http.listen: cannot listen on http://127.0.0.1:{http}: already in use" in run.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_instance_on_the_same_addresses_is_refused(sipguard: Any, tmp_path: Path, workers: int) -> None:
    first = sipguard(base_config(free_port()), workers=workers)
    run = serve(first.config, tmp_path, "--workers", str(workers))
    assert run.returncode == 1, run.stderr
    assert f"cannot listen on udp://127.0.0.1:{first.port}: already in use" in run.stderr
    first.wait_ready(5)    # the first one still answers


def test_a_rule_naming_a_trunk_the_config_lacks_is_logged_at_start(sipguard: Any, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrules:\n  - name: a\n    when: {trunk: carier-a}\n    action: reject\n"
                      "    class: deterministic\n")
    sg = sipguard(base_config(free_port(), policy=str(policy)))
    logs = sg.logs()
    assert f"{policy}:4: rules[0].when.trunk: no trunk named 'carier-a'" in logs, logs
    assert "did you mean 'carrier-a'?" in logs
