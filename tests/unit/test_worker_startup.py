"""Start-up order of one worker: the HTTP listener (/healthz, /metrics, /readyz) is open
before the SIP listeners, so anything that sees the worker answer SIP (a dispatcher's
OPTIONS, the test harness) can already read its health and metrics. Before this order a
worker answered OPTIONS while /metrics still refused connections (a CI failure)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import base_config, free_port

from sipguard.config import load_config
from sipguard.proxy import worker as worker_module


def test_http_listener_opens_before_the_sip_listeners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, http = free_port(), free_port()
    config = base_config(free_port(), http={"listen": f"127.0.0.1:{http}"},
                         listen=[f"udp://127.0.0.1:{port}"],
                         traceback={"path": str(tmp_path / "traceback.db")})
    path = tmp_path / "sipguard.yaml"
    path.write_text(yaml.safe_dump(config))
    seen: dict[str, Any] = {}
    real = worker_module.start_http

    async def spy(cfg: Any, worker: Any) -> Any:
        listener = await real(cfg, worker)
        seen["sip_listening"] = worker.transports is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", http)   # the listener answers now
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        seen["readyz"] = (await reader.read()).split(b"\r\n", 1)[0]
        writer.close()
        worker.begin_stop()          # run_worker listens, then drains and returns at once
        return listener

    monkeypatch.setattr(worker_module, "start_http", spy)

    async def main() -> int:
        return await worker_module.run_worker(load_config(str(path)), 0, 1, serve_http=True)

    assert asyncio.run(main()) == 0
    assert seen["sip_listening"] is False
    assert seen["readyz"].startswith(b"HTTP/1.1 503"), seen   # not ready until SIP listens
