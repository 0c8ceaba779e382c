"""``sipguard serve``: event loop, worker processes, signals, reload, readiness.

One worker: everything in this process. ``--workers N``: the parent forks N workers that
each bind the listening ports with SO_REUSEPORT and run their own pipeline; the parent
serves HTTP (/metrics aggregated over workers, /healthz, /readyz, admin), forwards SIGHUP
and SIGTERM, and restarts a worker that dies. SIGTERM drains: new INVITEs get 503 while
decisions in flight finish (bounded), records are flushed, then the process exits.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from sipguard import native, numbers
from sipguard.clock import SystemClock
from sipguard.config import Config, load_config
from sipguard.errors import ConfigError
from sipguard.observe.logs import log_decision
from sipguard.proxy.connlimits import ConnectionLimits
from sipguard.proxy.core import ProxyCore
from sipguard.proxy.overload import MemoryTrim, OverloadGuard
from sipguard.proxy.steer import Channels, Steering
from sipguard.proxy.transport import Transports, UdpEndpoint

if TYPE_CHECKING:
    from sipguard.pipeline import Outcome, Pipeline

RMD_WATCH_INTERVAL = 30.0     # seconds between two looks at the store's RMD change log
log = logging.getLogger("sipguard.serve")


def sd_notify(message: str) -> bool:
    """systemd readiness/watchdog: one datagram to $NOTIFY_SOCKET (no dependency needed)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False
    return True


