"""What a burst leaves in a worker's memory, in process: pymalloc arenas, RSS, survivors.

A real ``Worker`` (pipeline, SQLite records, metrics, as ``serve`` builds them) is fed the
sipp call flow (INVITE, 200, ACK, BYE, 200 per call, bench_core.py's datagrams) for CALLS
calls, with the housekeeping steps of the serve loop (collector pacing, expiry, MemoryTrim,
gauges) between batches, on a manual clock; then the clock moves one transaction lifetime
on, housekeeping runs, and the worker's memory is read:

- VmRSS (/proc/self/status);
- pymalloc arenas in use (``sys._debugmallocstats()``, read from a redirected stderr);
- with ``--trace``, the blocks allocated during the burst that are still alive, grouped by
  traceback (tracemalloc started at the burst): what pins the burst's arenas;
- with ``--trace-peak``, the same at the peak (pure Python: compiled frames are not seen);
- with ``--split``, what the transaction table holds at the peak (jemalloc's live bytes before
  and after it is emptied, per transaction), the records waiting and the number cache's size;
  then it stops. ``--settle-records`` waits for the record writer's backlog before the peak
  reading (in process the calls come faster than it writes, on a manual clock).

    PYTHONPATH=. .venv/bin/python bench/bench_rss_burst.py [CALLS] [--trace] [--numbers N] [--wait S]

Run it under another allocator by its environment, e.g. ``PYTHONMALLOC=malloc
LD_PRELOAD=libjemalloc.so.2`` (what ``proxy.allocator: auto`` gives ``serve``). On jemalloc
each reading adds its counters (allocated: live blocks; active: the pages holding them, so
active - allocated is what partly used pages waste; resident), SQLite's own heap and
/proc/self/smaps_rollup; ``RSS_JE_STATS=1`` prints jemalloc's full statistics (per size
class: slabs, how full) at the end, with ``--compact``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import tracemalloc
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_core import SDP, UAC, UAS, Capture, uac_in_dialog, uas_200, uas_bye_200  # noqa: E402
from bench_proxy_lib import free_port  # noqa: E402

from sipguard.config import load_config  # noqa: E402
from sipguard.proxy.gcpacing import tune_gc  # noqa: E402
from sipguard.proxy.worker import Worker  # noqa: E402
from sipguard.records.sqlite import memory_used  # noqa: E402

LIFETIME = 32.0


class Clock:
    """A manual monotonic clock with the wall clock beside it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        import time

        return time.time()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def memory() -> str:
    """Where the RSS is: jemalloc's counters (allocated = live blocks, resident = its pages
    mapped in), SQLite's own heap (sqlite3_memory_used), and the process's anonymous and file
    pages (/proc/self/smaps_rollup)."""
    from sipguard.proxy import allocator

    parts = []
    je = allocator.stats()
    if je:
        parts.append("jemalloc " + " ".join(f"{k} {v / 2**20:.1f}" for k, v in je.items()))
    used = memory_used()
    if used is not None:
        parts.append(f"sqlite {used / 2**20:.1f}")
    rollup = Path("/proc/self/smaps_rollup").read_text()
    for key in ("Anonymous", "Private_Clean", "Shared_Clean"):
        m = re.search(rf"^{key}:\s+(\d+) kB", rollup, re.M)
        if m:
            parts.append(f"{key} {int(m.group(1)) / 1024:.1f}")
    return "; ".join(parts) + " (MB)"




