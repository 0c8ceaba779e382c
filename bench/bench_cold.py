"""bench_core.py with a pause after every call: what the same work costs when the worker idles
between calls, as a live worker below saturation does.

    PYTHONPATH=. .venv/bin/python bench/bench_cold.py PAUSE [sleep|spin] [bench_core.py's arguments]

Each call's datagrams go into the core exactly as in ``bench_core.py`` (its ``run``/``run_redirect``
build the worker and the calls); only the round differs: after every call the thread sleeps
(``sleep``: the vCPU may idle or run another process) or busy-waits (``spin``: it keeps the
core) for PAUSE seconds, and the figure is the thread's own CPU time spent on the calls, the
pauses left out. PAUSE 0 is bench_core's back-to-back round, counted the same way.

    PYTHONPATH=. .venv/bin/python bench/bench_cold.py 0.002 sleep 1000 --rounds 2 --redirect
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core  # noqa: E402


def paced(pause: float, mode: str) -> Callable[[Any, Any, list[list[tuple[bytes, Any]]]], Callable[[int], Awaitable[float]]]:
    def rounds_of(core: Any, cap: Any, flows: list[list[tuple[bytes, Any]]]) -> Callable[[int], Awaitable[float]]:
        async def one_round(_round: int) -> float:
            core.txs.clear()
            cap.sent.clear()
            receive = core.receive
            busy = 0.0
            for (first, source), *rest in flows:
                t0 = time.thread_time()
                receive(first, source, "udp", None)
                for task in list(core._tasks):
                    await task
                for data, src in rest:
                    receive(data, src, "udp", None)
                busy += time.thread_time() - t0
                if len(cap.sent) > 6000:
                    cap.sent.clear()
                if pause > 0 and mode == "spin":
                    end = time.perf_counter() + pause
                    while time.perf_counter() < end:
                        pass
                elif pause > 0:
                    time.sleep(pause)
            return busy
        return one_round
    return rounds_of


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[2] not in ("sleep", "spin"):
        sys.exit(__doc__)
    pause, mode = float(sys.argv[1]), sys.argv[2]
    sys.argv = [sys.argv[0], *sys.argv[3:]]
    setattr(bench_core, "rounds_of", paced(pause, mode))  # noqa: B010 (mypy: another signature)
    print(f"pause after every call: {pause * 1e3:g} ms ({mode})")
    bench_core.main()


if __name__ == "__main__":
    main()
