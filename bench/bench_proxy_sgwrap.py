"""Run ``sipguard`` with an experiment applied, for bench/bench_proxy.py (never in production).

``python bench/bench_proxy_sgwrap.py RCVBUF_BYTES serve -c CONFIG --workers N``: every listening UDP
socket sipguard opens gets SO_RCVBUF = RCVBUF_BYTES (0: as shipped; the kernel caps it at
net.core.rmem_max) before sipguard runs as usual. With SG_BENCH_NO_RECORDS=1 in the environment
traceback records are dropped at submit(), to measure what writing them costs; with
SG_BENCH_LAG=1 each worker logs every event-loop stall over 2 ms (wall time, stall ms, the
process's CPU in that stall) to ``lag-PID.txt`` and every collector pass over 1 ms to ``gc-PID.txt``
in its working directory, and a watchdog thread writes the main thread's stack to ``stall-PID.txt``
while the loop is over 20 ms late; with SG_BENCH_PIN=1 worker i runs on CPU i; with
SG_BENCH_GC_THRESHOLD=N the collector's generation-0 threshold is N (default 700) and the objects
alive at start are frozen out of collections (gc.freeze), to measure what collection pauses cost;
with SG_BENCH_GC_BOUND="GROWTH,SLACK_BYTES" the worker's full collector pass runs at that bound, at
once (``proxy/gcpacing.py``; "0,0" makes it a full pass at nearly every tick). Measures the
effect of a change without editing sipguard.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from sipguard.cli import main
from sipguard.proxy import transport
from sipguard.records.writer import RecordWriter

RCVBUF = int(sys.argv.pop(1))
if RCVBUF > 0:
    # the size the listening sockets are given (transport._grow_receive_buffer reads it when
    # each is made, whichever path serves it: compiled code calls the endpoint's methods
    # directly, so a patched connection_made would not be seen)
    transport.UDP_RCVBUF = RCVBUF
if os.environ.get("SG_BENCH_GC_THRESHOLD"):
    gc.freeze()
    gc.set_threshold(int(os.environ["SG_BENCH_GC_THRESHOLD"]), 50, 100)
if os.environ.get("SG_BENCH_LAG") == "1":
    import asyncio
    import time

    from sipguard.proxy.worker import Worker

    _listen = Worker.listen

    _gc_started = [0.0, 0.0, 0]

    def _gc_log(phase: str, info: dict[str, int]) -> None:
        """Collector passes over 1 ms, to tell them from other stalls (gc-PID.txt): wall ms,
        generation, objects collected, the young generation's count at the start (allocations
        net of frees since the last pass) and the process's CPU ms during the pass (not the
        objects frozen: ``gc.get_freeze_count`` walks them all, 10-20 ms under load)."""
        if phase == "start":
            _gc_started[:] = [time.perf_counter(), time.process_time(), gc.get_count()[0]]
            return
        took = time.perf_counter() - _gc_started[0]
        if took > 0.001:
            with open(f"gc-{os.getpid()}.txt", "a") as out:
                out.write(f"{time.time():.3f} {took * 1e3:.1f} gen{info['generation']} "
                          f"collected={info['collected']} count={_gc_started[2]} "
                          f"cpu={(time.process_time() - _gc_started[1]) * 1e3:.1f}\n")

    gc.callbacks.append(_gc_log)

    async def _lag_probe() -> None:
        """A 1 ms sleeper: how late it wakes is how long the loop could not run callbacks."""
        with open(f"lag-{os.getpid()}.txt", "w", buffering=1) as out:
            while True:
                t0, c0 = time.monotonic(), time.process_time()
                _beat[0] = t0
                await asyncio.sleep(0.001)
                late = time.monotonic() - t0 - 0.001
                if late > 0.002:
                    out.write(f"{time.time():.3f} {late * 1e3:.1f} {(time.process_time() - c0) * 1e3:.1f}\n")

    _beat = [time.monotonic()]

    def _watchdog() -> None:
        """While the loop is over 20 ms late, sample the main thread's stack (stall-PID.txt)."""
        import sys as _sys
        import threading
        import traceback

        main = threading.main_thread().ident
        with open(f"stall-{os.getpid()}.txt", "w", buffering=1) as out:
            while True:
                time.sleep(0.002)
                late = time.monotonic() - _beat[0]
                if late > 0.02:
                    frame = _sys._current_frames().get(main)
                    if frame is not None:
                        where = " <- ".join(f"{f.f_code.co_filename.rsplit('/', 2)[-1]}:{f.f_lineno}:{f.f_code.co_name}"
                                            for f, _ in reversed(list(traceback.walk_stack(frame))[-12:]))
                        out.write(f"{time.time():.3f} late={late * 1e3:.0f}ms {where}\n")

    async def listen(self: Worker) -> None:   # run_worker calls prepare() and listen(), not start()
        await _listen(self)
        self._lag_task = asyncio.get_running_loop().create_task(_lag_probe())  # type: ignore[attr-defined]
        import threading

        threading.Thread(target=_watchdog, daemon=True).start()

    Worker.listen = listen  # type: ignore[method-assign]
if os.environ.get("SG_BENCH_PIN") == "1":  # experiment: worker i on CPU i
    import sipguard.proxy.supervisor as _supervisor

    _run_worker = _supervisor.run_worker

    async def _pinned(config: Any, index: int, workers: int, serve_http: bool, steering: Any = None,
                      udp_socks: Any = None) -> int:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})
        return await _run_worker(config, index, workers, serve_http, steering, udp_socks)

    _supervisor.run_worker = _pinned  # type: ignore[assignment]
if os.environ.get("SG_BENCH_GC_BOUND"):  # experiment: "GROWTH,SLACK" of the collector's full pass
    import sipguard.proxy.gcpacing as _gcpacing

    _growth, _slack = os.environ["SG_BENCH_GC_BOUND"].split(",")
    _gcpacing.GcPacer.__init__.__defaults__ = (float(_growth), int(_slack), 0.0, _gcpacing.resident_bytes)
if os.environ.get("SG_BENCH_NO_RECORDS") == "1":
    RecordWriter.submit = lambda self, record: None  # type: ignore[method-assign]
sys.exit(main(sys.argv[1:]))
