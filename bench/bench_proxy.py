"""Proxy load benchmark: sipguard against the Kamailio yardstick, same traffic, same run.

For every system and every offered rate this starts, on free loopback ports, a fresh sipp UAS
(relay systems), the system under test and one or more sipp UACs; offers RATE calls/s for
DURATION seconds; then stops everything it started, by PID. Per step it reports achieved calls/s,
failed calls, INVITE -> final response p50/p99 (every call's sipp "rtd 1", with a clock shim
so sipp's 4 ms coarse clock does not quantise them) and CPU of the system under test.

Both relay the same work: with --routing rr (the default) Kamailio runs record_route() and
sipguard runs with proxy.record_route: true, so each relays the whole call (INVITE, 100, 200, ACK,
BYE, 200) and adds its Record-Route; with --routing plain neither record-routes (ACK and BYE still
come to the proxy, as sipp sends everything to its remote address, and are relayed by their
Request-URI); --routing "rr plain" runs both. sipguard runs as shipped: decision log lines at their
default (log.decisions: info, to the step's sut.log) and traceback records on (SQLite).

Systems (--systems, default all):
  kam-relay            Kamailio 5.6 stateful relay (bench/kamailio-relay.cfg), no verification
  kam-verify           the same + secsipid_check_identity on every INVITE
  kam-redirect-verify  Kamailio + secsipid answering 302 itself
  sg-proxy             sipguard --workers N pass-through (no Identity, memory store, no policy)
  sg-verify            sipguard --workers N verifying a fresh, valid Identity on every INVITE
  sg-redirect-verify   sipguard redirect mode (302) verifying every INVITE
  floor-verify         the floor (bench/bench_floor.py): the least a Python process on uvloop does to
                       verify and relay a call statelessly, N processes sharing one socket
  floor-redirect-verify  the same, answering 302

Tokens are signed with sipguard's Signer right before each step (iat = now) from a PKI built
by tests/shaken_pki.py; the x5u is served by a loopback HTTP server in this process and every
worker's certificate cache is warmed by a short warm-up run before the timed step.

Usage (from the repo root):
  .venv/bin/python bench/bench_proxy.py --rates "500 1000 2000 3000 4000" --duration 15
  .venv/bin/python bench/bench_proxy.py --systems "sg-proxy" --rates 2000 --profile
  .venv/bin/python bench/bench_proxy.py --rates "1000 1000 1000" --duration 10 --fixed-rate 1000
Steps run rate by rate, every system at one rate before the next rate, so a system and its
Kamailio counterpart run back to back; a rate given twice runs twice. After the steps a summary
pairs each sipguard system with its Kamailio counterpart (sg-proxy / kam-relay, sg-verify /
kam-verify, sg-redirect-verify / kam-redirect-verify): CPU per call at --fixed-rate (default
1000 calls/s; every run of it, and the median) and the highest clean rate offered, with the
capacity ratio (Kamailio's CPU per call / sipguard's: >= 1.0 means sipguard costs no more).
Options: --routing "rr" | "plain" | "rr plain" (above), --fixed-rate R (the summary's rate),
--sg-decisions off|info|debug (experiment: sipguard's log.decisions instead of its default), --workers N (sipguard workers and Kamailio UDP children, default 2), --uacs K (split the
offered load over K sipp UACs on K source ports), --keep-going (do not skip the rates above a
collapsed step), --out DIR (default /tmp/sipguard-bench/<time>), --quiet-pct P --quiet-wait S (before each step wait
at most S seconds for other processes to use < P % of one core; the figure is recorded), --sg-prefill N (sipguard's traceback file
starts with N records over the last N/1000 s, made once a run: the shipped writer's cost in a file with
history, whose indexes outgrow SQLite's page cache; where the tree has trunk minute roll-ups, the file has them
too, as after a worker's first score refresh), --sg-rcvbuf BYTES / --sg-no-records (experiments through
bench/bench_proxy_sgwrap.py: larger UDP receive buffers; no traceback records), --sg-gc-threshold N
(experiment: gc.freeze() and a generation-0 threshold of N in sipguard), --sg-lag (each sipguard
worker logs its event-loop stalls over 2 ms to lag-PID.txt, collector passes to gc-PID.txt and the main
thread's stack during stalls over 20 ms to stall-PID.txt, in the step's folder), --sg-pin (experiment:
worker i pinned to CPU i), --sg-shed-delay S (experiment: proxy.shed_delay S; 0 turns overload shedding
off, so a host busy with other work does not turn calls away), --profile (py-spy record the
sipguard workers during each sipguard step; needs `pip install py-spy`), --perf [all] (`perf record
-F 997 -g` of the sipguard workers, with `all` of Kamailio's processes too, to STEP/perf.data; its cost
shows in the step's figures). Each step's folder keeps procs.json: CPU and voluntary/involuntary
context switches over the step of every process of the system under test and of each of its threads
(the event loop's, the records writer's...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_proxy_lib import (  # noqa: E402
    Step,
    cpu_ns,
    descendants,
    free_port,
    free_ports,
    host_busy_ns,
    metrics_verstat,
    percentile,
    read_rtts,
    read_stat,
    stop_pid,
    switches,
    threads,
    udp_rcvbuf_errors,
    wait_answering,
    wait_quiet,
)

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
KAM_CFG = HERE / "kamailio-relay.cfg"
SYSTEMS = ("kam-relay", "kam-verify", "kam-redirect-verify", "sg-proxy", "sg-verify", "sg-redirect-verify")
FLOORS = ("floor-verify", "floor-redirect-verify")   # run when named (--systems); not in the default set

# sipp 3.6.1 reads CLOCK_MONOTONIC_COARSE (4 ms steps at HZ=250): every response time would be
# 0, 4 or 8 ms. This preload maps the coarse clocks to the precise ones.
FINECLOCK_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>
int clock_gettime(clockid_t c, struct timespec *t) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    if (c == CLOCK_MONOTONIC_COARSE) c = CLOCK_MONOTONIC;
    else if (c == CLOCK_REALTIME_COARSE) c = CLOCK_REALTIME;
    return real(c, t);
}
"""


