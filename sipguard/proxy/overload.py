"""Overload: when a worker falls behind, new INVITEs get a cheap ``503`` + Retry-After.

With a store that answers from memory a decision runs inline, so the admission bound
(``proxy.max_pending``, counted in the core) is never reached: the excess waits in the
kernel's socket buffer instead, for seconds, and dies there when the buffer is full; the
upstream retransmits and multiplies the load. So shedding goes by the age of the work, not
its count. Measured here, each cheaply:

- the age of the oldest datagram waiting in each of the worker's UDP sockets (and the
  steering inbox): its kernel receive timestamp, peeked at once per tick (``QueueProbe``).
  This is the signal of a flood: the loop still turns every few milliseconds (it reads a
  few dozen datagrams per turn) while the queue behind grows by seconds;
- the event loop's lag: a tick is scheduled every ``TICK`` seconds and runs late when
  callbacks hog the loop (the only signal for TCP and TLS);
- a stall: every INVITE received checks how overdue the next tick is; past the threshold
  (a loop that stopped, then woke up to a full queue, before its tick could run) the queue
  ages are read at once, at most once per tick;
- with a network store (``watch_store``: ``RedisStore.waiting``), how long the oldest
  decision has waited on it, beyond the store's quickest recent answer, as a share of
  ``store_timeout``: ``STORE_AT`` (half the timeout) counts as work waiting
  ``proxy.shed_delay``. A lookup takes about five loop turns (task, batch, send, reply,
  wake-up), and under overload a turn is a round of datagrams: with the queue held at its
  target the lookups of the calls let in still ran past the timeout and were decided
  degraded (7-53 % of them at 3x, bench/RESULTS.md "Session 10"). This signal sheds new
  INVITEs before the ones let in time out (0.1-1.2 % degraded on a quiet host). A store slow by itself is not a worker behind:
  its own answer time (the floor) is not counted, and a store marked down answers at once.
- the records waiting for the writer (``watch_records``: ``RecordWriter.backlog``), as a share
  of ``traceback.queue``: ``RECORDS_AT`` (the whole queue) counts as work waiting
  ``proxy.shed_delay``. A call's record is part of its cost. The SQLite writer's thread runs
  below the event loop's CPU priority, so a worker past its capacity handles calls at the
  full rate and records them at what is left over: the records waiting grew by ~2,800 a
  second a worker, 700 bytes each, through a burst at 3x (bench/RESULTS.md, "Session 14"),
  memory the issue's bound on RSS does not allow and a crash would lose. With this signal the
  calls let in are the calls that can be recorded too: the shedding holds the records
  waiting near half of ``traceback.queue``. Not a network store's writer (Redis, PostgreSQL:
  ``Sink.local``): its wait is bounded by its timeouts, then the spool takes the batches.

A tick's measurement is the larger of these; one over the threshold is a preemption on a
busy host or one slow callback, so a tick passes on the smaller of its measurement and the
previous one (the work must have waited too long at two ticks in a row), unless it is four
times the threshold: a stall, which one measurement shows.
``ShedState`` decides, with time as an input: an episode starts when the age passes
``proxy.shed_delay`` (every new INVITE gets 503); from then on each tick's measurement, as it
is, moves the share of new INVITEs answered 503 towards the one that holds the age at half of
``proxy.shed_delay`` (proportional-integral, as RFC 8033's PIE drives its drop probability from
the queue delay), and the episode ends when the share is back to 0. Before it (session 8)
shedding stopped as soon as the age fell below half the threshold: under sustained overload
each stop let the whole excess in until the queue was past the threshold again, hundreds of
times a burst, and the 503s waited up to the threshold and a tick or two more (bench/RESULTS.md,
"Session 9"). One warning a minute at most; the gauge sipguard_overload_shedding follows the
episodes. While shedding, an initial INVITE in the share is answered from its lines
(``sip.relay.overload_answer``: no parse, no verification, no transaction) and everything else
(the other INVITEs, responses, ACK, BYE, CANCEL, re-INVITEs) takes the normal path. So does a
retransmitted INVITE whose transaction lives (``live``: the worker asks its core, by the top
Via's key): it was let in, and a 503 now would end at the caller a call that goes on
downstream (RFC 3261 17.2.3: a retransmission is answered by its transaction). The ACK of
such a 503 is recognised by its To tag and absorbed here, whenever it comes.

No tick while idle: a tick that finds no datagram waiting and no INVITE since the one before
stops the ticks (an idle worker woke up 100 times a second for them); the next INVITE starts
them again and measures the queues at once, as the stall check does. A worker starts idle.

This module owns no policy and no transaction; it never delays a message, it only answers
one earlier than the full path would.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from sipguard.proxy import allocator
from sipguard.sip import relay

log = logging.getLogger("sipguard.overload")

TICK = 0.01              # seconds between two measurements
GAIN = 0.05              # ShedState: share per tick per half-threshold the age is over its target
GAIN_DOWN = 0.25         # ... under half of it (the queue all but empty): the share falls fast, so an
#                          episode that a busy moment of the host started (no overload behind it) ends
#                          within a few ticks
TREND = 0.25             # ShedState: share per half-threshold the age grew (fell) since the last tick
STORE_AT = 0.5           # a store lookup this far into its store_timeout counts as work waiting shed_delay
RECORDS_AT = 1.0         # records waiting, this share of traceback.queue, count as work waiting shed_delay
WARN_EVERY = 60.0        # seconds between two overload warnings
SHED_TAG = b"sgx"        # To tag prefix of our overload answers (the core's own tags are sg + hex)
ACK_WINDOW = 64.0        # seconds after the last overload answer its ACKs are looked for (Timer H is 32 s)
SO_TIMESTAMPNS = 35      # Linux; not in the socket module
_TIMESPEC = struct.Struct("@qq")
_INT = struct.Struct("@i")
_FIONREAD = getattr(termios, "FIONREAD", 0x541B)
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
_PEEK = getattr(socket, "MSG_PEEK", 0) | getattr(socket, "MSG_DONTWAIT", 0)

SendBack = Callable[[bytes, tuple[str, int], str, object], None]
StoreWait = Callable[[float], float]   # monotonic now -> how far into its timeout the oldest lookup is
Backlog = Callable[[], float]          # records waiting for the writer, as a share of traceback.queue


@dataclass(slots=True)
class ShedState:
    """Shed or not, and which share of new INVITEs, from the measured age of the work
    (seconds); ``threshold`` 0: never.

    An episode starts when the age passes ``threshold`` (``proxy.shed_delay``): every new
    INVITE gets 503 (``share`` 1). From then on each measurement moves the share towards the
    one that holds the age at half the threshold (a proportional-integral controller, as RFC
    8033's PIE drives its drop probability from the queue delay): up while the work waits
    longer than that, down while it waits less (five times faster once the queue is all but
    empty: under a quarter of the threshold), and by how fast the age moves. The episode ends when the share is back to 0. Holding the queue at a target, rather than shedding
    everything until it is empty and then nothing until it is full again, is what keeps the
    age of the work (and so of the 503s) bounded under sustained overload."""

    threshold: float
    shedding: bool = False
    delay: float = 0.0          # the last age measured
    share: float = 0.0          # of new INVITEs answered 503 while shedding (0..1)
    credit: float = 0.0         # share accumulated and not yet spent on an INVITE (take)

    def update(self, delay: float) -> bool:
        previous, self.delay = self.delay, delay
        threshold = self.threshold
        if self.shedding:
            target = threshold / 2
            gain = GAIN_DOWN if delay < target / 2 else GAIN
            share = self.share + (gain * (delay - target) + TREND * (delay - previous)) / target if target > 0 else 0.0
            if share <= 0.0:  # back to 0 (or shedding turned off by a reload): the episode is over
                self.shedding, self.share, self.credit = False, 0.0, 0.0
            else:
                self.share = min(1.0, share)
        elif threshold > 0 and delay > threshold:
            self.shedding, self.share, self.credit = True, 1.0, 0.0
        return self.shedding

    def take(self) -> bool:
        """While shedding: is this new INVITE one of the share answered 503? Spread evenly
        (a credit of ``share`` per INVITE, one INVITE shed per whole credit), not at random."""
        credit = self.credit + self.share
        if credit >= 1.0:
            self.credit = credit - 1.0
            return True
        self.credit = credit
        return False


class QueueProbe:
    """The age of the oldest datagram waiting in one socket: its kernel receive timestamp
    (SO_TIMESTAMPNS, wall clock), read with MSG_PEEK on a duplicate of the descriptor, so
    the datagram stays for the event loop to read. One system call, about 2 µs.

    Most ticks find the socket empty, and a peek there fails: an exception raised and caught,
    with its message decoded, 3 µs in a loop and several times that between datagrams (1.4 %
    of a redirecting worker, perf, session 14). So FIONREAD first (the size of the datagram
    at the head, 0 when none; one ioctl, 0.8 µs), and the peek only when one waits. A datagram
    of 0 bytes at the head reads as none: the event loop takes it at its next turn, and a loop
    that does not turn is measured by its lag."""

    def __init__(self, fileno: int) -> None:
        self.sock = socket.socket(fileno=os.dup(fileno))
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.fd = self.sock.fileno()
        self._size = bytearray(_INT.size)     # FIONREAD's answer, written in place

    def age(self, wall_now: float) -> float:
        try:
            fcntl.ioctl(self.fd, _FIONREAD, self._size)
            if not _INT.unpack_from(self._size)[0]:
                return 0.0
            _, ancillary, _, _ = self.sock.recvmsg(1, _CMSG_SPACE, _PEEK)
        except OSError:  # empty (BlockingIOError), or a pending ICMP error: nothing waits
            return 0.0
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(data)
                return max(0.0, wall_now - (sec + nsec / 1e9))
        return 0.0

    def close(self) -> None:
        self.sock.close()


@dataclass(slots=True)
class OverloadCounters:
    """Cumulative, exported as sipguard_sip_events{event=<field>}."""

    shed_503: int = 0            # new INVITEs answered 503 here
    shed_ack_absorbed: int = 0   # ACKs of those answers, absorbed
    overload_episodes: int = 0   # times shedding started


class OverloadGuard:
    """One worker's shedding: measures, decides, and answers new INVITEs while behind."""

    def __init__(self, shed_delay: float, retry_after: int, max_size: int, send_back: SendBack) -> None:
        self.state = ShedState(shed_delay)
        self.max_size = max_size
        self.send_back = send_back
        self.headers = b""
        self.reconfigure(shed_delay, retry_after)
        self.probes: list[QueueProbe] = []
        self.due = float("inf")                 # when the next tick should run (none yet)
        self.counters = OverloadCounters()
        self.max_delay = 0.0                    # the largest age measured since the last gauges()
        self._last = 0.0                        # the previous tick's measurement
        self._last_stored = 0.0                 # ... of the decisions waiting on the store
        self._checked = 0.0                     # no stall check on the receive path before this
        self.shed_at = -ACK_WINDOW              # when the last overload answer went (monotonic)
        self.invites = 0                        # new INVITEs (and re-INVITEs) seen, cumulative
        self._invites = 0                       # ... at the last tick
        self.idle = False                       # no tick while nothing waits (resumed by an INVITE)
        self._warned = -WARN_EVERY
        self._timer: asyncio.TimerHandle | None = None
        self.store_wait: StoreWait | None = None  # the network store's lookups in flight (watch_store)
        # (INVITE, its top Via) -> a live transaction answers it: a retransmission is never shed
        self.live: Callable[[bytes, str], bool] | None = None
        self.max_store = 0.0                    # the largest store wait measured since the last gauges()
        self.records_backlog: Backlog | None = None  # the record writer's backlog (watch_records)
        self._last_records = 0.0                # ... at the previous tick

    def reconfigure(self, shed_delay: float, retry_after: int) -> None:
        """``proxy.shed_delay`` and ``proxy.retry_after``, at start and after SIGHUP."""
        self.state.threshold = shed_delay
        self.headers = b"Retry-After: %d\r\nServer: sipguard\r\n" % retry_after

    def start(self, sockets: list[int]) -> None:
        """Measure from the first INVITE on; ``sockets``: descriptors of the UDP sockets to watch."""
        if self.state.threshold <= 0:
            return
        if sys.platform == "linux":
            for fileno in sockets:
                try:
                    self.probes.append(QueueProbe(fileno))
                except OSError as exc:
                    log.warning("no queue age for socket %d (shedding by loop lag only): %s", fileno, exc)
        # a worker starts idle: no tick until the first INVITE, which measures the queues at
        # once (_resume). Before, the first tick came TICK after the start, and until it ran
        # the stall check had no tick to be late against: a call within those 10 ms, then a
        # stall (a stopped process), and the queue it left was decided instead of answered
        # 503, since the loop reads the sockets before it runs the timers when it wakes up
        # (tests/integration/test_edge_limits.py, 1 run in 30 on a loaded host)
        self.idle, self.due = True, float("inf")

    def watch_store(self, wait: StoreWait | None) -> None:
        """Shed by the decisions waiting on a network store too (``RedisStore.waiting``)."""
        self.store_wait = wait

    def watch_records(self, backlog: Backlog | None) -> None:
        """Shed by the records waiting for the writer too (``RecordWriter.backlog``)."""
        self.records_backlog = backlog

    def close(self) -> None:
        self.idle = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for probe in self.probes:
            probe.close()
        self.probes.clear()

    def _schedule(self, now: float) -> None:
        self.due = now + TICK
        self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        queued = self._queue_age()
        waited = max(queued, now - self.due)
        # how far into store_timeout the oldest decision waiting on the store is (watch_store)
        stored = self.store_wait(now) if self.store_wait is not None else 0.0
        # the records waiting for the writer, as a share of traceback.queue (watch_records)
        records = self.records_backlog() if self.records_backlog is not None else 0.0
        # one measurement over the threshold is a preemption on a busy host or one slow
        # callback; two in a row, a worker behind; four times over, a stall, alone. While
        # shedding, each measurement as it is: the share follows it (ShedState)
        state = self.state
        if state.shedding or waited > 4 * state.threshold:
            self.measure(waited, stored, records)
        else:
            self.measure(min(waited, self._last), min(stored, self._last_stored), min(records, self._last_records))
        self._last, self._last_stored, self._last_records = waited, stored, records
        if not state.shedding and queued == 0.0 and stored == 0.0 and self.invites == self._invites \
                and waited < state.threshold and records < RECORDS_AT / 2:
            # idle: no INVITE since the last tick and none waiting; the next INVITE resumes
            # the ticks (intercept), with a measurement of its own
            self.idle, self.due, self._timer = True, float("inf"), None
            self._last = self._last_stored = self._last_records = 0.0
            return
        self._invites = self.invites
        self._schedule(now)

    def _resume(self, now: float) -> bool:
        """The first INVITE after an idle spell: ticks again, and the queues measured now
        (what a stall left waiting, as the stall check reads it). True: shedding."""
        self.idle = False
        self._invites = self.invites
        self._schedule(now)
        return bool(self.probes) and self.measure(self._queue_age())

    def _queue_age(self) -> float:
        wall, oldest = time.time(), 0.0
        for probe in self.probes:
            age = probe.age(wall)
            if age > oldest:
                oldest = age
        return oldest

    def measure(self, delay: float, stored: float = 0.0, records: float = 0.0) -> bool:
        """A measured age of the work (seconds), how far into its ``store_timeout`` the
        oldest decision waiting on the store is (a share; ``STORE_AT`` of it counts as work
        waiting ``proxy.shed_delay``) and the records waiting for the writer (a share of
        ``traceback.queue``; ``RECORDS_AT`` of it counts the same): shed or not from now on
        (True: shedding)."""
        state = self.state
        age = delay
        if stored > 0.0:
            age = max(age, stored * state.threshold / STORE_AT)
        if records > 0.0:
            age = max(age, records * state.threshold / RECORDS_AT)
        was = state.shedding
        if state.update(age) and not was:
            self.counters.overload_episodes += 1
            # under sustained overload shedding starts and stops many times a second: one line a minute
            now = time.monotonic()
            if now - self._warned >= WARN_EVERY:
                self._warned = now
                log.warning("overloaded: work waits %.0f ms (proxy.shed_delay %.0f ms), decisions on the store "
                            "%.0f %% of store_timeout (%.0f %%), records waiting %.0f %% of traceback.queue "
                            "(%.0f %%); new INVITEs get 503 + Retry-After while it lasts "
                            "(%d times so far, %d INVITEs answered 503; this warning at most once a minute, "
                            "sipguard_overload_shedding says when)", delay * 1e3, state.threshold * 1e3,
                            stored * 100, STORE_AT * 100, records * 100, RECORDS_AT * 100,
                            self.counters.overload_episodes, self.counters.shed_503)
        if delay > self.max_delay:
            self.max_delay = delay
        if stored > self.max_store:
            self.max_store = stored
        return state.shedding

    # -- per message (the worker's receive path) ------------------------------------------------
    def intercept(self, data: bytes, source: tuple[str, int], transport: str, conn: object) -> bool:
        """True when this message was handled here: a new INVITE answered 503 while behind,
        or the ACK of such an answer."""
        head = data[:4]
        if head == b"ACK ":
            # the ACK of an answer of ours comes within its Timer H; most ACKs (every 2xx's)
            # are not looked at when none went out for that long
            if time.monotonic() - self.shed_at < ACK_WINDOW and relay.overload_ack(data, SHED_TAG):
                self.counters.shed_ack_absorbed += 1
                return True
            return False
        if head != b"INVI":
            return False
        self.invites += 1
        state = self.state
        if not state.shedding:
            now = time.monotonic()
            if self.idle:
                if state.threshold <= 0 or not self._resume(now):
                    return False
            else:
                late = now - self.due   # the loop has not turned for this long
                if state.threshold <= 0 or late <= state.threshold or now < self._checked:
                    return False
                # a stall: shed if work waits behind this message (at most one look per tick)
                self._checked = now + TICK
                if not self.measure(self._queue_age() if self.probes else late):
                    return False
        if not state.take():
            return False  # not in the share shed now: the full path
        answer = relay.overload_answer(data, self.headers, SHED_TAG, self.max_size, self.live)
        if answer is None:
            state.credit += 1.0  # the share is of new INVITEs: the next one takes this one's turn
            return False  # a re-INVITE, a retransmission (``live``), or a shape only the full path reads
        self.counters.shed_503 += 1
        self.shed_at = time.monotonic()
        self.send_back(answer, source, transport, conn)
        return True

    def gauges(self) -> tuple[bool, float, float, float]:
        """Shedding now, the largest age measured since the last call, the share of new
        INVITEs answered 503 now (0 when not shedding), and the largest wait of a decision on
        the store since the last call (a share of ``store_timeout``)."""
        delay, self.max_delay = self.max_delay, 0.0
        stored, self.max_store = self.max_store, 0.0
        state = self.state
        return state.shedding, delay, state.share if state.shedding else 0.0, stored


class MemoryTrim:
    """After a burst, give the freed heap back to the system.

    A burst's transactions are freed when they expire (one transaction lifetime), but the
    allocator keeps the pages they used unless told: glibc keeps the chunks' pages, jemalloc
    gives back dirty pages only after its decay time, and Python's small-object allocator gives
    an arena (1 MiB) back only when nothing in it lives, so a few objects made during the burst
    and still alive keep tens of MB (proxy/allocator.py: serve runs on jemalloc when it can).
    Once the live transactions have fallen to half of the peak seen since the last trim, a
    compaction runs (a few ms, at most once per halving): the caches are emptied (``release``:
    refilled by the next calls), a full collection (``gc.collect()``: what the collector froze
    is not walked, about 2 ms; it also empties the interpreter's free lists of tuples, lists,
    dicts and floats, whose burst-made objects pin pymalloc arenas: 17 of 48 in
    bench/bench_rss_burst.py) and the free pages are given back (``allocator.release``:
    jemalloc's purge, else ``malloc_trim(0)``). Once more when the burst is all but gone
    (what its last transactions held), and a last time ``SETTLE_TICKS`` ticks later, for what
    was freed after it (records written, their batches, the last timers)."""

    SETTLE_TICKS: ClassVar[int] = 4   # housekeeping ticks (0.5 s each) after a burst's last trim

    def __init__(self, minimum: int = 2000, release: tuple[Callable[[], None], ...] = (),
                 collect: Callable[[], int] = gc.collect) -> None:
        self.minimum = minimum      # a peak below this many transactions is not worth a trim
        self.release = release      # caches to empty when a burst is over
        self.peak = 0
        self.trims = 0
        self._falling = False       # trimmed since the last peak: trim once more when it is over
        self._settle = 0            # ticks left before the burst's very last compaction
        self._collect = collect
        self._release = allocator.release

    def tick(self, transactions: int) -> bool:
        """Called with the live transaction count (housekeeping); True when it trimmed."""
        if self._settle and transactions * 16 <= self.minimum:
            self._settle -= 1
            if not self._settle:
                self._compact()
                return True
        if transactions > self.peak:
            self.peak = transactions
            return False
        if self.peak >= self.minimum:
            if transactions * 2 > self.peak:
                return False
            self._falling = True
        elif self._falling and transactions * 16 <= self.minimum:
            self._falling = False   # the burst is all but gone: its last trim, and one after it settled
            self._settle = self.SETTLE_TICKS
        else:
            return False
        self.peak = transactions
        self._compact()
        return True

    def _compact(self) -> None:
        self.trims += 1
        for release in self.release:
            release()
        self._collect()
        self._release()
