"""Trunk matching by source address on a real network: sipguard runs in the edge namespace;
an INVITE from an upstream address inside the trunk's CIDR is screened and reaches the core,
one from another upstream address gets 403 (unknown source). Needs CAP_NET_ADMIN: skips
with a message otherwise."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.netns import CORE, EDGE_UP, TRUNK_CIDR, UPSTREAM_IN_TRUNK, UPSTREAM_OUTSIDE, Topology
from tests.sipclient import MiniUas, UdpClient

pytestmark = pytest.mark.integration
SIP_PORT = 5060
CORE_PORT = 5070


def wait_answering(client: UdpClient, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"sipguard exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        client.send((f"OPTIONS sip:{EDGE_UP}:{SIP_PORT} SIP/2.0\r\n"
                     f"Via: SIP/2.0/UDP {client.addr[0]}:{client.addr[1]};branch=z9hG4bK{time.time_ns()}\r\n"
                     f"From: <sip:probe@{client.addr[0]}>;tag=p\r\nTo: <sip:{EDGE_UP}>\r\n"
                     f"Call-ID: nsprobe-{time.time_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                     "Content-Length: 0\r\n\r\n").encode(), (EDGE_UP, SIP_PORT))
        msg = client.recv(0.3)
        if msg is not None and msg.status == 200:
            return
    raise RuntimeError(f"sipguard did not answer in the edge namespace:\n{log.read_text(errors='replace')}")


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, object]]:
    with Topology() as net:
        with net.inside("core"):
            uas = MiniUas(host=CORE, port=CORE_PORT)
        with net.inside("upstream"):
            inside, outside = UdpClient(UPSTREAM_IN_TRUNK), UdpClient(UPSTREAM_OUTSIDE)
        config = {
            "listen": [f"udp://{EDGE_UP}:{SIP_PORT}"], "mode": "proxy",
            "next_hop": f"sip:{CORE}:{CORE_PORT}", "unknown_source": "reject",
            "trunks": [{"id": "carrier-a", "role": "foreign", "sources": [TRUNK_CIDR]}],
            "store": "memory", "traceback": {"path": str(tmp_path / "traceback.db")},
        }
        path = tmp_path / "sipguard.yaml"
        path.write_text(yaml.safe_dump(config))
        log = tmp_path / "sipguard.log"
        with open(log, "wb") as out:
            proc = net.popen("edge", [sys.executable, "-m", "sipguard", "serve", "-c", str(path)],
                             stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            wait_answering(inside, proc, log)
            yield {"uas": uas, "inside": inside, "outside": outside, "log": log}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for client in (inside, outside):
                client.close()
            uas.close()


def test_source_inside_trunk_cidr_is_screened_and_forwarded(network: dict[str, object]) -> None:
    client = network["inside"]
    assert isinstance(client, UdpClient)
    final, _ = client.call((EDGE_UP, SIP_PORT), caller="+12127363100", callee="+13036231000")
    assert final is not None and final.status == 200, Path(str(network["log"])).read_text(errors="replace")
    uas = network["uas"]
    assert isinstance(uas, MiniUas)
    invite = uas.wait_invites(1)[-1]
    # the call crossed the edge: sipguard's Via (edge address towards the core) is on top
    assert "verstat=No-TN-Validation" in (invite.header("From") or "") + (invite.header("P-Asserted-Identity") or "")


def test_source_outside_every_trunk_is_refused(network: dict[str, object]) -> None:
    client = network["outside"]
    assert isinstance(client, UdpClient)
    final, _ = client.call((EDGE_UP, SIP_PORT), caller="+12127363100", callee="+13036231000")
    assert final is not None and final.status == 403
    assert "unknown source" in (final.header("Reason") or "")
    uas = network["uas"]
    assert isinstance(uas, MiniUas)
    assert uas.invites() == []