class Worker:
    """One process's proxy: transports + core + pipeline + records + metrics."""

    def __init__(self, config: Config, index: int = 0, workers: int = 1,
                 steering: Steering | None = None, udp_socks: dict[int, socket.socket] | None = None) -> None:
        self.config = config
        self.udp_socks = udp_socks
        self.index = index
        self.workers = workers
        self.steering = steering
        self.clock = SystemClock()
        self.stopping = asyncio.Event()
        self.reload_requested = False
        self.pipeline: Pipeline | None = None
        self.core: ProxyCore | None = None
        self.transports: Transports | None = None
        self.records: Any = None
        self.metrics: Any = None
        self.instance = config.proxy.instance or f"{socket.gethostname()}/{index}"
        self._watcher: asyncio.Task[None] | None = None
        self._scores: asyncio.Task[None] | None = None      # trunk.score refresh (records/upstreams.py)
        self._scores_stop = asyncio.Event()
        self._rmd_watch: asyncio.Task[None] | None = None
        self.gc = GcPacer()
        self.guard: OverloadGuard | None = None          # overload: new INVITEs answered 503 (overload.py)
        self.trim = MemoryTrim(release=(numbers.clear_cache,))  # RSS back after a burst (overload.py)

    async def start(self) -> None:
        from sipguard.observe.metrics import Metrics
        from sipguard.pipeline import Pipeline
        from sipguard.records.writer import open_records

        self.metrics = Metrics()
        self.pipeline = await Pipeline.create(self.config, self.clock, metrics=self.metrics)
        self.records = open_records(self.config.store, self.config.traceback, metrics=self.metrics)
        await self.records.start()
        self._start_scores()
        if self.index == 0:     # one counter of each change per instance, not one per worker
            self._rmd_watch = asyncio.get_running_loop().create_task(self._watch_rmd())
        if self.config.store == "memory" and self.config.datasets:
            from sipguard.store.datasets import DatasetWatcher

            watcher = DatasetWatcher(self.pipeline.store, self.config.datasets)
            self._watcher = asyncio.get_running_loop().create_task(watcher.watch())
        proxy = self.config.proxy
        self.transports = Transports(self.config.listen, self._receive, proxy.max_message_size,
                                     proxy.advertise, self.udp_socks, self.config.tls,
                                     ConnectionLimits(proxy.tcp, self._known_peer))
        self.guard = OverloadGuard(proxy.shed_delay, proxy.retry_after, proxy.max_message_size,
                                   self.transports.send_to_source)
        self.core = ProxyCore(self.config, self.pipeline, self.transports, self._on_outcome)
        await self.transports.start(reuse_port=self.workers > 1 or sys.platform == "linux")
        if self.steering is not None:
            await self.steering.start(self._steered_in)
        self.guard.start(self._queues())

    def _start_scores(self) -> None:
        """The background refresh of trunk.score into ``pipeline.scores`` (none at interval 0)."""
        from sipguard.records.upstreams import ScoreRefresher

        assert self.pipeline is not None
        pipeline = self.pipeline

        def install(table: dict[str, int]) -> None:
            pipeline.scores = table

        if self._scores is not None:
            self._scores_stop.set()
            self._scores_stop = asyncio.Event()
        if self.config.upstreams.score_interval <= 0:
            pipeline.scores = {}
            self._scores = None
            return
        refresher = ScoreRefresher(self.config.store, self.config.traceback, self.config.upstreams, install,
                                   self.metrics)
        self._scores = asyncio.get_running_loop().create_task(refresher.run(self._scores_stop))

    async def _watch_rmd(self, interval: float = RMD_WATCH_INTERVAL) -> None:
        """RMD watch: every ``interval`` read the changes the store logged since the last look
        (an import by ``sipguard rmd import`` into Redis, or this process's reload of the
        datasets file), count them, and log those of configured upstreams."""
        from sipguard.store.tables import upstream_changes

        assert self.pipeline is not None
        since = time.time()
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), interval)
                return
            except TimeoutError:
                pass
            try:
                changes = await self.pipeline.store.rmd_changes(since, 100_000)
            except Exception as exc:   # noqa: BLE001 - the store may be down; the next look retries
                log.debug("RMD watch: cannot read the change log: %s", exc)
                continue
            if not changes:
                continue
            since = max(c.time for c in changes)
            upstreams = [(t.id, t.provider.rmd, t.provider.frn) for t in self.config.trunks]
            mine = upstream_changes(changes, upstreams)
            self.metrics.rmd_changes(changes, mine)
            log.info("RMD import %s: %d filing(s) changed since %s", changes[-1].snapshot, len(changes),
                     changes[0].previous or "-")
            for trunk, c in mine:
                log.warning("RMD watch: upstream trunk %s (%s, FRN %s) %s: %s/%s -> %s/%s in snapshot %s", trunk,
                            c.rmd, c.frn or "-", c.change, c.old_status, c.old_implementation or "-", c.new_status,
                            c.new_implementation or "-", c.snapshot)

    # -- overload and connection limits (proxy/overload.py, proxy/connlimits.py) ---------------
    def _queues(self) -> list[int]:
        """The UDP sockets whose oldest datagram tells how far behind this worker is."""
        assert self.transports is not None
        endpoints = [*self.transports.udp, *self.transports.udp_out.values()]
        socks = [ep.transport.get_extra_info("socket") for ep in endpoints if ep.transport is not None]
        fds = [sock.fileno() for sock in socks if sock is not None]
        if self.steering is not None:
            fds.append(self.steering.inbox.fileno())
        return fds

    def _known_peer(self, ip: str) -> bool:
        """May a TCP/TLS connection from ``ip`` stay (at accept)? Follows a reloaded config."""
        if self.config.unknown_source != "reject":
            return True
        peers = self.core.stateless.peers if self.core is not None else None
        return peers is not None and peers.known(ip)

    def _edge_metrics(self, stats: dict[str, float]) -> None:
        self.trim.tick(int(stats.get("transactions", 0)))
        if self.guard is not None and self.transports is not None:
            stats.update(self.guard.stats())
            self.metrics.set_edge(*self.guard.gauges(), self.transports.connection_stats())

    def begin_stop(self) -> None:
        """SIGTERM/SIGINT: from this moment new INVITEs get 503 + Retry-After; the drain itself
        (``stop``) runs once the housekeeping loop has seen ``stopping``."""
        if self.core is not None:
            self.core.draining = True
        self.stopping.set()

    def _receive(self, data: bytes, source: tuple[str, int], transport: str, conn: object) -> None:
        assert self.core is not None
        guard = self.guard
        if guard is not None and guard.intercept(data, source, transport, conn):
            return  # a new INVITE answered 503 while behind, or the ACK of such an answer
        steering = self.steering
        # a request that reached a listening UDP socket may belong to another worker's transaction
        if steering is not None and type(conn) is UdpEndpoint and conn.index >= 0 \
                and not data.startswith(b"SIP/") and steering.hand_over(data, source, conn.index):
            return
        self.core.receive(data, source, transport, conn)

    def _steered_in(self, data: bytes, source: tuple[str, int], listen_index: int) -> None:
        """A request another worker received for a transaction this one owns: handled as if
        it had arrived here, answered from this worker's copy of the same listening socket."""
        assert self.core is not None and self.transports is not None
        udp = self.transports.udp
        conn = udp[listen_index] if 0 <= listen_index < len(udp) else None
        if self.guard is not None and self.guard.intercept(data, source, "udp", conn):
            return
        self.core.receive(data, source, "udp", conn)

    def _on_outcome(self, outcome: Outcome, status: int | None, hop: str | None, latency: float) -> None:
        record = outcome.record(status, hop if status is None or status == 302 else None, self.instance)
        self.records.submit(record)
        self.metrics.observe_decision(record, latency)
        for name in outcome.lookups.limited:
            self.metrics.rate_limited(name)
        log_decision(record)

    async def housekeeping(self) -> None:
        """Once every 0.5 s: expire transactions, pick up policy changes, export gauges."""
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), 0.5)
            except TimeoutError:
                pass
            assert self.core is not None and self.pipeline is not None
            self.gc.tick()
            self.core.rotate()
            if self.reload_requested:
                self.reload_requested = False
                await self.reload()
            await self._poll_policy()
            stats = self.core.stats()
            if self.transports is not None:
                stats["unsupported_transport"] = float(self.transports.dropped)
            if self.steering is not None:
                stats.update(self.steering.stats())
            self._edge_metrics(stats)
            self.metrics.set_gauges(stats, self.pipeline, records=self.records)

    async def _poll_policy(self) -> None:
        assert self.pipeline is not None
        holder = self.pipeline.policy
        if holder is None:
            return
        # read and compiled in a thread (calls go on meanwhile), swapped in here on the loop
        result = holder.install(await asyncio.to_thread(holder.prepare))
        if isinstance(result, ConfigError):
            log.error("policy not reloaded, the running policy stays: %s", result)
        elif result:
            log.info("policy reloaded from %s", holder.current.path)

    async def reload(self) -> None:
        """SIGHUP: re-read the config; swap what can change at run time; keep the rest."""
        assert self.pipeline is not None
        try:
            config = await asyncio.to_thread(load_config, self.config.path)   # off the loop
        except ConfigError as exc:
            log.error("config not reloaded, the running one stays: %s", exc)
            return
        later = restart_keys(self.config, config)
        if later:
            log.warning("config reloaded, but these keys take effect only after a restart: %s", ", ".join(later))
        self.pipeline.reconfigure(config)
        if self.core is not None:
            self.core.reconfigure(config)
        if self.transports is not None:  # files renewed in place (same paths) count too
            self.transports.reload_tls(config.tls)
            if config.tls.cert is not None:
                log.info("TLS certificates reloaded from %s", config.tls.cert)
        scores_changed = config.upstreams != self.config.upstreams
        self.config = config
        if scores_changed:
            self._start_scores()
        log.info("config reloaded from %s", config.path)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self._scores_stop.set()
        if self._rmd_watch is not None:
            self._rmd_watch.cancel()
        if self.core is not None:
            await self.core.drain(self.config.proxy.drain_timeout)
        if self.guard is not None:
            self.guard.close()
        if self.steering is not None:
            self.steering.close()
        if self.transports is not None:
            await self.transports.close()
        if self.records is not None:
            await self.records.aclose()
        if self.pipeline is not None:
            await self.pipeline.aclose()


