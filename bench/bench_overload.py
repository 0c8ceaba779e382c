"""Overload benchmark: sipguard offered a multiple of the rate it handles cleanly.

Starts, on free loopback ports, a sipp UAS, ``sipguard serve --workers N`` (pass-through: no
Identity, no policy; memory store, or a Redis store on a redis-server of its own) and sipp
UACs whose scenario (bench/scenarios/uac_call_or_503.xml) completes a call on a 200 or on a
503; offers FACTOR x RATE calls/s for DURATION seconds; then keeps watching the workers for
TAIL seconds. Stops everything it started, by PID.

Reports (the targets of the issue "Hold the edge", item 3):
- offered INVITEs, answered 200 / 503 (each call's first final answer), unanswered, and the
  share of offered INVITEs with a final answer (target >= 80 %) and with one before the
  first retransmission (500 ms);
- p50/p99/max of the 503s and of the 200s (sipp rtd 2 and 1, fine clock shim);
- worker RSS: idle (before the burst), peak during it (target <= 2x idle), and at the end of
  the burst + one transaction lifetime (target: back near idle);
- sipguard's own counts (sip_events shed_503, overload_503, overload_episodes) and host UDP
  receive-buffer drops.

Usage (from the repo root):
  .venv/bin/python bench/bench_overload.py --rate 1000 --factor 3 --duration 30
  .venv/bin/python bench/bench_overload.py --rate 1000 --factor 1 --duration 15 --tail 0   # the clean rate
  .venv/bin/python bench/bench_overload.py --rate 1000 --store redis
Options: --workers N (default 2), --uacs K (split the offered load over K sipp UACs),
--tail S (seconds watched after the burst, default: transaction_timeout + 5), --bursts B (B bursts
in a row, each followed by its tail: the RSS of each shows whether memory is reused),
--shed-delay S (proxy.shed_delay), --allocator auto|jemalloc|python (proxy.allocator), --out DIR,
--per-second (503s and 200s per second of the run: where the 503 tail comes from).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_proxy import FINECLOCK_C  # noqa: E402
from bench_proxy_lib import (  # noqa: E402
    descendants,
    free_port,
    percentile,
    read_stat,
    stop_pid,
    udp_rcvbuf_errors,
    wait_answering,
)

SCENARIOS = HERE / "scenarios"
T1_MS = 500.0
TX_LIFETIME = 32.0


@dataclass(slots=True)
class Result:
    store: str
    clean_rate: int
    offered_rate: int
    duration: int
    offered: int = 0
    answered_200: int = 0
    answered_503: int = 0
    answered_pct: float = 0.0
    answered_in_t1_pct: float = 0.0
    p50_503_ms: float = 0.0
    p99_503_ms: float = 0.0
    max_503_ms: float = 0.0
    p90_503_ms: float = 0.0
    over_50_503: int = 0           # 503s that took more than 50 ms (the p99 bound)
    p50_200_ms: float = 0.0
    p99_200_ms: float = 0.0
    retrans: int = 0
    failed: int = 0
    udp_drops: int = 0
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_mb: float = 0.0      # at the end of the burst + one transaction lifetime
    rss_end_mb: float = 0.0        # at the end of the tail
    shed_503: int = 0
    core_503: int = 0
    episodes: int = 0
    store_lookups: int = 0         # store lookups during the run (sipguard_store_requests)
    store_degraded: int = 0        # of those, answered degraded (a timeout, an error, the store down)
    load1: float = 0.0
    worker_cpu_s: float = 0.0     # CPU time of the workers (user + system) from the burst's start to the end
    rss_bursts: list[tuple[float, float, float]] = field(default_factory=list)  # --bursts: peak, +32 s, end
    rss_series: list[tuple[float, float]] = field(default_factory=list)
    # (seconds, records waiting for the writer, summed over the workers), every 2 s
    records_series: list[tuple[float, int]] = field(default_factory=list)

    def row(self) -> str:
        return (f"| {self.store} | {self.clean_rate} x {self.offered_rate / max(1, self.clean_rate):g} = "
                f"{self.offered_rate} | {self.offered} | {self.answered_200} | {self.answered_503} | "
                f"{self.answered_pct:.1f} | {self.answered_in_t1_pct:.1f} | {self.p50_503_ms:.1f} / "
                f"{self.p99_503_ms:.1f} / {self.max_503_ms:.0f} | {self.p50_200_ms:.1f} / {self.p99_200_ms:.1f} | "
                f"{self.retrans} | {self.udp_drops} | {self.rss_idle_mb:.0f} / {self.rss_peak_mb:.0f} / "
                f"{self.rss_after_mb:.0f} / {self.rss_end_mb:.0f} | {self.shed_503} / {self.core_503} / "
                f"{self.episodes} | {self.load1:.2f} |")

    @staticmethod
    def header() -> str:
        return ("| store | offered calls/s | INVITEs offered | 200 | 503 | answered % | answered < 500 ms % "
                "| 503 p50 / p99 / max ms | 200 p50 / p99 ms | UAC retrans | UDP drops | worker RSS MB "
                "idle / peak / +32 s / end (sum of workers) | shed 503 / core 503 / episodes | load1 |\n"
                "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def read_rtds(d: Path, at: dict[str, list[tuple[float, float]]] | None = None) -> dict[str, list[float]]:
    """rtd number -> sorted samples (ms) from the sipp *_rtt.csv files of the UACs; with
    ``at``, also rtd number -> (sipp's time of the sample in ms, sample), in file order."""
    out: dict[str, list[float]] = {}
    for f in sorted(d.glob("*_rtt.csv")):
        if f.name.startswith("warm"):
            continue
        with open(f) as fh:
            for line in fh:
                parts = line.strip().split(";")
                if len(parts) >= 3 and parts[2] in ("1", "2"):
                    try:
                        value = float(parts[1])
                        out.setdefault(parts[2], []).append(value)
                        if at is not None:
                            at.setdefault(parts[2], []).append((float(parts[0]), value))
                    except ValueError:
                        continue
    return {k: sorted(v) for k, v in out.items()}


def metrics_text(http_port: int, timeout: float = 5.0) -> str | None:
    """sipguard's /metrics, None when it does not answer."""
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=timeout).read().decode()
    except OSError:
        return None


