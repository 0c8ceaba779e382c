"""Run ``sipguard`` with an experiment applied, for bench/bench_proxy.py (never in production).

``python bench/bench_proxy_sgwrap.py RCVBUF_BYTES serve -c CONFIG --workers N``: every UDP socket
sipguard opens gets SO_RCVBUF = RCVBUF_BYTES (0: unchanged; the kernel caps it at
net.core.rmem_max) before sipguard runs as usual. With SG_BENCH_NO_RECORDS=1 in the environment
traceback records are dropped at submit(), to measure what writing them costs; with
SG_BENCH_GC_THRESHOLD=N the collector's generation-0 threshold is N (default 700) and the objects
alive at start are frozen out of collections (gc.freeze), to measure what collection pauses cost. Measures the
effect of a change without editing sipguard.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
from typing import Any

from sipguard.cli import main
from sipguard.proxy.transport import UdpEndpoint
from sipguard.records.writer import RecordWriter

RCVBUF = int(sys.argv.pop(1))
_made = UdpEndpoint.connection_made


def connection_made(self: UdpEndpoint, transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and RCVBUF > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    _made(self, transport)


UdpEndpoint.connection_made = connection_made  # type: ignore[method-assign]
if os.environ.get("SG_BENCH_GC_THRESHOLD"):
    gc.freeze()
    gc.set_threshold(int(os.environ["SG_BENCH_GC_THRESHOLD"]), 50, 100)
if os.environ.get("SG_BENCH_NO_RECORDS") == "1":
    RecordWriter.submit = lambda self, record: None  # type: ignore[method-assign]
sys.exit(main(sys.argv[1:]))