def restart_keys(old: Config, new: Config) -> list[str]:
    """The changed keys a running process cannot apply (each is named in the reload warning);
    everything else (next_hop, mode, trunks, trusted_proxies, unknown_source, every other
    proxy.* key, policy, shaken, limits, TLS certificates) applies to the messages that follow."""
    checks = (("listen", old.listen != new.listen), ("store", old.store != new.store),
              ("workers", old.workers != new.workers),
              ("proxy.steering", old.proxy.steering != new.proxy.steering),
              ("proxy.max_message_size", old.proxy.max_message_size != new.proxy.max_message_size),
              ("proxy.advertise", old.proxy.advertise != new.proxy.advertise),
              ("http.listen", old.http_listen != new.http_listen),
              ("http.token_file", old.http_token != new.http_token),
              ("traceback", old.traceback != new.traceback))
    return [key for key, changed in checks if changed]


class GcPacer:
    """The cyclic collector on the worker's schedule, not the allocator's.

    Left to itself the collector starts a young-generation pass every 50,000 net allocations;
    under load that pass walks every transaction still alive (~10-15 ms, in every worker at
    once since they allocate alike), and the older generations' passes walk far more. Here,
    twice a second, the young generation is collected (half a second of survivors: well
    under a millisecond) and what survives is frozen, so no automatic pass ever walks it
    again; those objects are still freed by reference counting when their transaction ends.
    Every ``full_every`` seconds everything is unfrozen and collected once, so cyclic
    garbage that reached a frozen object is not kept for ever."""

    def __init__(self, full_every: float = 600.0, now: float | None = None) -> None:
        self.full_every = full_every
        self._last_full = time.monotonic() if now is None else now

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._last_full >= self.full_every:
            self._last_full = now
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(0)
        gc.freeze()