def sip_events(http_port: int) -> dict[str, int]:
    """sipguard_sip_events by event, and sipguard_store_requests by result as "store.<result>"."""
    text = metrics_text(http_port)
    if text is None:
        return {}
    events = {m.group(1): int(float(m.group(2)))
              for m in re.finditer(r'^sipguard_sip_events_total\{event="([^"]+)"\} ([0-9.e+]+)$', text, re.M)}
    events.update({"store." + m.group(1): int(float(m.group(2)))
                   for m in re.finditer(r'^sipguard_store_requests_total\{result="([^"]+)"\} ([0-9.e+]+)$',
                                        text, re.M)})
    return events


def records_queue(http_port: int) -> int:
    """sipguard_records_queue (records waiting for the writer), summed over the workers; -1: no answer."""
    text = metrics_text(http_port, 2.0)
    m = None if text is None else re.search(r"^sipguard_records_queue ([0-9.e+]+)$", text, re.M)
    return int(float(m.group(1))) if m else -1


class Run:
    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.procs: list[subprocess.Popen[bytes]] = []
        shim = out / "fineclock.so"
        (out / "fineclock.c").write_text(FINECLOCK_C)
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(out / "fineclock.c"), "-ldl"],
                       check=True)
        self.env = {**os.environ, "LD_PRELOAD": str(shim)}

    def spawn(self, cmd: list[str], log: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=cwd or self.out,
                                env=env or self.env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop_pid(proc)
        self.procs.clear()

    def store(self) -> str:
        if self.args.store == "memory":
            return "memory"
        port = free_port()
        self.spawn([shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--save", "",
                    "--appendonly", "no", "--bind", "127.0.0.1"], self.out / "redis.log", env=dict(os.environ))
        time.sleep(0.5)
        return f"redis://127.0.0.1:{port}/0"

    def run(self) -> Result:
        a = self.args
        port, uas_port, http_port = free_port(), free_port(), free_port()
        store = self.store()
        self.spawn(["sipp", "-sf", str(SCENARIOS / "uas.xml"), "-i", "127.0.0.1", "-p", str(uas_port), "-t", "u1",
                    "-nostdin", "-buff_size", "1048576", "-max_recv_loops", "10000", "-max_sched_loops", "10000"],
                   self.out / "uas.out")
        cfg = {
            "listen": [f"udp://127.0.0.1:{port}"], "mode": "proxy", "next_hop": f"sip:127.0.0.1:{uas_port}",
            "unknown_source": "reject",
            "trunks": [{"id": "bench", "role": "foreign", "sources": ["127.0.0.1/32"],
                        "provider": {"name": "Bench Carrier", "frn": "0012345678", "rmd": "RMD0001234",
                                     "country": "GB"}}],
            "store": store, "traceback": {"store": "sqlite", "path": "traceback.db"},
            "log": {"level": "warning", "decisions": "off"}, "http": {"listen": f"127.0.0.1:{http_port}"},
            "proxy": {"shed_delay": a.shed_delay, "transaction_timeout": TX_LIFETIME, "allocator": a.allocator},
        }
        (self.out / "sipguard.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        sut = self.spawn([sys.executable, "-m", "sipguard", "serve", "-c", str(self.out / "sipguard.yaml"),
                          "--workers", str(a.workers)], self.out / "sut.log",
                         env={**os.environ, "PYTHONPATH": str(REPO)})
        if not wait_answering(port, sut, 30.0):
            raise SystemExit(f"sipguard did not start: {(self.out / 'sut.log').read_text()[-800:]}")
        workers = descendants(sut.pid)[1:] or [sut.pid]
        rate = a.rate * a.factor
        calls = int(rate * a.duration)
        csv = self.out / "numbers.csv"
        csv.write_text("SEQUENTIAL\n" + "".join(f"1{201 + i % 700:03d}555{i % 10000:04d};"
                                                f"1{301 + (i * 7) % 600:03d}555{(i * 13) % 10000:04d}\n"
                                                for i in range(5000)))
        # warm-up: a few calls through every worker, then the idle figure
        (self.out / "warm").mkdir(exist_ok=True)   # sipp names its rtt files by scenario and pid: apart
        warm = [self.spawn(self.uac(port, csv, 20, 20, f"warm{i}"), self.out / "warm" / f"warm{i}.out",
                           cwd=self.out / "warm") for i in range(a.workers)]
        for w in warm:
            w.wait(60)
        time.sleep(2.0)
        result = Result(a.store, a.rate, int(rate), a.duration, load1=os.getloadavg()[0])
        result.rss_idle_mb = rss_mb(workers)
        before = sip_events(http_port)
        drops0, start, cpu0 = udp_rcvbuf_errors(), time.monotonic(), cpu_seconds(workers)
        per = [calls // a.uacs + (1 if i < calls % a.uacs else 0) for i in range(a.uacs)]
        for burst in range(a.bursts):   # each burst: its own UACs (stat files), then the tail
            t0 = time.monotonic()
            uacs = [self.spawn(self.uac(port, csv, rate / a.uacs, n, f"uac{i}" + (f"b{burst}" if burst else "")),
                               self.out / f"uac{i}b{burst}.out") for i, n in enumerate(per)]
            end_burst, deadline = t0 + a.duration, t0 + a.duration + a.tail
            after_at, peak, after = end_burst + TX_LIFETIME, 0.0, 0.0
            while time.monotonic() < deadline or any(u.poll() is None for u in uacs):
                now = time.monotonic()
                rss = rss_mb(workers)
                result.rss_series.append((round(now - start, 1), round(rss, 1)))
                if len(result.rss_series) % 4 == 1:
                    result.records_series.append((round(now - start, 1), records_queue(http_port)))
                if now <= end_burst + 1.0:
                    peak = max(peak, rss)
                if not after and now >= after_at:
                    after = rss
                if now > deadline + 60:
                    break
                time.sleep(0.5)
            for u in uacs:
                if u.poll() is None:
                    stop_pid(u)
            result.rss_bursts.append((peak, after, rss_mb(workers)))
        result.rss_peak_mb = max(p for p, _, _ in result.rss_bursts)
        result.rss_after_mb, result.rss_end_mb = result.rss_bursts[0][1], result.rss_bursts[-1][2]
        result.udp_drops = udp_rcvbuf_errors() - drops0
        result.worker_cpu_s = cpu_seconds(workers) - cpu0
        events = sip_events(http_port)
        result.shed_503 = events.get("shed_503", 0) - before.get("shed_503", 0)
        result.core_503 = events.get("overload_503", 0) - before.get("overload_503", 0)
        result.episodes = events.get("overload_episodes", 0) - before.get("overload_episodes", 0)
        result.store_lookups = events.get("store.lookup", 0) - before.get("store.lookup", 0)
        result.store_degraded = events.get("store.degraded", 0) - before.get("store.degraded", 0)
        stats = [read_stat(self.out / (f"uac{i}" + (f"b{b}" if b else "") + "_stat.csv"))
                 for i in range(a.uacs) for b in range(a.bursts)]
        result.retrans = sum(s["retrans"] for s in stats)
        result.failed = sum(s["failed"] for s in stats)
        result.offered = sum(per) * a.bursts
        self.samples: dict[str, list[tuple[float, float]]] = {}
        rtds = read_rtds(self.out, self.samples)
        ok, shed = rtds.get("1", []), rtds.get("2", [])
        result.answered_200, result.answered_503 = len(ok), len(shed)
        answered = len(ok) + len(shed)
        result.answered_pct = 100.0 * answered / max(1, result.offered)
        result.answered_in_t1_pct = 100.0 * (sum(1 for v in ok if v < T1_MS) + sum(1 for v in shed if v < T1_MS)) \
            / max(1, result.offered)
        result.p50_503_ms, result.p99_503_ms = percentile(shed, 50), percentile(shed, 99)
        result.max_503_ms = max(shed, default=0.0)
        result.p90_503_ms, result.over_50_503 = percentile(shed, 90), sum(1 for v in shed if v > 50.0)
        result.p50_200_ms, result.p99_200_ms = percentile(ok, 50), percentile(ok, 99)
        return result

    def uac(self, port: int, csv: Path, rate: float, calls: int, name: str) -> list[str]:
        return ["sipp", f"127.0.0.1:{port}", "-sf", str(SCENARIOS / "uac_call_or_503.xml"), "-inf", str(csv),
                "-i", "127.0.0.1", "-p", str(free_port()), "-t", "u1", "-r", f"{rate:g}", "-rp", "1000",
                "-m", str(calls), "-l", str(max(2000, int(rate * 10))), "-recv_timeout", "5000",
                "-timeout", f"{self.args.duration + 40}s", "-buff_size", "4194304",
                "-max_recv_loops", "10000", "-max_sched_loops", "10000", "-nostdin",
                "-trace_stat", "-stf", f"{name}_stat.csv", "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
                "-trace_err", "-error_file", f"{name}_err.log"]


def per_second(samples: dict[str, list[tuple[float, float]]]) -> str:
    """A table per second from the first answer: is the 503 tail the start of the burst (the
    first detection) or all along it (shedding starting and stopping)?"""
    start = min((t for rows in samples.values() for t, _ in rows), default=0.0)
    seconds: dict[int, tuple[list[float], list[float]]] = {}
    for rtd, rows in samples.items():
        for t, value in rows:
            seconds.setdefault(int((t - start) / 1000), ([], []))[0 if rtd == "2" else 1].append(value)
    lines = ["| s | 503 | 503 p50 / p99 ms | 503 > 50 ms | 200 |", "|--:|--:|--:|--:|--:|"]
    for second in sorted(seconds):
        shed, ok = seconds[second]
        shed.sort()
        lines.append(f"| {second} | {len(shed)} | {percentile(shed, 50):.1f} / {percentile(shed, 99):.1f} | "
                     f"{sum(1 for v in shed if v > 50.0)} | {len(ok)} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rate", type=int, required=True, help="the rate sipguard handles cleanly (calls/s)")
    p.add_argument("--factor", type=float, default=3.0, help="offered = factor x rate")
    p.add_argument("--duration", type=int, default=30)
    p.add_argument("--tail", type=float, default=TX_LIFETIME + 5, help="seconds watched after the burst")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--uacs", type=int, default=2)
    p.add_argument("--store", choices=("memory", "redis"), default="memory")
    p.add_argument("--bursts", type=int, default=1,
                   help="bursts in a row (each with its tail): is the memory of one reused by the next?")
    p.add_argument("--shed-delay", type=float, default=0.02)
    p.add_argument("--allocator", choices=("auto", "jemalloc", "python"), default="auto",
                   help="proxy.allocator of the workers (python: pymalloc, the default before jemalloc)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--per-second", action="store_true",
                   help="per second of the run: 503s (count, p50, p99, over 50 ms) and 200s: where the tail is")
    args = p.parse_args()
    for tool in ("sipp", "gcc") + (("redis-server",) if args.store == "redis" else ()):
        if shutil.which(tool) is None:
            p.error(f"{tool} is not installed")
    out = (args.out or Path("/tmp/sipguard-bench") / time.strftime("overload-%Y%m%dT%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Run(args, out)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        print(f"# bench_overload {time.strftime('%Y-%m-%d %H:%M:%S %Z')} nproc={os.cpu_count()} "
              f"load={os.getloadavg()[0]:.2f} out={out}")
        result = run.run()
        print(Result.header())
        print(result.row())
        print(f"# worker CPU {result.worker_cpu_s:.1f} s, {1e6 * result.worker_cpu_s / max(1, result.answered_200):.0f} us "
              f"per call completed (503s included in the CPU), load1 at the end {os.getloadavg()[0]:.2f}")
        print(f"# 503 p90 {result.p90_503_ms:.1f} ms, {result.over_50_503} of {result.answered_503} over 50 ms")
        print(f"# store lookups {result.store_lookups}, answered degraded {result.store_degraded} "
              f"({100.0 * result.store_degraded / max(1, result.store_lookups):.1f} %)")
        if args.per_second:
            print(per_second(run.samples))
        if args.bursts > 1:
            print("# worker RSS MB per burst (peak, +32 s, end of tail): "
                  + "; ".join(f"{p:.0f}, {a:.0f}, {e:.0f}" for p, a, e in result.rss_bursts))
        (out / "result.json").write_text(json.dumps(asdict(result)) + "\n")
        return 0 if math.isfinite(result.answered_pct) else 1
    except KeyboardInterrupt:
        return 130
    finally:
        run.stop_all()


if __name__ == "__main__":
    sys.exit(main())