@dataclass(slots=True)
class System:
    name: str
    kind: str            # "kamailio" | "sipguard" | "floor"
    redirect: bool
    verify: bool

    @property
    def scenario(self) -> str:
        if self.redirect:
            return "uac_redirect_identity.xml"
        return "uac_call_identity.xml" if self.verify else "uac_call_plain.xml"


def system(name: str) -> System:
    kind = "kamailio" if name.startswith("kam") else "floor" if name.startswith("floor") else "sipguard"
    return System(name, kind,
                  "redirect" in name, "verify" in name)


@dataclass(slots=True)
class Bench:
    args: argparse.Namespace
    out: Path
    env: dict[str, str]
    pki: Any = None
    server: Any = None
    signer: Any = None
    cert_file: str = ""
    http_port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    results: list[Step] = field(default_factory=list)

    # -- setup ------------------------------------------------------------------------------
    def setup(self) -> None:
        shim = self.out / "fineclock.so"
        (self.out / "fineclock.c").write_text(FINECLOCK_C)
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(self.out / "fineclock.c"),
                        "-ldl"], check=True)
        self.env = {**os.environ, "LD_PRELOAD": str(shim)}
        from sipguard.shaken.sign import Signer, SigningConfig
        from tests.shaken_pki import CertServer, StiPki, serialization

        self.pki = StiPki(self.out / "pki")
        self.server = CertServer().__enter__()
        self.pki.publish(self.server)
        key_path = self.out / "pki" / "good.key"
        key_path.write_bytes(self.pki.key("good").private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.cert_file = str(self.out / "pki" / "good.pem")
        cfg = SigningConfig(key=str(key_path), cert=self.cert_file, x5u=self.server.url("/good.pem"),
                            attest="A", origid="call")
        self.signer = Signer.load(cfg, time.time())

    def tokens(self, path: Path, n: int, offset: int = 0) -> float:
        """n lines caller;callee;jws;x5u, signed now; returns the seconds it took."""
        t0 = time.monotonic()
        x5u = self.signer.cfg.x5u
        lines = ["SEQUENTIAL"]
        for i in range(offset, offset + n):
            orig = f"1{201 + i % 700:03d}555{i % 10000:04d}"
            dest = f"1{301 + (i * 7) % 600:03d}555{(i * 13) % 10000:04d}"
            origid = f"00000000-0000-4000-8000-{i:012d}"
            jws = self.signer.passport(orig, [dest], time.time(), origid)
            lines.append(f"{orig};{dest};{jws};{x5u}")
        path.write_text("\n".join(lines) + "\n")
        return time.monotonic() - t0

    # -- systems under test ---------------------------------------------------------------------
    def start_sut(self, sysm: System, d: Path, port: int, uas_port: int, routing: str) -> subprocess.Popen[bytes]:
        log = open(d / "sut.log", "wb")
        if sysm.kind == "kamailio":
            cmd = ["kamailio", "-f", str(KAM_CFG), "-DD", "-E", "-n", str(self.args.workers), "-m", "512",
                   "-M", "32", "-x", "tlsf", "-Y", str(d), "-l", f"udp:127.0.0.1:{port}",
                   "-A", f'NEXT_HOP="127.0.0.1:{uas_port}"']
            if sysm.verify:
                cmd += ["-A", f'VERIFY_CERT="{self.cert_file}"']
            if sysm.redirect:
                cmd += ["-A", "REDIRECT"]
            if routing == "plain":
                cmd += ["-A", "NO_RR"]
        elif sysm.kind == "floor":
            cmd = [sys.executable, str(HERE / "bench_floor.py"), "--port", str(port), "--workers",
                   str(self.args.workers), "--cert", self.cert_file,
                   "--mode", "redirect" if sysm.redirect else "relay", "--next-hop", f"127.0.0.1:{uas_port}"]
            if routing == "plain":
                cmd.append("--no-rr")
        else:
            cfg_path = d / "sipguard.yaml"
            cfg = self.sipguard_config(sysm, port, uas_port, routing)
            if self.args.sg_prefill:
                shutil.copyfile(self.prefilled(self.args.sg_prefill), d / "traceback.db")
            cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            plain = not (self.args.sg_rcvbuf or self.args.sg_no_records or self.args.sg_gc_threshold
                         or self.args.sg_lag or self.args.sg_pin)
            head = [sys.executable, "-m", "sipguard"] if plain else \
                [sys.executable, str(HERE / "bench_proxy_sgwrap.py"), str(self.args.sg_rcvbuf)]
            cmd = [*head, "serve", "-c", str(cfg_path),
                   "--workers", str(self.args.workers)]
        (d / "sut.cmd").write_text(" ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=d, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO),
                                     "SG_BENCH_NO_RECORDS": "1" if self.args.sg_no_records else "0",
                                     "SG_BENCH_GC_THRESHOLD": str(self.args.sg_gc_threshold or ""),
                                     "SG_BENCH_LAG": "1" if self.args.sg_lag else "0",
                                     "SG_BENCH_PIN": "1" if self.args.sg_pin else "0"})
        self.procs.append(proc)
        return proc

    def prefilled(self, n: int) -> Path:
        """A traceback file of ``n`` records over the last n/1000 seconds (made once a run, copied
        into each sipguard step): the shipped writer's cost in a file that holds some history,
        whose indexes no longer fit SQLite's page cache, instead of in a new file. Random
        Call-IDs, 100,000 distinct callers and callees, as a gateway's traffic has."""
        path = self.out / f"prefill-{n}.db"
        if path.exists():
            return path
        import random

        from sipguard.records.sqlite import SqliteRecords
        from tests.records_fixtures import make_record

        rnd, start, db = random.Random(1), time.time() - n / 1000.0, SqliteRecords(str(path))
        db.open()
        for first in range(0, n, 5000):
            db.write([("prefill", first + k, make_record(
                0, time=start + (first + k) / 1000.0, call_id=f"{rnd.getrandbits(64):016x}@192.0.2.1",
                caller=f"1202{rnd.randrange(100000):07d}", callee=f"1312{rnd.randrange(100000):07d}",
                attest="A")) for k in range(min(5000, n - first))])
        if hasattr(db, "roll"):   # a tree with trunk minutes: rolled up, as a file a worker has refreshed
            db.roll(time.time() - 3600)
        db._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        return path

    def sipguard_config(self, sysm: System, port: int, uas_port: int, routing: str) -> dict[str, Any]:
        """sipguard as shipped (decision lines and traceback records at their defaults), with
        Record-Route exactly when Kamailio's config runs record_route()."""
        cfg: dict[str, Any] = {
            "listen": [f"udp://127.0.0.1:{port}"],
            "mode": "redirect" if sysm.redirect else "proxy",
            "next_hop": f"sip:127.0.0.1:{uas_port}",
            "unknown_source": "reject",
            "trunks": [{"id": "bench", "role": "foreign", "sources": ["127.0.0.1/32"],
                        "provider": {"name": "Bench Carrier", "frn": "0012345678", "rmd": "RMD0001234",
                                     "country": "GB"}}],
            "store": "memory",
            "traceback": {"path": "traceback.db"},
            "http": {"listen": f"127.0.0.1:{self.http_port}"},
        }
        if not sysm.redirect:
            cfg["proxy"] = {"record_route": routing == "rr"}
        if self.args.sg_shed_delay is not None:
            cfg.setdefault("proxy", {})["shed_delay"] = self.args.sg_shed_delay
        if self.args.sg_decisions:
            cfg["log"] = {"decisions": self.args.sg_decisions}
        if sysm.verify:
            cfg["shaken"] = {"trust_anchors": self.pki.anchors, "iat_max_age": 120,
                             "x5u": {"allow_http": True, "allow_networks": ["127.0.0.0/8"],
                                     "allow_private": True},
                             "crl": {"enabled": False}}
        return cfg

    def start_uas(self, d: Path, port: int) -> subprocess.Popen[bytes]:
        cmd = ["sipp", "-sf", str(SCENARIOS / "uas.xml"), "-i", "127.0.0.1", "-p", str(port), "-t", "u1",
               "-nostdin", "-buff_size", "1048576", "-max_recv_loops", "10000", "-max_sched_loops", "10000"]
        proc = subprocess.Popen(cmd, cwd=d, stdout=open(d / "uas.out", "wb"), stderr=subprocess.STDOUT,
                                env=self.env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def uac_cmd(self, sysm: System, target: int, csv: Path, rate: float, calls: int, stat: str) -> list[str]:
        limit = max(500, int(rate))
        return ["sipp", f"127.0.0.1:{target}", "-sf", str(SCENARIOS / sysm.scenario), "-inf", str(csv),
                "-i", "127.0.0.1", "-p", str(free_port()), "-t", "u1", "-r", f"{rate:g}", "-rp", "1000",
                "-m", str(calls), "-l", str(limit), "-recv_timeout", "5000",
                "-timeout", f"{self.args.duration + 30}s", "-buff_size", "1048576",
                "-max_recv_loops", "10000", "-max_sched_loops", "10000", "-nostdin",
                "-trace_stat", "-stf", stat, "-fd", "1", "-trace_rtt", "-rtt_freq", "1"]

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop_pid(proc)
        self.procs.clear()

    # -- one step -----------------------------------------------------------------------------
    def step(self, sysm: System, rate: int, routing: str) -> Step:
        a = self.args
        base = self.out / (sysm.name if routing == "rr" else f"{sysm.name}-plain")
        d, rep = base / f"r{rate}", 2
        while d.exists():  # a rate given twice runs twice, each in its own folder
            d, rep = base / f"r{rate}-rep{rep}", rep + 1
        d.mkdir(parents=True)
        foreign = wait_quiet(a.quiet_pct, a.quiet_wait) if a.quiet_wait > 0 else 0.0
        try:
            for attempt in range(3):
                # a port free when chosen can be taken before the system binds it (another
                # process's ephemeral port): then again, on other ports
                port, uas_port, self.http_port = free_ports(3)
                if not sysm.redirect:
                    self.start_uas(d, uas_port)
                sut = self.start_sut(sysm, d, port, uas_port, routing)
                if wait_answering(port, sut, 30.0):
                    break
                self.stop_all()
                logs = [f.read_text(errors="replace") for f in (d / "sut.log", d / "uas.out") if f.exists()]
                if not any("Address already in use" in text for text in logs) or attempt == 2:
                    return Step(sysm.name, rate, routing=routing,
                                error=f"did not start: {(d / 'sut.log').read_text()[-500:]}")
            calls = rate * a.duration
            per = [calls // a.uacs + (1 if i < calls % a.uacs else 0) for i in range(a.uacs)]
            csvs = [d / f"tokens{i}.csv" for i in range(a.uacs)]
            sign_s = 0.0
            # warm-up: every worker's x5u cache and code paths, from as many source ports as workers
            warm = d / "warm.csv"
            sign_s += self.tokens(warm, 40, offset=10_000_000)
            (d / "warm").mkdir(exist_ok=True)
            warmups = [subprocess.Popen(self.uac_cmd(sysm, port, warm, 20, 20, f"warm{i}.csv"), cwd=d / "warm",
                                        env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True) for i in range(max(a.workers, a.uacs))]
            self.procs.extend(warmups)
            for i, n in enumerate(per):
                sign_s += self.tokens(csvs[i], n if sysm.verify else min(n, 5000), offset=i * 1_000_000)
            for w in warmups:
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    stop_pid(w)
            tree = descendants(sut.pid)
            load = os.getloadavg()[0]
            per0 = {pid: cpu_ns([pid]) for pid in tree}
            sw0 = {pid: switches(pid) for pid in tree}
            th0 = {pid: threads(pid) for pid in tree}
            cpu0, host0, drops0, t0 = cpu_ns(tree), host_busy_ns(), udp_rcvbuf_errors(), time.monotonic()
            prof = self.profile(sysm, d, tree[1:] or tree) if a.profile and sysm.kind == "sipguard" else []
            if a.perf and (sysm.kind == "sipguard" or a.perf == "all"):
                prof.append(subprocess.Popen(
                    ["perf", "record", "-F", "997", "-g", "-o", str(d / "perf.data"), "-p",
                     ",".join(map(str, tree[1:] or tree)), "--", "sleep", str(a.duration)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.procs.extend(prof)
            uacs = [subprocess.Popen(self.uac_cmd(sysm, port, csvs[i], rate / a.uacs, per[i], f"uac{i}_stat.csv"),
                                     cwd=d, env=self.env, stdout=open(d / f"uac{i}.out", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True) for i in range(a.uacs)]
            self.procs.extend(uacs)
            for u in uacs:
                try:
                    u.wait(a.duration + 60)
                except subprocess.TimeoutExpired:
                    stop_pid(u)
            wall = time.monotonic() - t0
            cpu1, host1, drops1 = cpu_ns(tree), host_busy_ns(), udp_rcvbuf_errors()
            used = {pid: cpu_ns([pid]) - c for pid, c in per0.items()}
            busiest = max(used.values(), default=0)
            # each process's share (supervisor, workers) and wake-ups, for a look afterwards
            # and per thread (the event loop's, the records writer's...): CPU s, voluntary and
            # involuntary switches over the step
            (d / "procs.json").write_text(json.dumps({pid: {
                "cpu_s": ns / 1e9, "supervisor": pid == sut.pid and len(tree) > 1,
                "switches": [b - a for a, b in zip(sw0[pid], switches(pid), strict=True)],
                "threads": {t: [(v[0] - th0[pid].get(t, (0, 0, 0))[0]) / 1e9,
                                v[1] - th0[pid].get(t, (0, 0, 0))[1], v[2] - th0[pid].get(t, (0, 0, 0))[2]]
                            for t, v in threads(pid).items()}}
                for pid, ns in used.items()}, indent=1) + "\n")
            for p in prof:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    stop_pid(p)
            stats = [read_stat(d / f"uac{i}_stat.csv") for i in range(a.uacs)]
            verstats = metrics_verstat(self.http_port, d / "metrics.txt") if sysm.kind == "sipguard" else {}
            rtts, span = read_rtts(d)
            ok = sum(s["ok"] for s in stats)
            failed = sum(s["failed"] for s in stats)
            # sipp's ElapsedTime has 1 s resolution: use the span of the INVITE answers instead
            elapsed = max(span + 1.0 / rate, max((s["elapsed"] for s in stats), default=0.0) - 1.0) or wall
            sut_cpu = (cpu1 - cpu0) / 1e9
            return Step(sysm.name, rate, routing=routing, achieved=ok / elapsed if elapsed else 0.0, ok=ok, failed=failed,
                          failed_pct=100.0 * failed / max(1, ok + failed),
                          retrans=sum(s["retrans"] for s in stats), rcvbuf_drops=drops1 - drops0,
                          p50=percentile(rtts, 50), p99=percentile(rtts, 99), max_ms=max(rtts, default=0.0),
                          samples=len(rtts), sut_cpu_pct=100.0 * sut_cpu / wall,
                          busiest_pct=100.0 * busiest / 1e9 / wall,
                          sut_us_per_call=1e6 * sut_cpu / max(1, ok), host_cpu_pct=100.0 * (host1 - host0) / 1e9 / wall,
                          load1=load, foreign_pct=foreign, sign_s=sign_s, alive=sut.poll() is None,
                        verstat=" ".join(f"{k}:{v}" for k, v in sorted(verstats.items())))
        finally:
            self.stop_all()

    def profile(self, sysm: System, d: Path, pids: list[int]) -> list[subprocess.Popen[bytes]]:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            print("  (py-spy not installed: pip install py-spy)")
            return []
        return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(self.args.duration),
                                  "--rate", "100", "--format", "raw", "--nonblocking",
                                  "-o", str(d / f"pyspy-{pid}.txt")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> int:
        self.setup()
        info = machine()
        print(f"# bench_proxy {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {info}")
        print(f"# systems {self.args.systems}  rates {self.args.rates}  routing {self.args.routing}  "
              f"duration {self.args.duration}s  workers {self.args.workers}  uacs {self.args.uacs}  out {self.out}")
        print(Step.header())
        collapsed: set[tuple[str, str]] = set()
        for rate in [int(r) for r in self.args.rates.split()]:
            for routing in self.args.routing.split():
                for name in self.args.systems.split():
                    if (name, routing) in collapsed or (routing == "plain" and "redirect" in name):
                        continue  # a redirect relays nothing: one row, whatever the routing
                    res = self.step(system(name), rate, routing)
                    self.results.append(res)
                    print(res.row(), flush=True)
                    with open(self.out / "results.jsonl", "a") as fh:
                        fh.write(json.dumps(res.as_dict()) + "\n")
                    if res.collapsed() and not self.args.keep_going:
                        collapsed.add((name, routing))
        print(summary(self.results, self.args.fixed_rate))
        print(f"# results: {self.out / 'results.jsonl'}")
        return 0

    def close(self) -> None:
        self.stop_all()
        if self.server is not None:
            self.server.__exit__(None, None, None)


PAIRS = (("sg-proxy", "kam-relay"), ("sg-verify", "kam-verify"), ("sg-redirect-verify", "kam-redirect-verify"),
         ("floor-verify", "kam-verify"), ("floor-redirect-verify", "kam-redirect-verify"))


def summary(steps: list[Step], fixed: int) -> str:
    """sipguard against its Kamailio counterpart, same run: CPU per call at the fixed rate
    (each run, median) and the highest clean offered rate, with the ratios."""
    def us(sysname: str, routing: str) -> list[float]:
        return [s.sut_us_per_call for s in steps
                if s.system == sysname and s.routing == routing and s.rate == fixed and not s.error and s.ok]

    def best(sysname: str, routing: str) -> int:
        return max((s.rate for s in steps if s.system == sysname and s.routing == routing and s.clean()),
                   default=0)

    def runs(vals: list[float]) -> str:
        return ", ".join(f"{v:.0f}" for v in vals) or "-"

    lines = [f"\n## Same-run summary: CPU per call at {fixed} calls/s, highest clean rate offered",
             "| sipguard | Kamailio | routing | sipguard us/call (runs) | median | Kamailio us/call (runs) | median "
             "| capacity ratio (Kamailio / sipguard) | sipguard max clean | Kamailio max clean |",
             "|---|---|---|---|--:|---|--:|--:|--:|--:|"]
    for sg, kam in PAIRS:
        for routing in ("rr", "plain"):
            a, b = us(sg, routing), us(kam, routing)
            if not a and not b:
                continue
            ma, mb = (statistics.median(a) if a else 0.0), (statistics.median(b) if b else 0.0)
            ratio = f"{mb / ma:.2f}" if ma and mb else "-"
            lines.append(f"| {sg} | {kam} | {routing} | {runs(a)} | {ma:.0f} | {runs(b)} | {mb:.0f} | {ratio} "
                         f"| {best(sg, routing) or '-'} | {best(kam, routing) or '-'} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    kam = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    return f"nproc={os.cpu_count()} cpu={cpu!r} load={os.getloadavg()[0]:.2f} {' '.join(kam)}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rates", default="500 1000 2000 3000 4000")
    p.add_argument("--duration", type=int, default=15)
    p.add_argument("--systems", default=" ".join(SYSTEMS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--uacs", type=int, default=1)
    p.add_argument("--keep-going", action="store_true")
    p.add_argument("--routing", default="rr",
                   help='"rr" (both record-route), "plain" (neither does) or "rr plain" (each rate both ways)')
    p.add_argument("--fixed-rate", type=int, default=1000,
                   help="the rate at which the summary compares CPU per call (include it in --rates)")
    p.add_argument("--sg-decisions", choices=("off", "info", "debug"), default=None,
                   help="experiment: sipguard's log.decisions (default: as shipped, info)")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--perf", nargs="?", const="sipguard", default=None, choices=("sipguard", "all"),
                   help="diagnostic: perf record -F 997 -g the sipguard workers (all: Kamailio too) "
                        "during each step, to STEP/perf.data (its cost shows in that step's figures)")
    p.add_argument("--quiet-pct", type=float, default=30.0,
                   help="before each step wait until other processes use < this %% of one core")
    p.add_argument("--quiet-wait", type=float, default=60.0, help="... but at most this many seconds (0: no wait)")
    p.add_argument("--sg-rcvbuf", type=int, default=0,
                   help="experiment: run sipguard with SO_RCVBUF of this many bytes on its UDP sockets")
    p.add_argument("--sg-prefill", type=int, default=0,
                   help="sipguard's traceback file starts with this many records (a file with history), not empty")
    p.add_argument("--sg-no-records", action="store_true",
                   help="experiment: run sipguard with traceback records dropped at submit()")
    p.add_argument("--sg-gc-threshold", type=int, default=0,
                   help="experiment: run sipguard with gc.freeze() and this generation-0 GC threshold")
    p.add_argument("--sg-lag", action="store_true",
                   help="diagnostic: each sipguard worker logs event-loop stalls over 2 ms to lag-PID.txt")
    p.add_argument("--sg-pin", action="store_true",
                   help="experiment: pin sipguard worker i to CPU i")
    p.add_argument("--sg-shed-delay", type=float, default=None,
                   help="experiment: sipguard's proxy.shed_delay (0: no overload shedding; default as shipped)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--report", type=Path, default=None,
                   help="only print the table of an earlier run's results.jsonl")
    args = p.parse_args()
    if args.report is not None:
        print(Step.header())
        steps = []
        for line in args.report.read_text().splitlines():
            fields = json.loads(line)
            fields.pop("clean", None)
            fields.pop("target", None)
            steps.append(Step(**fields))
            print(steps[-1].row())
        print(summary(steps, args.fixed_rate))
        return 0
    if not args.routing.split() or set(args.routing.split()) - {"rr", "plain"}:
        p.error(f"--routing {args.routing!r}: give rr, plain or both")
    bad = [s for s in args.systems.split() if s not in SYSTEMS + FLOORS]
    if bad:
        p.error(f"unknown system(s) {bad}; choose from {' '.join(SYSTEMS + FLOORS)}")
    for tool in ("sipp", "gcc") + (("kamailio",) if "kam" in args.systems else ()):
        if shutil.which(tool) is None:
            p.error(f"{tool} is not installed")
    out = args.out or Path("/tmp/sipguard-bench") / time.strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, out.resolve(), {})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        return bench.run()
    except KeyboardInterrupt:
        return 130
    finally:
        bench.close()


if __name__ == "__main__":
    sys.exit(main())