def tune_gc() -> None:
    """Everything made at start-up (config, policy code, tables, caches) lives as long as the
    process: move it out of the collector's sight, and collect the young generation less
    often. The per-call objects are short-lived and acyclic, and a transaction keeps bytes,
    not objects, once decided; measured under load this cut the p99 INVITE response time
    several-fold (bench/RESULTS.md, "Proxy load")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def run_worker(config: Config, index: int, workers: int, serve_http: bool,
                     steering: Steering | None = None, udp_socks: dict[int, socket.socket] | None = None) -> int:
    loop = asyncio.get_running_loop()
    worker = Worker(config, index, workers, steering, udp_socks)
    loop.add_signal_handler(signal.SIGTERM, worker.begin_stop)
    loop.add_signal_handler(signal.SIGINT, worker.begin_stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: setattr(worker, "reload_requested", True))
    await worker.start()
    tune_gc()
    http = await _start_http(config, worker) if serve_http else None
    log.info("sipguard worker %d listening on %s (mode %s, store %s, hot path %s)", index,
             ", ".join(str(addr) for addr in config.listen), config.mode, config.store, native.describe())
    if workers == 1:
        sd_notify("READY=1\nSTATUS=listening")
    watchdog = loop.create_task(_watchdog(worker.stopping)) if workers == 1 else None
    await worker.housekeeping()
    log.info("sipguard worker %d stopping: draining (new INVITEs get 503, calls in progress finish, "
             "at most %.0f s)", index, config.proxy.drain_timeout)
    sd_notify("STOPPING=1")
    if watchdog is not None:
        watchdog.cancel()
    await worker.stop()   # /readyz says "draining" meanwhile
    if http is not None:
        await http.aclose()
    return 0


async def _watchdog(stopping: asyncio.Event) -> None:
    """WATCHDOG=1 at half the interval systemd asked for: sent only while the loop runs."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return
    interval = int(usec) / 2e6
    while not stopping.is_set():
        sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def _start_http(config: Config, worker: Worker | None):  # type: ignore[no-untyped-def]
    if not config.http_listen:
        return None
    from sipguard.observe.admin import notice_routes
    from sipguard.observe.http import start_http

    def ready() -> tuple[bool, dict[str, object]]:
        if worker is None:
            return True, {"workers": "supervised"}
        pipeline = worker.pipeline
        store_ok = bool(pipeline and getattr(pipeline.store, "healthy", True))
        draining = worker.core is not None and worker.core.draining
        ok = worker.transports is not None and pipeline is not None and not draining and (
            store_ok or config.store_failure == "fail-open")
        return ok, {"listening": worker.transports is not None, "draining": draining, "store_reachable": store_ok,
                    "store_failure": config.store_failure,
                    "policy": pipeline.policy.current.path if pipeline and pipeline.policy else None}

    if worker is not None and worker.pipeline is not None:
        store = worker.pipeline.store
        routes = notice_routes(store)
    elif config.store != "memory":  # the supervisor of several workers: its own store client
        from sipguard.store import open_store

        store = open_store(config.store, config.limits, config.store_timeout)
        await store.start()
        routes = notice_routes(store)
    else:  # several workers on memory stores: nothing shared to put notices in
        store, routes = None, {}
        log.warning("admin notices need a shared store (Redis) when running several workers")
    return await start_http(config, ready=ready, store=store, routes=routes)


def serve(config: Config, workers: int | None = None) -> int:
    """Entry point of ``sipguard serve``."""
    workers = workers or config.workers
    _use_uvloop()
    if workers == 1:
        return asyncio.run(run_worker(config, 0, 1, serve_http=True))
    return _supervise(config, workers)


