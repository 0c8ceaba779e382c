"""Memory of a running sipguard while unauthenticated clients POST big bodies to the admin
listener (issue "Hold the edge", 6: 300 such requests took a worker from 52 to 288 MB).

Starts ``sipguard serve`` (one worker, memory store, ``http.token_file`` set) on loopback,
then sends ``--clients`` concurrent ``POST /admin/notices`` without a token, each announcing and
sending ``--body`` bytes, and prints the answers by status and the process's resident memory
before, after and at its peak (VmHWM). Loopback only; bounded in count; stops by itself.

    PYTHONPATH=. .venv/bin/python bench/bench_admin_http.py --clients 300 --body 1048576
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TOKEN = "bench-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) // 1024      # MB
    return fields


async def post(port: int, body: bytes) -> int:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        head = f"POST /admin/notices HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, head + body), 30)
        except (OSError, TimeoutError):
            pass                                   # the server answered and closed first
        data = b""
        try:
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 30):
                data += chunk
        except (OSError, TimeoutError):
            pass
        return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else 0
    finally:
        sock.close()


async def flood(port: int, clients: int, size: int) -> collections.Counter[int]:
    body = b"x" * size
    return collections.Counter(await asyncio.gather(*(post(port, body) for _ in range(clients))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--body", type=int, default=1 << 20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        http_port, sip_port = free_port(), free_port()
        Path(tmp, "admin.token").write_text(TOKEN + "\n")
        Path(tmp, "sipguard.yaml").write_text(json.dumps({
            "listen": [f"udp://127.0.0.1:{sip_port}"], "next_hop": f"sip:127.0.0.1:{free_port()}",
            "store": "memory", "traceback": {"path": f"{tmp}/tb.db", "spool": f"{tmp}/spool"},
            "http": {"listen": f"127.0.0.1:{http_port}", "token_file": "admin.token"}}))
        proc = subprocess.Popen([sys.executable, "-m", "sipguard", "serve", "-c", f"{tmp}/sipguard.yaml"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            before = memory(proc.pid)
            start = time.monotonic()
            statuses = asyncio.run(flood(http_port, args.clients, args.body))
            took = time.monotonic() - start
            time.sleep(1)
            after = memory(proc.pid)
        finally:
            proc.terminate()
            proc.wait(15)
    print(json.dumps({"clients": args.clients, "body_bytes": args.body, "statuses": dict(statuses),
                      "seconds": round(took, 2), "rss_mb_before": before["VmRSS"],
                      "rss_mb_after": after["VmRSS"], "rss_mb_peak": after["VmHWM"],
                      "python": sys.version.split()[0], "pythonpath": os.environ.get("PYTHONPATH", "")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