def arenas() -> tuple[int, int]:
    """(arenas in use now, arenas allocated in total) from pymalloc's own statistics; -1 when
    pymalloc is not the allocator (PYTHONMALLOC=malloc)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    now = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    total = re.search(r"# arenas allocated total\s*=\s*([\d,]+)", text)
    return (int(now.group(1).replace(",", "")) if now else -1, int(total.group(1).replace(",", "")) if total else -1)


def received(addr: tuple[str, int]) -> tuple[str, int]:
    """The source address as a socket gives it: a new tuple, host string and port each datagram."""
    return (addr[0].encode().decode(), int(str(addr[1])))


def invite(n: int, port: int, numbers: int) -> bytes:
    src = f"+1{201 + n % 700:03d}555{n % numbers % 10000:04d}"
    dst = f"+1{301 + (n * 7) % 600:03d}555{(n * 13) % numbers % 10000:04d}"
    return (f"INVITE sip:{dst}@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-1-0\r\n"
            f"From: <sip:{src}@127.0.0.1:5061;user=phone>;tag=77SIPpTag00{n}\r\n"
            f"To: <sip:{dst}@127.0.0.1:{port};user=phone>\r\n"
            f"Call-ID: {n}-77@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{src}@127.0.0.1:5061>\r\nMax-Forwards: 70\r\n"
            f"Subject: shaken anchor\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(SDP)}\r\n\r\n").encode() + SDP


def show_trace(when: str, calls: int, stop: bool = True) -> None:
    """The blocks allocated during the burst and alive now, by traceback."""
    snap = tracemalloc.take_snapshot()
    if stop:
        tracemalloc.stop()
    stats = snap.statistics("traceback")
    blocks, size = sum(s.count for s in stats), sum(s.size for s in stats)
    print(f"blocks allocated during the burst still alive {when}: {blocks} ({size / 1024:.0f} KB, "
          f"{size / max(calls, 1):.0f} B a call)")
    for stat in stats[:25]:
        frames = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in stat.traceback[-6:]]
        print(f"  {stat.count:6d} blocks {stat.size / 1024:8.1f} KB {stat.size / max(calls, 1):6.0f} B/call  "
              f"{' < '.join(reversed(frames))}")


async def split_peak(worker: Worker, calls: int) -> None:
    """What the transaction table holds at the peak: jemalloc's live bytes before and after it
    is emptied (its objects, keys and hash tables), per call; beside it what else grows with
    the calls (records waiting for the writer, the number parse cache)."""
    import gc

    from sipguard import numbers
    from sipguard.proxy import allocator

    core = worker.core
    assert core is not None
    gc.collect()
    txs = core.txs
    print(f"split: table sizes: invites {len(txs.invites)}, accepted {len(getattr(txs, 'accepted', {}))}, "
          f"clients {len(txs.clients)}, timer heap {len(txs._timers)}, peers {len(txs._peers)}")
    before = allocator.stats().get("allocated", 0)
    live = len(core.txs)
    core.txs.clear()
    gc.collect()
    after = allocator.stats().get("allocated", 0)
    print(f"split: the transaction table ({live} transactions) held {(before - after) / 2**20:.2f} MB, "
          f"{(before - after) / max(live, 1):.0f} B a transaction; records waiting {worker.records.pending}, "
          f"number cache entries {numbers.cache_info()[2]}")
    waiting = worker.records.pending
    if waiting:   # what a record waiting for the writer holds: written, its bytes are free
        while worker.records.pending:
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        gc.collect()
        written = allocator.stats().get("allocated", 0)
        print(f"split: {waiting} records waiting held {(after - written) / 2**20:.2f} MB, "
              f"{(after - written) / waiting:.0f} B a record")


async def run(calls: int, trace: bool, numbers: int, tick_every: int, wait: float, compact: bool,
              trace_peak: bool = False, split: bool = False, settle_records: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = {"listen": [f"udp://127.0.0.1:{port}"], "mode": "proxy", "next_hop": f"sip:{UAS[0]}:{UAS[1]}",
               "unknown_source": "reject",
               "trunks": [{"id": "bench", "role": "foreign", "sources": ["127.0.0.1/32"],
                           "provider": {"name": "Bench Carrier", "frn": "0012345678", "rmd": "RMD0001234",
                                        "country": "GB"}}],
               "store": "memory", "traceback": {"store": "sqlite", "path": f"{tmp}/traceback.db"},
               "log": {"level": "warning", "decisions": "off"},
               "proxy": {"transaction_timeout": LIFETIME}}
        path = Path(tmp) / "sg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        worker = Worker(load_config(str(path)))
        await worker.start()
        tune_gc()
        core = worker.core
        assert core is not None and worker.transports is not None and worker.pipeline is not None
        clock = Clock()
        core.clock = clock
        core.txs.expire(clock.now)
        cap = Capture(worker.transports)
        core.sender = cap

        async def housekeeping() -> None:
            assert core is not None and worker.pipeline is not None
            worker.gc.tick()
            core.rotate()
            worker.trim.tick(len(core.txs))
            worker.metrics.export(core=core, transports=worker.transports, guard=worker.guard,
                                  steering=worker.steering, pipeline=worker.pipeline, records=worker.records)
            await asyncio.sleep(0.001)

        async def call(n: int) -> None:
            inv = invite(n, port, numbers)
            cap.sent.clear()
            core.receive(inv, received(UAC), "udp", None)
            for task in list(core._tasks):
                await task
            fwd = next((d for d, a in cap.sent if a == UAS and d.startswith(b"INVITE")), None)
            if fwd is None:
                return
            ok = uas_200(fwd, n)
            core.receive(ok, UAS, "udp", None)
            core.receive(uac_in_dialog("ACK", 1, ok, n, port), received(UAC), "udp", None)
            cap.sent.clear()
            core.receive(uac_in_dialog("BYE", 2, ok, n, port), received(UAC), "udp", None)
            fbye = cap.sent[-1][0]
            core.receive(uas_bye_200(fbye), UAS, "udp", None)
            cap.sent.clear()

        async def settle(seconds: float, step: float = 0.5) -> None:
            end = clock.now + seconds
            while clock.now < end:
                clock.now += step
                await housekeeping()
            while worker.records.pending:   # the record writer's batches written
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.5)
            await housekeeping()

        for n in range(200):       # warm-up
            await call(10_000_000 + n)
        await settle(LIFETIME + 2)
        idle = (rss_mb(), arenas())
        print(f"idle:  RSS {idle[0]:.1f} MB, arenas {idle[1][0]} (total made {idle[1][1]}), "
              f"transactions {len(core.txs)}")
        print(f"       {memory()}")
        if trace or trace_peak:
            tracemalloc.start(8)
        for n in range(calls):
            await call(n)
            if n % tick_every == tick_every - 1:
                clock.now += 0.5
                await housekeeping()
        if settle_records:   # the peak without the writer's backlog (in process it writes in real time)
            while worker.records.pending:
                await asyncio.sleep(0.2)
        peak = (rss_mb(), arenas(), len(core.txs))
        print(f"peak:  RSS {peak[0]:.1f} MB, arenas {peak[1][0]}, transactions {peak[2]}")
        print(f"       {memory()}")
        if trace_peak:
            show_trace("at the peak", calls, stop=not trace)
        if split:
            await split_peak(worker, calls)
            clock.now += 5.0   # past the drain's linger
            await worker.stop()
            return
        await settle(LIFETIME)
        await asyncio.sleep(wait)   # real time: allocators that give pages back on a delay
        after = (rss_mb(), arenas(), len(core.txs))
        print(f"+{LIFETIME:.0f} s: RSS {after[0]:.1f} MB, arenas {after[1][0]}, transactions {after[2]}, "
              f"trims {worker.trim.trims}")
        print(f"       {memory()}")
        if compact:   # what a full collection (frozen cyclic garbage too) and a release give back
            import gc

            from sipguard.proxy import allocator

            allocator.release()
            print(f"released again: RSS {rss_mb():.1f} MB, arenas {arenas()[0]}")
            import time

            started = time.perf_counter()
            found = gc.collect()   # frozen objects stay frozen (not walked); the free lists are emptied
            took = (time.perf_counter() - started) * 1e3
            print(f"full collection: RSS {rss_mb():.1f} MB, arenas {arenas()[0]} ({found} unreachable objects, "
                  f"{took:.1f} ms)")
            allocator.release()
            print(f"released: RSS {rss_mb():.1f} MB, arenas {arenas()[0]}")
            print(f"       {memory()}")
            if os.environ.get("RSS_JE_STATS"):
                import ctypes
                sys.stdout.flush()
                ctypes.CDLL(None).malloc_stats_print(None, None, b"")
        if trace:
            show_trace("after the burst", calls)
        await worker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("calls", nargs="?", type=int, default=40_000)
    ap.add_argument("--trace", action="store_true", help="tracemalloc: the burst's surviving blocks")
    ap.add_argument("--trace-peak", action="store_true",
                    help="tracemalloc: what the burst's calls hold at its peak, by traceback (pure Python: "
                         "compiled frames are not seen)")
    ap.add_argument("--numbers", type=int, default=10_000, help="distinct numbers per side")
    ap.add_argument("--tick-every", type=int, default=750, help="calls between two housekeeping ticks")
    ap.add_argument("--split", action="store_true",
                    help="at the peak, what the transaction table holds (emptied to measure it; then stop)")
    ap.add_argument("--settle-records", action="store_true",
                    help="before the peak reading, wait until the record writer has no backlog")
    ap.add_argument("--wait", type=float, default=0.0, help="real seconds to wait before the last reading")
    ap.add_argument("--compact", action="store_true", help="then a full collection and a release: what they add")
    args = ap.parse_args()
    asyncio.run(run(args.calls, args.trace, args.numbers, args.tick_every, args.wait, args.compact,
                    args.trace_peak, args.split, args.settle_records))


if __name__ == "__main__":
    main()