def check_addresses_free(config: Config) -> None:
    """Refuse to start when a listening address (SIP or HTTP) is taken, in one line naming it.

    The workers bind with SO_REUSEPORT (several share a port), which would let a second
    sipguard, or a restarted one whose old process still runs, share the port silently
    and take half the traffic. A probe socket without SO_REUSEPORT cannot bind where any
    socket is bound, reuseport or not; it is closed before the workers bind."""
    from sipguard.config import split_hostport

    probes = [("listen", str(addr), addr.host, addr.port, socket.SOCK_DGRAM if addr.transport == "udp"
               else socket.SOCK_STREAM) for addr in config.listen]
    if config.http_listen:
        host, port = split_hostport(config.http_listen)
        probes.append(("http.listen", f"http://{config.http_listen}", host, port or 9090, socket.SOCK_STREAM))
    for key, name, host, port, kind in probes:
        try:
            infos = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {name}: {exc}", config.path, key=key) from None
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, kind) as probe:
            if kind == socket.SOCK_STREAM:   # as asyncio binds: connections in TIME_WAIT do not count
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                why = ("already in use: another sipguard or SIP server listens there; stop it, or "
                       "change the address in the config" if exc.errno == errno.EADDRINUSE
                       else (exc.strerror or str(exc)))
                raise ConfigError(f"cannot listen on {name}: {why}", config.path, key=key) from None


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio's loop works too
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _steering_groups(config: Config, workers: int) -> dict[int, list[socket.socket]]:
    """For each UDP listening address, the workers' sockets as one reuseport group with the
    steering program attached (proxy/reuseport.py); made before the first fork and kept by
    the parent, so a restarted worker reads its own socket again. {} where the kernel
    refuses the program: each worker then binds its own socket and steering stays in the
    workers."""
    from sipguard.proxy.reuseport import attach
    from sipguard.proxy.transport import reuseport_group

    groups: dict[int, list[socket.socket]] = {}
    for position, listen in enumerate(config.listen):
        if listen.transport != "udp":
            continue
        try:
            groups[position] = group = reuseport_group(listen, workers)
        except OSError as exc:  # the workers bind it themselves and report it as before
            log.warning("no kernel steering for udp://%s:%s: %s", listen.host, listen.port, exc)
            group = []
        if not group or not attach(group[0], workers):
            for made in groups.values():
                for sock in made:
                    sock.close()
            return {}
    if groups:
        log.info("transaction steering in the kernel for %d UDP address(es)", len(groups))
    return groups


def _supervise(config: Config, workers: int) -> int:
    """Parent of N workers: fork them, restart the ones that die, forward signals."""
    from sipguard.observe.metrics import prepare_multiprocess

    prepare_multiprocess(os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                         or os.path.join(config.base_dir, "var", f"metrics-{os.getpid()}"))
    children: dict[int, int] = {}
    # made before the first fork and kept by the parent, so a restarted worker gets its pair back
    channels = Channels(workers) if config.proxy.steering == "transaction" else None
    groups = _steering_groups(config, workers) if channels is not None else {}

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            code = 1
            try:
                steering = channels.for_worker(index) if channels is not None else None
                socks = {position: group[index] for position, group in groups.items()}
                code = asyncio.run(run_worker(config, index, workers, serve_http=False, steering=steering,
                                              udp_socks=socks))
            except Exception:
                log.exception("worker %d failed", index)
            finally:
                os._exit(code)
        children[pid] = index

    for index in range(workers):
        spawn(index)

    async def parent() -> int:
        from sipguard.observe.metrics import mark_process_dead

        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        loop.add_signal_handler(signal.SIGINT, stopping.set)
        def forward_hup() -> None:
            for pid in children:
                os.kill(pid, signal.SIGHUP)

        loop.add_signal_handler(signal.SIGHUP, forward_hup)
        http = await _start_http(config, None)
        sd_notify(f"READY=1\nSTATUS={workers} workers")
        watchdog = loop.create_task(_watchdog(stopping))
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), 0.5)
            except TimeoutError:
                pass
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                index = children.pop(pid, None)
                mark_process_dead(pid)
                if index is not None and not stopping.is_set():
                    log.error("worker %d (pid %d) exited with %s; restarting", index, pid, status)
                    spawn(index)
        sd_notify("STOPPING=1")
        watchdog.cancel()
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + config.proxy.drain_timeout + 5
        while children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                children.pop(pid, None)
            else:
                await asyncio.sleep(0.05)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        if http is not None:
            await http.aclose()
        return 0

    return asyncio.run(parent())
