"""Helpers of bench/bench_proxy.py: process control by PID, CPU accounting, sipp output parsing.

Kept apart so the runner reads as the list of steps it performs.
"""

from __future__ import annotations

import glob
import math
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# a step is "clean" as the Kamailio anchor defined it; the issue-2 target is stricter on p99
CLEAN_FAILED_PCT, CLEAN_P99_MS, TARGET_P99_MS, MIN_ACHIEVED = 0.1, 50.0, 10.0, 0.95


@dataclass(slots=True)
class Step:
    system: str
    rate: int
    routing: str = "rr"        # rr: both systems record-route; plain: neither does
    achieved: float = 0.0
    ok: int = 0
    failed: int = 0
    failed_pct: float = 100.0
    retrans: int = 0
    rcvbuf_drops: int = 0      # host UDP receive-buffer drops during the step (any socket)
    p50: float = 0.0
    p99: float = 0.0
    max_ms: float = 0.0
    samples: int = 0
    sut_cpu_pct: float = 0.0
    sut_us_per_call: float = 0.0
    busiest_pct: float = 0.0   # the busiest single process of the system under test
    host_cpu_pct: float = 0.0  # /proc/stat, tick-sampled: overstates at low load on this VM; jsonl only
    load1: float = 0.0
    foreign_pct: float = 0.0   # other processes' CPU (% of one core) just before the step
    sign_s: float = 0.0
    alive: bool = True
    verstat: str = ""     # sipguard: INVITE decisions by verstat, from its /metrics
    error: str = ""

    def clean(self) -> bool:
        return (not self.error and self.failed_pct < CLEAN_FAILED_PCT and self.p99 <= CLEAN_P99_MS
                and self.achieved >= MIN_ACHIEVED * self.rate)

    def target(self) -> bool:
        return self.clean() and self.p99 < TARGET_P99_MS

    def collapsed(self) -> bool:
        return bool(self.error) or not self.alive or self.failed_pct > 1.0 or self.achieved < 0.8 * self.rate

    @staticmethod
    def header() -> str:
        return ("| system | offered | achieved | failed (%) | retrans | UDP drops | p50 ms | p99 ms | max ms | SUT CPU % of 1 core "
                "(busiest process) | SUT us/call | others before % | load1 | clean | target | sipguard verstat counts |\n"
                "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|:-:|---|")

    def row(self) -> str:
        name = self.system if self.routing == "rr" or "redirect" in self.system else f"{self.system} (no RR)"
        if self.error:
            return f"| {name} | {self.rate} | ERROR: {self.error.splitlines()[0][:120]} |"
        yes = {True: "yes", False: "**no**"}
        return (f"| {name} | {self.rate} | {self.achieved:.0f} | {self.failed} ({self.failed_pct:.3f}) "
                f"| {self.retrans} | {self.rcvbuf_drops} | {self.p50:.2f} | {self.p99:.1f} | {self.max_ms:.0f} | {self.sut_cpu_pct:.0f} ({self.busiest_pct:.0f}) "
                f"| {self.sut_us_per_call:.0f} | {self.foreign_pct:.0f} | {self.load1:.2f} "
                f"| {yes[self.clean()]} | {yes[self.target()]} | {self.verstat} |")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean(), "target": self.target()}


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (race-tolerant enough for a benchmark)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports, each as ``free_port`` finds it (nothing holds them meanwhile: two
    calls can give the same one)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def stop_pid(proc: subprocess.Popen[bytes]) -> None:
    """TERM, then KILL, the one process we started (sipp: USR1 first, its graceful quit)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGUSR1, 1.0), (signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0)):
        if sig == signal.SIGUSR1 and "sipp" not in str(proc.args[0] if isinstance(proc.args, list) else proc.args):
            continue
        try:
            proc.send_signal(sig)
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def wait_answering(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once something answers an OPTIONS on udp 127.0.0.1:port (any status will do)."""
    end = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.3)
        me = s.getsockname()[1]
        n = 0
        while time.monotonic() < end:
            if proc.poll() is not None:
                return False
            n += 1
            msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKw{n}x{me}\r\n"
                   f"From: <sip:probe@127.0.0.1>;tag=w{n}\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: warm{n}-{me}\r\n"
                   "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), ("127.0.0.1", port))
            try:
                if s.recv(65535).startswith(b"SIP/2.0 "):
                    time.sleep(0.3)  # let the other workers/children finish binding
                    return True
            except OSError:
                time.sleep(0.1)
    return False


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/*/stat parent links)."""
    children: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ns(pids: list[int]) -> int:
    """On-CPU nanoseconds of all threads of these processes (schedstat: exact, not tick-sampled)."""
    total = 0
    for pid in pids:
        for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            try:
                total += int(Path(f).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def threads(pid: int) -> dict[str, tuple[int, int, int]]:
    """Each thread of a process by "tid name": on-CPU ns, voluntary and involuntary switches."""
    out: dict[str, tuple[int, int, int]] = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            name = Path(task, "comm").read_text().strip()
            ns = int(Path(task, "schedstat").read_text().split()[0])
            vol = invol = 0
            for line in Path(task, "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    vol = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[f"{task.rsplit('/', 1)[1]} {name}"] = (ns, vol, invol)
    return out


def switches(pid: int) -> tuple[int, int]:
    """Voluntary (it waited: a wake-up each) and involuntary (preempted) context switches of
    all threads of a process."""
    vol = invol = 0
    for f in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            for line in Path(f).read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return vol, invol


def host_busy_ns() -> int:
    """Busy CPU time of the whole machine from /proc/stat (tick-sampled: approximate)."""
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    ticks = os.sysconf("SC_CLK_TCK")
    return int((sum(parts[:8]) - idle) * 1e9 / ticks)


def udp_rcvbuf_errors() -> int:
    """Host-wide UDP datagrams dropped because a socket's receive buffer was full."""
    with open("/proc/net/snmp") as fh:
        rows = [ln.split() for ln in fh if ln.startswith("Udp:")]
    return int(dict(zip(rows[0], rows[1], strict=True)).get("RcvbufErrors", 0))


def wait_quiet(max_pct: float, timeout: float) -> float:
    """Wait (at most timeout s) until other processes use < max_pct % of one core over 2 s.

    Called between steps, when nothing of ours runs, so all busy time is someone else's.
    Returns the last measured figure (% of one core)."""
    end = time.monotonic() + timeout
    while True:
        b0, t0 = host_busy_ns(), time.monotonic()
        time.sleep(2.0)
        pct = 100.0 * (host_busy_ns() - b0) / 1e9 / (time.monotonic() - t0)
        if pct < max_pct or time.monotonic() >= end:
            return pct


def _elapsed(text: str) -> float:
    """sipp's ElapsedTime 'HH:MM:SS:uuuuuu' (or with a '.' before the fraction) in seconds."""
    nums = text.replace(".", ":").split(":")
    try:
        h, m, s = int(nums[0]), int(nums[1]), int(nums[2])
        frac = nums[3] if len(nums) > 3 else "0"
        return h * 3600 + m * 60 + s + int(frac) / 10 ** len(frac)
    except (ValueError, IndexError):
        return 0.0


def read_stat(path: Path) -> dict[str, Any]:
    """Cumulative counters from the last line of a sipp -trace_stat file."""
    empty = {"ok": 0, "failed": 0, "retrans": 0, "elapsed": 0.0}
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except OSError:
        return empty
    if len(lines) < 2:
        return empty
    head, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(head, last, strict=False))

    def num(key: str) -> int:
        try:
            return int(row.get(key, "0") or 0)
        except ValueError:
            return 0
    return {"ok": num("SuccessfulCall(C)"), "failed": num("FailedCall(C)"), "retrans": num("Retransmissions(C)"),
            "elapsed": _elapsed(row.get("ElapsedTime(C)", ""))}


def read_rtts(d: Path) -> tuple[list[float], float]:
    """Every rtd-1 sample (ms, sorted) from the sipp *_rtt.csv files in d, and the seconds
    between the first and the last of them (over all UACs)."""
    out: list[float] = []
    first, last = float("inf"), 0.0
    for f in sorted(d.glob("*_rtt.csv")):
        if f.name.startswith("warm"):
            continue
        with open(f) as fh:
            for line in fh:
                parts = line.strip().split(";")
                if len(parts) >= 3 and parts[2] == "1":
                    try:
                        at, rtt = float(parts[0]), float(parts[1])
                    except ValueError:
                        continue
                    out.append(rtt)
                    first, last = min(first, at), max(last, at)
    return sorted(out), max(0.0, (last - first) / 1000.0)


def metrics_verstat(port: int, keep: Path | None = None, settle: float = 3.0) -> dict[str, int]:
    """sipguard_invites_total summed by verstat label, from sipguard's /metrics (empty if none);
    the whole text is kept in ``keep`` when given. Each worker folds its per-call counts into
    the shared values every housekeeping tick (0.5 s; README, Observability): read again until
    two reads 0.6 s apart agree, at most ``settle`` seconds."""
    import re
    import time
    import urllib.request

    def read() -> tuple[str, dict[str, int]] | None:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            return None
        out: dict[str, int] = {}
        for m in re.finditer(r'^sipguard_invites_total\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            key = labels.get("verstat") or "none"
            out[key] = out.get(key, 0) + int(float(m.group(2)))
        return text, out

    last = read()
    deadline = time.monotonic() + settle
    while last is not None and time.monotonic() < deadline:
        time.sleep(0.6)
        now = read()
        if now is None or now[1] == last[1]:
            break
        last = now
    if last is None:
        return {}
    if keep is not None:
        keep.write_text(last[0])
    return last[1]


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(pct / 100.0 * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]
