"""The live fuzz (tests/fuzz/live_fuzz.py), short and bounded, against a real
``sipguard serve --workers 2``: a few hundred mutated datagrams and mutated TCP streams per
batch, then every worker still has its pid, normal calls complete over UDP and TCP, and the
workers' RSS has not grown past a generous bound."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import base_config

from tests.fuzz import live_fuzz

pytestmark = pytest.mark.integration


def test_live_fuzz_leaves_every_worker_serving(sipguard: Any, tmp_path: Path) -> None:
    uas = live_fuzz.Uas()
    try:
        sg = sipguard(base_config(uas.port), workers=2)
        result = live_fuzz.run(sg, sg.proc.pid, uas, workers=2, batches=2, datagrams=300, streams=25,
                               seed=20261206, rss_slack_mb=64)
        assert result.ok, (result.failures, sg.logs())
        assert result.datagrams >= 590 and result.streams == 50 and result.answers > 0
        assert result.workers_alive == 2 and result.calls == 10
    finally:
        uas.close()


def test_a_connection_reset_at_once_logs_no_traceback(sipguard: Any) -> None:
    """Found by the live fuzz: a TCP peer that connects and resets at once (SO_LINGER 0) makes
    the event loop log "Exception in callback" with a traceback, one per connection: cheap
    log flooding for an attacker. The worker survives."""
    sg = sipguard(base_config(5999))
    for _ in range(100):  # the race is lost about one time in three
        conn = socket.create_connection(sg.addr)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    time.sleep(0.5)
    assert sg.proc.poll() is None
    assert "Traceback" not in sg.logs()
