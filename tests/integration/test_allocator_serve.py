"""proxy.allocator with real processes: ``sipguard serve`` runs on jemalloc where it is
installed (same PID, every worker), on Python's allocator when told so; after a burst of
small objects is freed, ``allocator.release()`` leaves jemalloc no free page held back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config, free_port

from sipguard.proxy import allocator

pytestmark = pytest.mark.integration

LIBRARY = allocator.find_jemalloc()
needs_jemalloc = pytest.mark.skipif(LIBRARY is None, reason="jemalloc not installed (apt install libjemalloc2)")
REPO = Path(__file__).resolve().parents[2]


def maps_jemalloc(pid: int) -> bool:
    return "libjemalloc" in Path(f"/proc/{pid}/maps").read_text()


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in out.stdout.split()]


@needs_jemalloc
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_on_jemalloc_by_default(sipguard: Any, workers: int) -> None:
    sg = sipguard(base_config(free_port()), workers=workers)
    pid = sg.proc.pid          # started again in place: the PID systemd knows stays
    procs = [pid, *children(pid)]
    assert len(procs) == (1 if workers == 1 else 1 + workers)
    for proc in procs:
        assert maps_jemalloc(proc), proc
        assert environ(proc)["PYTHONMALLOC"] == "malloc"
    end = time.monotonic() + 10   # each worker says so once it listens (OPTIONS may come first)
    while sg.logs().count("allocator jemalloc") < workers and time.monotonic() < end:
        time.sleep(0.1)
    logs = sg.logs()
    assert logs.count("allocator jemalloc") == workers and logs.count("starting sipguard with") == 1, logs


def test_serve_keeps_pythons_allocator_when_told(sipguard: Any) -> None:
    sg = sipguard(base_config(free_port(), proxy={"allocator": "python"}))
    assert not maps_jemalloc(sg.proc.pid)
    assert "PYTHONMALLOC" not in environ(sg.proc.pid)
    end = time.monotonic() + 10
    while "allocator pymalloc" not in sg.logs() and time.monotonic() < end:
        time.sleep(0.1)
    assert "allocator pymalloc" in sg.logs()


PROBE = """
import sys
import time
from sipguard.proxy import allocator
burst = [(str(n), n * 1.5, b"x" * (n % 300)) for n in range(300_000)]
keep = burst[::997]
del burst
before = allocator.dirty_bytes()
assert allocator.release()
after = allocator.dirty_bytes()
print(allocator.describe(), before, after)
"""


@needs_jemalloc
def test_release_leaves_jemalloc_no_free_page_held_back() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONMALLOC": "malloc", "LD_PRELOAD": str(LIBRARY)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    name, before, after = out.stdout.split()
    assert name == "jemalloc"
    assert int(before) > 1 << 20          # the freed burst: pages jemalloc still holds
    assert int(after) == 0                 # all given back


def test_release_without_jemalloc_trims_glibc() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC")}
    env["PYTHONPATH"] = str(REPO)
    code = "from sipguard.proxy import allocator; print(allocator.describe(), allocator.dirty_bytes(), allocator.release())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["pymalloc", "None", "True"], out.stderr
