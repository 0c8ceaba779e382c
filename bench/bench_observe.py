"""The observability share of a call, in process: what ``DecisionSink.on_outcome`` costs
(the call record, its queueing, the per-call metrics, the decision line).

The outcomes of CALLS verifying-relay INVITEs (bench_core.py's ``--identity`` traffic) are
captured from a real worker as ``serve`` builds it (decision lines at their default, to a
file), then the sink is replayed over them: seven timed passes, each with ``Metrics.export``
every 250 calls (a worker's half-second tick at 500 calls/s) and the pending decision lines
written at its end; the median and range of CPU per call are printed.

    .venv/bin/python bench/bench_observe.py [CALLS] [--part full|log|line] [--mp]

``--part log``: ``log_decision`` alone; ``line``: ``decision_line`` alone. ``--mp``:
prometheus_client's multiprocess values (each a lock and an mmap write), as with
``workers`` > 1. Runs on trees before session 11 too (the sink then takes the Metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


async def run(calls: int, part: str) -> None:
    import bench_core

    from sipguard.observe import logs
    from sipguard.observe.decisions import DecisionSink
    from sipguard.records.record import CallRecord

    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "sut.log", "w") as log_file:
        port = bench_core.free_port()
        signed = bench_core.IdentityCalls(tmp)
        cfg = {"listen": [f"udp://127.0.0.1:{port}"], "mode": "proxy", "next_hop": "sip:127.0.0.1:5070",
               "unknown_source": "reject",
               "trunks": [{"id": "bench", "role": "foreign", "sources": ["127.0.0.1/32"],
                           "provider": {"name": "Bench Carrier", "frn": "0012345678", "rmd": "RMD0001234",
                                        "country": "GB"}}],
               "store": "memory", "traceback": {"path": f"{tmp}/traceback.db"},
               "proxy": {"record_route": True}, "log": {"decisions": "info"}, "shaken": signed.shaken()}
        worker = await bench_core.started_worker(Path(tmp), cfg, log_file)
        core, metrics = worker.core, worker.metrics
        assert core is not None and worker.pipeline is not None
        core.sender = bench_core.Capture(worker.transports)
        worker.pipeline.verifier.creds.fetcher = signed.fetcher
        worker.pipeline.verifier.tokens = None
        got: list[tuple[object, int | None, str | None, float]] = []
        core.on_outcome = lambda *args: got.append(args)
        for n in range(calls):
            core.receive(bench_core.invite(n, port, *signed.call(n)), bench_core.UAC, "udp", None)
            await asyncio.gather(*core._tasks)
        assert len(got) == calls
        sink = DecisionSink(worker.records, getattr(metrics, "decisions", metrics), worker.instance)
        records = [CallRecord.of(o, s, h, worker.instance) for o, s, h, _ in got]  # type: ignore[arg-type]
        handler = logs.installed() if hasattr(logs, "installed") else logs._ours  # type: ignore[attr-defined]
        assert handler is not None

        def one_pass() -> float:
            t0 = time.process_time()
            if part == "full":
                on = sink.on_outcome
                for i, (outcome, status, hop, latency) in enumerate(got):
                    on(outcome, status, hop, latency)  # type: ignore[arg-type]
                    if i % 250 == 249:
                        metrics.export()
            elif part == "log":
                for record in records:
                    logs.log_decision(record)
            else:
                for record in records:
                    logs.decision_line(record, time.time(), 20)
            handler.write_pending()
            metrics.export()
            return time.process_time() - t0

        one_pass()
        gc.collect()
        times = [one_pass() * 1e6 / calls for _ in range(7)]
        print(f"{part}{' (multiprocess values)' if os.environ.get('PROMETHEUS_MULTIPROC_DIR') else ''}: "
              f"median {statistics.median(times):.2f} us per call (range {min(times):.2f}-{max(times):.2f})")
        await worker.records.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("calls", nargs="?", type=int, default=2000)
    ap.add_argument("--part", choices=("full", "log", "line"), default="full")
    ap.add_argument("--mp", action="store_true", help="multiprocess metric values, as with several workers")
    args = ap.parse_args()
    if args.mp:
        from sipguard.observe.metrics import prepare_multiprocess

        prepare_multiprocess(tempfile.mkdtemp(prefix="sipguard-bench-observe-"))
    asyncio.run(run(args.calls, args.part))


if __name__ == "__main__":
    main()
