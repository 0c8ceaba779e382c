"""Stopping and reloading keep their promises (issue "Hold the edge", item 8), on a real
``sipguard serve`` with real sockets.

- SIGTERM with calls in progress: each call already forwarded gets its 200 OK through
  sipguard, every INVITE sent after the signal gets 503 + Retry-After (never silence), the
  records of the answered calls are on disk, and the process exits by itself.
- SIGHUP: a new ``next_hop`` takes effect for the calls that follow.
- A worker killed with SIGKILL is restarted and calls complete again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import base_config
from sipclient import MiniUas, UdpClient, invite

pytestmark = pytest.mark.integration


def finals(client: UdpClient, expected: int, timeout: float = 10.0) -> dict[str, int]:
    """Call-ID -> final status, for ``expected`` calls (or what came within ``timeout``)."""
    got: dict[str, int] = {}
    end = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < end:
        msg = client.recv(max(0.05, end - time.monotonic()))
        if msg is None:
            break
        if msg.status is not None and msg.status >= 200:
            got.setdefault(msg.header("Call-ID") or "", msg.status)
            if msg.status == 503:
                assert msg.header("Retry-After")
    return got


def test_sigterm_lets_calls_in_progress_finish_and_answers_new_invites_503(sipguard: Any) -> None:
    uas = MiniUas(delay=1.0)
    client = UdpClient()
    try:
        sg = sipguard(base_config(uas.port, proxy={"drain_timeout": 10}))
        before = [f"before-{i}" for i in range(20)]
        for call_id in before:
            client.send(invite(sg.addr, client.addr, call_id=call_id), sg.addr)
        deadline = time.monotonic() + 5
        while len(uas.invites()) < len(before) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(uas.invites()) == len(before)  # all forwarded, none answered yet
        sg.signal(signal.SIGTERM)
        time.sleep(0.1)
        after = [f"after-{i}" for i in range(10)]
        for call_id in after:
            client.send(invite(sg.addr, client.addr, call_id=call_id), sg.addr)
        got = finals(client, len(before) + len(after))
        assert {c: got.get(c) for c in before} == dict.fromkeys(before, 200)
        assert {c: got.get(c) for c in after} == dict.fromkeys(after, 503)
        assert sg.proc.wait(15) == 0
        assert len(uas.invites()) == len(before)
        with sqlite3.connect(sg.workdir / "var" / "traceback.db") as db:
            recorded = {row[0] for row in db.execute("SELECT call_id FROM records")}
        assert set(before) <= recorded, sg.logs()
    finally:
        client.close()
        uas.close()


def test_a_stop_writes_every_decision_line_and_count_first(sipguard: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision lines wait up to 50 ms to go out together (observe/logs.py), the per-call
    counts up to a housekeeping tick (observe/decisions.py): a worker stopped right after its
    calls (forked: it ends with os._exit) still writes every line, and its metrics file
    holds every call."""
    from sipguard.observe import metrics

    uas = MiniUas()
    client = UdpClient()
    folder = tmp_path / "prom"
    try:
        sg = sipguard(base_config(uas.port), workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(folder)})
        calls = [f"line-{i}" for i in range(20)]
        for call_id in calls:
            client.send(invite(sg.addr, client.addr, call_id=call_id), sg.addr)
        assert finals(client, len(calls)) == dict.fromkeys(calls, 200)
        sg.signal(signal.SIGTERM)
        assert sg.proc.wait(15) == 0
        lines = [json.loads(line) for line in sg.log_path.read_text().splitlines() if '"sipguard.decisions"' in line]
        assert sorted(line["call_id"] for line in lines) == sorted(calls), sg.logs()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))   # the workers' files, summed
        text = metrics.render()[0].decode()
        invites = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("sipguard_invites_total{"))
        assert invites == len(calls) and f"sipguard_decision_seconds_count {len(calls)}.0" in text, text
    finally:
        client.close()
        uas.close()


def test_sighup_applies_a_new_next_hop(sipguard: Any) -> None:
    first, second = MiniUas(), MiniUas()
    client = UdpClient()
    try:
        sg = sipguard(base_config(first.port))
        final, _ = client.call(sg.addr)
        assert final is not None and final.status == 200 and len(first.invites()) == 1
        config = yaml.safe_load(sg.path.read_text())
        config["next_hop"] = f"sip:127.0.0.1:{second.port}"
        sg.path.write_text(yaml.safe_dump(config, sort_keys=False))
        sg.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "config reloaded" not in sg.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        final, _ = client.call(sg.addr)
        assert final is not None and final.status == 200, sg.logs()
        assert len(second.invites()) == 1 and len(first.invites()) == 1
    finally:
        client.close()
        first.close()
        second.close()


def test_sighup_names_the_keys_that_need_a_restart(sipguard: Any) -> None:
    uas = MiniUas()
    try:
        sg = sipguard(base_config(uas.port))
        config = yaml.safe_load(sg.path.read_text())
        config["listen"] = [*config["listen"], "udp://127.0.0.1:1"]
        config["proxy"] = {"max_message_size": 4096}
        sg.path.write_text(yaml.safe_dump(config, sort_keys=False))
        sg.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "restart" not in sg.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "only after a restart: listen, proxy.max_message_size" in sg.logs()
    finally:
        uas.close()


def children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.update(int(p) for p in text)
    return out


def test_a_killed_worker_is_restarted_and_calls_go_on(sipguard: Any) -> None:
    uas = MiniUas()
    client = UdpClient()
    try:
        sg = sipguard(base_config(uas.port), workers=2)
        deadline = time.monotonic() + 10
        while len(children(sg.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = children(sg.proc.pid)
        assert len(workers) == 2
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = children(sg.proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.05)
        assert len(now) == 2 and victim not in now, sg.logs()
        assert "restarting" in sg.logs()
        sg.wait_ready()
        statuses = []
        for _ in range(10):
            final, seen = client.call(sg.addr)
            statuses.append((final.status if final else None, [m.first for m in seen]))
        assert all(s == 200 for s, _ in statuses), (statuses, sg.logs())
    finally:
        client.close()
        uas.close()
