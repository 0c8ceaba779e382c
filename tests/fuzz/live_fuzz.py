"""Fuzz a running sipguard over UDP and TCP; after each batch check that it still serves.

    python tests/fuzz/live_fuzz.py --duration 120 --workers 2          # about two minutes
    python tests/fuzz/live_fuzz.py --batches 3 --datagrams 300 --json  # a short run

It starts ``sipguard serve --workers N`` from this tree on loopback (memory store, one trunk
for 127.0.0.1) with a small UAS behind it, then repeats a batch:

- mutated datagrams over UDP (``mutation.mutate`` of RFC 4475 messages, the public
  captures' messages and messages built here for this server, addresses rewritten to
  loopback so nothing leaves the machine);
- mutated TCP streams (several messages, CRLF keep-alives, oversize and unframed ones),
  written in random pieces, some a byte at a time, closed cleanly or reset;

and after it checks that

- every worker is alive: the supervisor's children are the pids they were at the start
  (a worker that died would be restarted under a new pid);
- normal calls complete: INVITE / 200 / ACK / BYE / 200 through sipguard, over UDP (several,
  so both workers' transactions are used) and over TCP;
- RSS is flat: the workers' RSS after the last batch is within ``--rss-slack-mb`` of what it
  was after the first (transactions of forwarded fuzz INVITEs live ~32 s, so the first
  batch is the baseline, not the start).

One line per batch, a summary at the end (``--json``: one JSON object) with the exceptions
sipguard logged with a traceback (counted, not a failure: the worker survived them); exit
status 1 on a failure. ``tests/fuzz/test_live_fuzz.py`` runs a short bounded variant in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__":  # run by hand: import this tree (and tests/) like the suite does
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sipguard.sip import SipParseError, StreamFramer  # noqa: E402
from tests.fuzz.mutation import live_messages, mutate, rfc4475_messages  # noqa: E402
from tests.sipclient import MiniUas, Msg, invite, parse_msg  # noqa: E402

_IPV4 = re.compile(rb"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
_IPV6 = re.compile(rb"\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]")


class Target(Protocol):
    """What ``run`` needs of a running sipguard (``tests.conftest.SipguardProcess`` has it)."""

    @property
    def addr(self) -> tuple[str, int]: ...

    def logs(self) -> str: ...


@dataclass
class Result:
    batches: int = 0
    datagrams: int = 0
    streams: int = 0
    bytes_sent: int = 0
    answers: int = 0          # datagrams sipguard sent back to the fuzzer (400, 100, 483 ...)
    calls: int = 0
    seconds: float = 0.0
    workers: list[int] = field(default_factory=list)      # pids at the start
    workers_alive: int = 0                                  # of them, alive at the end
    rss_start_kib: int = 0                                  # summed over workers, before fuzzing
    rss_baseline_kib: int = 0                               # after the first batch
    rss_end_kib: int = 0
    rss_per_batch_kib: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


# -- the server's processes -----------------------------------------------------------------
def children(pid: int) -> list[int]:
    """The processes ``pid`` forked (sipguard's workers), from /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(p) for p in text.split())


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# -- a UAS that takes anything -------------------------------------------------------------
class Uas(MiniUas):
    """MiniUas that survives whatever sipguard forwards and keeps nothing (long runs)."""

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            try:
                msg = parse_msg(data)
                if msg.method in ("INVITE", "BYE", "OPTIONS", "CANCEL"):
                    self.sock.sendto(self._response(msg, 200), addr)
            except Exception:  # noqa: S112 - a fuzzed request the UAS cannot answer: ignore it
                continue


# -- inputs ----------------------------------------------------------------------------------
def loopback(data: bytes) -> bytes:
    """The message with every IP literal made loopback, so no answer leaves the machine."""
    return _IPV6.sub(b"[::1]", _IPV4.sub(b"127.0.0.1", data))


def live_seeds(target: tuple[str, int], uas: tuple[str, int], local: tuple[str, int]) -> list[bytes]:
    """Messages for this server: calls, in-dialog requests and responses shaped as a trunk
    and a UAS send them, then the RFC 4475 and capture messages (addresses made loopback)."""
    bye = (f"BYE sip:uas@{uas[0]}:{uas[1]} SIP/2.0\r\nVia: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK-b1;"
           f"rport\r\nFrom: <sip:+12025550123@{local[0]}>;tag=a\r\nTo: <sip:+13035550100@{target[0]}>;tag=b\r\n"
           "Call-ID: live-fuzz-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
    response = (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {target[0]}:{target[1]};branch=z9hG4bKsg00112233aabbccdd;"
                f"rport={target[1]}\r\nVia: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK-uac-1\r\n"
                "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
                "Content-Length: 0\r\n\r\n").encode()
    own = [invite(target, local, caller="+12025550123", callee="+13035550100"),
           invite(target, local, identity=["eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2ln;info=<https://c.example/a.pem>"
                                           ";alg=ES256;ppt=shaken"], extra=["Route: <sip:127.0.0.1;lr>"]),
           bye, bye.replace(b"BYE", b"ACK").replace(b"2 ACK", b"1 ACK"), bye.replace(b"BYE", b"CANCEL"),
           bye.replace(b"BYE", b"OPTIONS"), response, response.replace(b"200 OK", b"486 Busy Here")]
    return own * 20 + [loopback(m) for m in rfc4475_messages() + list(live_messages())]


def tcp_stream(rng: random.Random, seeds: list[bytes]) -> bytes:
    parts = [rng.choice(seeds) if rng.random() < 0.5 else mutate(rng, rng.choice(seeds))
             for _ in range(rng.randrange(1, 5))]
    glue = rng.choice([b"", b"", b"\r\n\r\n", b"\r\n"])
    stream = glue.join(p.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP", 1) for p in parts)
    if rng.random() < 0.05:
        stream += b"X-Junk: " + b"a" * rng.choice((70_000, 200_000))  # oversize header block
    return stream


# -- one batch ---------------------------------------------------------------------------------
def send_datagrams(sock: socket.socket, target: tuple[str, int], rng: random.Random, seeds: list[bytes],
                   count: int, result: Result) -> None:
    for index in range(count):
        data = mutate(rng, rng.choice(seeds))[:65_000]
        try:
            sock.sendto(data, target)
        except OSError:
            continue  # e.g. EMSGSIZE: not sent, not counted
        result.datagrams += 1
        result.bytes_sent += len(data)
        if index % 50 == 49:
            result.answers += _drain(sock)
            time.sleep(0.002)  # a pause now and then: fuzz, not a flood (the overload guard has its own tests)
    time.sleep(0.2)
    result.answers += _drain(sock)


def send_stream(target: tuple[str, int], rng: random.Random, stream: bytes, result: Result) -> None:
    with socket.create_connection(target, timeout=5) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(0.5)
        byte_by_byte = rng.random() < 0.1 and len(stream) < 4000
        pos = 0
        try:
            while pos < len(stream):
                size = 1 if byte_by_byte else rng.randrange(1, 1500)
                conn.sendall(stream[pos:pos + size])
                pos += size
        except OSError:
            pass  # sipguard closed a stream it cannot frame: what it should do
        result.streams += 1
        result.bytes_sent += pos
        if rng.random() < 0.3:  # reset instead of a clean close
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        else:
            try:
                conn.shutdown(socket.SHUT_WR)
                conn.recv(65536)
            except OSError:
                pass


def _drain(sock: socket.socket) -> int:
    """Read (and count) what has arrived, without waiting."""
    count = 0
    sock.setblocking(False)
    try:
        while True:
            sock.recv(65536)
            count += 1
    except OSError:
        pass
    finally:
        sock.setblocking(True)
    return count


# -- checks ------------------------------------------------------------------------------------
def wait_serving(target: tuple[str, int], timeout: float = 20.0) -> bool:
    """True once sipguard answers OPTIONS (it has worked through what the batch left queued)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.3)
        local = sock.getsockname()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            options = (f"OPTIONS sip:{target[0]}:{target[1]} SIP/2.0\r\nVia: SIP/2.0/UDP {local[0]}:{local[1]};"
                       f"branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n"
                       f"To: <sip:{target[0]}>\r\nCall-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\n"
                       "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
            sock.sendto(options, target)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if data.startswith(b"SIP/2.0 200"):
                return True
    return False


class UdpCall:
    """INVITE / 200 / ACK / BYE / 200 through sipguard over UDP, retransmitting as a UAC does."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.local = self.sock.getsockname()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def recv(self, timeout: float) -> Msg | None:
        self.sock.settimeout(timeout)
        try:
            return parse_msg(self.sock.recv(65536))
        except TimeoutError:
            return None

    def close(self) -> None:
        self.sock.close()


def _await(conn: UdpCall | TcpCall, request: bytes, method: str, timeout: float = 10.0) -> Msg | None:
    """Send ``request`` (again every 0.5 s over UDP until a response) and return its final response."""
    end = time.monotonic() + timeout
    answered = False
    conn.send(request)
    while time.monotonic() < end:
        msg = conn.recv(0.5)
        if msg is None:
            if not answered and isinstance(conn, UdpCall):
                conn.send(request)  # RFC 3261 timer A / E
            continue
        cseq = (msg.header("CSeq") or "").split()
        if msg.status is None or len(cseq) != 2 or cseq[1] != method:
            continue
        answered = True
        if msg.status >= 200:
            return msg
    return None


class TcpCall:
    def __init__(self, target: tuple[str, int]) -> None:
        self.sock = socket.create_connection(target, timeout=5)
        self.local = self.sock.getsockname()
        self.framer = StreamFramer()
        self.ready: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float) -> Msg | None:
        end = time.monotonic() + timeout
        while not self.ready:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                return None
            try:
                self.ready += self.framer.feed(data)
            except SipParseError:
                return None
        return parse_msg(self.ready.pop(0))

    def close(self) -> None:
        self.sock.close()


def normal_call(target: tuple[str, int], transport: str) -> str | None:
    """None when the call completed, else what went wrong."""
    conn: UdpCall | TcpCall = UdpCall(target) if transport == "udp" else TcpCall(target)
    try:
        call_id = f"live-fuzz-check-{uuid.uuid4().hex}"
        inv = invite(target, conn.local, caller="+12025550123", callee="+13035550100", call_id=call_id,
                     transport=transport.upper())
        final = _await(conn, inv, "INVITE")
        if final is None or final.status != 200:
            return f"{transport} INVITE: {'no final response' if final is None else final.first}"
        contact = re.search(r"<([^>]+)>", final.header("Contact") or "")
        if contact is None:
            return f"{transport} 200 without a Contact"
        head = inv.split(b"\r\n\r\n")[0].decode().split("\r\n")
        common = [f"From: {final.header('From')}", f"To: {final.header('To')}", f"Call-ID: {call_id}",
                  "Max-Forwards: 70", "Content-Length: 0"]
        via = head[1].replace(head[1].split("branch=")[1].split(";")[0], "z9hG4bK" + uuid.uuid4().hex[:16])
        conn.send(("\r\n".join([f"ACK {contact.group(1)} SIP/2.0", via, "CSeq: 1 ACK", *common]) + "\r\n\r\n").encode())
        via = head[1].replace(head[1].split("branch=")[1].split(";")[0], "z9hG4bK" + uuid.uuid4().hex[:16])
        bye = ("\r\n".join([f"BYE {contact.group(1)} SIP/2.0", via, "CSeq: 2 BYE", *common]) + "\r\n\r\n").encode()
        done = _await(conn, bye, "BYE")
        if done is None or done.status != 200:
            return f"{transport} BYE: {'no final response' if done is None else done.first}"
        return None
    except OSError as exc:
        return f"{transport} call: {exc}"
    finally:
        conn.close()


# -- the loop ----------------------------------------------------------------------------------
def run(target: Target, supervisor: int, uas: MiniUas, *, workers: int, duration: float | None = None,
        batches: int | None = None, datagrams: int = 500, streams: int = 40, seed: int = 1,
        rss_slack_mb: float = 64.0, calls: int = 4, log: Any = None) -> Result:
    """Fuzz ``target`` until ``duration`` seconds or ``batches`` batches, checking after each."""
    rng = random.Random(seed)
    result = Result()
    addr = target.addr
    fuzz = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fuzz.bind(("127.0.0.1", 0))
    seeds = live_seeds(addr, ("127.0.0.1", uas.port), fuzz.getsockname())
    result.workers = children(supervisor) if workers > 1 else [supervisor]
    if len(result.workers) != workers:
        result.failures.append(f"expected {workers} workers, found pids {result.workers}")
        return result
    result.rss_start_kib = sum(rss_kib(pid) for pid in result.workers)
    start = time.monotonic()
    try:
        while True:
            if batches is not None and result.batches >= batches:
                break
            if duration is not None and time.monotonic() - start >= duration:
                break
            send_datagrams(fuzz, addr, rng, seeds, datagrams, result)
            for _ in range(streams):
                send_stream(addr, rng, tcp_stream(rng, seeds), result)
            result.batches += 1
            problems = check(target, supervisor, result, calls)
            rss = sum(rss_kib(pid) for pid in result.workers)
            result.rss_per_batch_kib.append(rss)
            if result.batches == 1:
                result.rss_baseline_kib = rss
            if log is not None:
                print(f"batch {result.batches}: {result.datagrams} datagrams, {result.streams} TCP streams "
                      f"sent, {time.monotonic() - start:.0f} s; workers {result.workers} alive: "
                      f"{'yes' if not any('worker' in p for p in problems) else 'NO'}; calls: "
                      f"{'ok' if not any('call' in p or 'INVITE' in p or 'BYE' in p for p in problems) else 'FAILED'}"
                      f"; RSS {rss / 1024:.1f} MiB", file=log, flush=True)
            if problems:
                result.failures += [f"batch {result.batches}: {p}" for p in problems]
                break
    finally:
        fuzz.close()
    result.seconds = round(time.monotonic() - start, 1)
    result.workers_alive = sum(alive(pid) for pid in result.workers)
    result.rss_end_kib = sum(rss_kib(pid) for pid in result.workers)
    growth = result.rss_end_kib - result.rss_baseline_kib
    if result.ok and growth > rss_slack_mb * 1024:
        result.failures.append(f"workers' RSS grew {growth / 1024:.1f} MiB after the first batch "
                               f"(allowed {rss_slack_mb} MiB): {result.rss_per_batch_kib}")
    return result


def check(target: Target, supervisor: int, result: Result, calls: int) -> list[str]:
    problems = []
    if not alive(supervisor):
        return [f"the supervisor (pid {supervisor}) is gone"]
    if len(result.workers) > 1 and children(supervisor) != result.workers:
        problems.append(f"worker pids changed: {result.workers} -> {children(supervisor)} (a worker died)")
    dead = [pid for pid in result.workers if not alive(pid)]
    if dead:
        problems.append(f"worker(s) {dead} dead")
    if not wait_serving(target.addr):
        return [*problems, "no answer to OPTIONS within 20 s"]
    for transport in ["udp"] * calls + ["tcp"]:
        failure = normal_call(target.addr, transport)
        result.calls += 1
        if failure is not None:
            problems.append(f"normal call failed: {failure}")
    return problems


def logged_exceptions(log_text: str) -> dict[str, int]:
    """The exceptions sipguard logged with a traceback (JSON log lines), by their last line."""
    out: dict[str, int] = {}
    for line in log_text.splitlines():
        try:
            exc = json.loads(line).get("exc") if line.startswith("{") else None
        except ValueError:
            continue
        if exc:
            last = exc.strip().splitlines()[-1][:200]
            out[last] = out.get(last, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=None, help="seconds to fuzz (default: 120 "
                        "unless --batches is given)")
    parser.add_argument("--batches", type=int, default=None, help="stop after this many batches")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--datagrams", type=int, default=500, help="mutated datagrams per batch")
    parser.add_argument("--streams", type=int, default=40, help="mutated TCP streams per batch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rss-slack-mb", type=float, default=64.0,
                        help="allowed growth of the workers' summed RSS after the first batch")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--keep", metavar="DIR", help="run sipguard in DIR (config, sipguard.log) and keep it")
    args = parser.parse_args(argv)
    if args.duration is None and args.batches is None:
        args.duration = 120.0

    from tests.conftest import SipguardProcess, base_config

    with tempfile.TemporaryDirectory(prefix="sipguard-live-fuzz-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        uas = Uas()
        # the server runs this tree whatever the caller's PYTHONPATH (a relative one would
        # resolve in the server's folder and pick up an installed sipguard instead)
        server = SipguardProcess(base_config(uas.port), folder, workers=args.workers,
                                 env={"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
        try:
            server.start()
            assert server.proc is not None
            log = sys.stderr if args.json else sys.stdout
            result = run(server, server.proc.pid, uas, workers=args.workers, duration=args.duration,
                         batches=args.batches, datagrams=args.datagrams, streams=args.streams, seed=args.seed,
                         rss_slack_mb=args.rss_slack_mb, log=log)
            if not result.ok:
                print(server.logs()[-3000:], file=sys.stderr)
        finally:
            server.stop()
            uas.close()
        exceptions = logged_exceptions(server.log_path.read_text(errors="replace"))
    summary = {**asdict(result), "ok": result.ok, "workers_started": args.workers, "seed": args.seed,
               "exceptions_logged": exceptions}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{'ok' if result.ok else 'FAILED'}: {result.datagrams} datagrams and {result.streams} TCP streams "
              f"({result.bytes_sent / 1e6:.1f} MB) in {result.seconds} s, {result.batches} batches, "
              f"{result.calls} normal calls, {result.answers} answers to the fuzz; workers alive {result.workers_alive}/{len(result.workers)}; "
              f"RSS {result.rss_start_kib / 1024:.1f} MiB at start, {result.rss_baseline_kib / 1024:.1f} after "
              f"batch 1, {result.rss_end_kib / 1024:.1f} at the end")
        for failure in result.failures:
            print("  " + failure)
        for text, count in exceptions.items():
            print(f"  logged {count} time(s) with a traceback: {text}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
