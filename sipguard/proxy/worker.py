"""One worker process: transports, proxy core, pipeline, records and metrics assembled,
housekeeping twice a second, SIGHUP reload, SIGTERM drain (``run_worker``). With one worker
it is the whole of ``sipguard serve``; with several, ``supervisor.py`` forks them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from sipguard import native, numbers
from sipguard.clock import SystemClock
from sipguard.config import Config, CoreSettings, PipelineSettings, load_config
from sipguard.errors import ConfigError
from sipguard.observe.decisions import DecisionSink
from sipguard.proxy import allocator
from sipguard.proxy.connlimits import ConnectionLimits
from sipguard.proxy.core import Intercepted, ProxyCore
from sipguard.proxy.gcpacing import GcPacer, tune_gc
from sipguard.proxy.overload import MemoryTrim, OverloadGuard
from sipguard.proxy.steer import Steering, owner_of
from sipguard.proxy.systemd import ping_watchdog, sd_notify
from sipguard.proxy.transport import Receive, Transports
from sipguard.trunks import hop_addresses

if TYPE_CHECKING:
    from sipguard.pipeline import Pipeline

RMD_WATCH_INTERVAL = 30.0     # seconds between two looks at the store's RMD change log
# The parse caches a compaction empties after a burst (overload.MemoryTrim): what they hold
# then was made among the burst's transactions, and would keep their pages from the system.
CACHES = (numbers.clear_cache,)

log = logging.getLogger("sipguard.serve")


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
        self._local: Receive | None = None     # the core's receive behind the overload guard (start)
        self.records: Any = None
        self.metrics: Any = None
        self.instance = config.proxy.instance or f"{socket.gethostname()}/{index}"
        self._watcher: asyncio.Task[None] | None = None
        self._scores: asyncio.Task[None] | None = None      # trunk.score refresh (records/upstreams.py)
        self._scores_stop = asyncio.Event()
        self._rmd_watch: asyncio.Task[None] | None = None
        self.gc = GcPacer()
        self.guard: OverloadGuard | None = None          # overload: new INVITEs answered 503 (overload.py)
        self.trim = MemoryTrim(release=CACHES)   # RSS back after a burst (overload.py)

    async def start(self) -> None:
        """Prepare, then listen: from here on calls are answered."""
        await self.prepare()
        await self.listen()

    async def prepare(self) -> None:
        """Everything but the SIP listeners: metrics, the pipeline and its store, records, the
        background refreshes. ``run_worker`` opens the HTTP listener between this and
        :meth:`listen`, so a worker that answers SIP (a dispatcher's OPTIONS) already serves
        /healthz and /metrics."""
        from sipguard.observe.metrics import Metrics
        from sipguard.pipeline import Pipeline
        from sipguard.records.writer import open_records

        self.metrics = Metrics()
        self.pipeline = await Pipeline.create(self.config, self.clock, metrics=self.metrics)
        self.records = open_records(self.config.store, self.config.traceback, metrics=self.metrics)
        await self.records.start()
        self.trim.release = (*CACHES, self.records.release)   # and the records' SQLite page cache
        self._start_scores()
        if self.index == 0:     # one counter of each change per instance, not one per worker
            self.metrics.watch_upstreams(t.id for t in self.config.trunks)
            self._rmd_watch = asyncio.get_running_loop().create_task(self._watch_rmd())
        if self.config.store == "memory" and self.config.datasets:
            from sipguard.store.datasets import DatasetWatcher

            watcher = DatasetWatcher(self.pipeline.store, self.config.datasets)
            self._watcher = asyncio.get_running_loop().create_task(watcher.watch())

    async def listen(self) -> None:
        """The SIP listeners, with the overload guard and the core in front of the pipeline."""
        assert self.pipeline is not None, "prepare() first"
        proxy = self.config.proxy
        self.transports = Transports(self.config.listen, _not_started, proxy.max_message_size,
                                     proxy.advertise, self.udp_socks, self.config.tls,
                                     ConnectionLimits(proxy.tcp, self._known_peer))
        self.guard = OverloadGuard(proxy.shed_delay, proxy.retry_after, proxy.max_message_size,
                                   self.transports.send_to_source)
        sink = DecisionSink(self.records, self.metrics.decisions, self.instance)
        self.core = ProxyCore(CoreSettings.of(self.config), self.pipeline, self.transports, sink.on_outcome)
        # every message received: the overload guard (new INVITEs and ACKs only), steering (a
        # request on a listening UDP socket may belong to another worker's transaction:
        # steer.py), the core; compiled callables calling each other (core.Intercepted)
        self.guard.live = self._in_transaction
        self._local = Intercepted(self.guard.intercept, self.core.receive)
        steered = self.steering.wrap(self.core.receive) if self.steering is not None else self.core.receive
        self.transports.receive = Intercepted(self.guard.intercept, steered)
        await self.transports.start(reuse_port=self.workers > 1 or sys.platform == "linux")
        if self.steering is not None:
            await self.steering.start(self._steered_in)
        self.guard.start(self._queues())
        self.guard.watch_store(getattr(self.pipeline.store, "waiting", None))
        self.guard.watch_records(self.records.backlog)

    def _in_transaction(self, data: bytes, via: str) -> bool:
        """For the overload guard: is this INVITE one a live transaction answers? Its own
        core's, or (steering) another worker's: that one's guard asks its core once the
        request is handed over, so it is never shed here."""
        if self.steering is not None:
            owner = owner_of(data, self.workers)
            if owner is not None and owner != self.index:
                return True
        core = self.core
        return core is None or core.in_transaction(via)

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

    def begin_stop(self) -> None:
        """SIGTERM/SIGINT: from this moment new INVITEs get 503 + Retry-After; the drain itself
        (``stop``) runs once the housekeeping loop has seen ``stopping``."""
        if self.core is not None:
            self.core.draining = True
        self.stopping.set()

    def _steered_in(self, data: bytes, source: tuple[str, int], listen_index: int) -> None:
        """A request another worker received for a transaction this one owns: handled as if
        it had arrived here, answered from this worker's copy of the same listening socket."""
        assert self._local is not None and self.transports is not None
        udp = self.transports.udp
        conn = udp[listen_index] if 0 <= listen_index < len(udp) else None
        self._local(data, source, "udp", conn)

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
            self.trim.tick(len(self.core.txs))
            self.export()

    def export(self) -> None:
        """Every count and level to the metrics (a housekeeping tick, and the last at stop)."""
        self.metrics.export(core=self.core, transports=self.transports, guard=self.guard,
                            steering=self.steering, pipeline=self.pipeline, records=self.records,
                            pacer=self.gc)

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
        # next hops given as names are resolved here, off the loop (a slow DNS answer must not
        # stop calls), and before anything is swapped, so no message sees half a reload
        hops = await asyncio.to_thread(hop_addresses, config)
        self.pipeline.reconfigure(PipelineSettings.of(config))
        if self.core is not None:   # after the pipeline: it shares the pipeline's trunk table
            self.core.reconfigure(CoreSettings.of(config, hops))
        self.pipeline.store.limits = config.limits   # counts so far stay: keyed by limit name
        if self.guard is not None:
            self.guard.reconfigure(config.proxy.shed_delay, config.proxy.retry_after)
        if self.transports is not None:  # files renewed in place (same paths) count too
            if self.transports.limits is not None:
                self.transports.limits.reconfigure(config.proxy.tcp)
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
        if self.metrics is not None:   # what was counted since the last tick (SIGTERM: nothing lost)
            self.export()
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


def _not_started(data: bytes, source: tuple[str, int], transport: str, conn: object) -> None:
    """The transports' receive until ``Worker.start`` has made the core (nothing listens yet)."""


def restart_keys(old: Config, new: Config) -> list[str]:
    """The changed keys a running process cannot apply (each is named in the reload warning);
    everything else (next_hop, mode, trunks, trusted_proxies, unknown_source, every other
    proxy.* key incl. shed_delay, retry_after and proxy.tcp, policy, shaken, limits, TLS
    certificates) applies to the messages and connections that follow."""
    checks = (("listen", old.listen != new.listen), ("store", old.store != new.store),
              ("workers", old.workers != new.workers),
              ("proxy.steering", old.proxy.steering != new.proxy.steering),
              ("proxy.max_message_size", old.proxy.max_message_size != new.proxy.max_message_size),
              ("proxy.advertise", old.proxy.advertise != new.proxy.advertise),
              ("proxy.allocator", old.proxy.allocator != new.proxy.allocator),
              ("http.listen", old.http_listen != new.http_listen),
              ("http.token_file", old.http_token != new.http_token),
              ("http.max_connections", old.http_limits.max_connections != new.http_limits.max_connections),
              ("http.max_body", old.http_limits.max_body != new.http_limits.max_body),
              ("http.read_timeout", old.http_limits.read_timeout != new.http_limits.read_timeout),
              ("traceback", old.traceback != new.traceback))
    return [key for key, changed in checks if changed]


async def run_worker(config: Config, index: int, workers: int, serve_http: bool,
                     steering: Steering | None = None, udp_socks: dict[int, socket.socket] | None = None) -> int:
    loop = asyncio.get_running_loop()
    worker = Worker(config, index, workers, steering, udp_socks)
    loop.add_signal_handler(signal.SIGTERM, worker.begin_stop)
    loop.add_signal_handler(signal.SIGINT, worker.begin_stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: setattr(worker, "reload_requested", True))
    await worker.prepare()
    http = await start_http(config, worker) if serve_http else None   # /readyz: not listening yet
    tune_gc()
    await worker.listen()
    log.info("sipguard worker %d listening on %s (mode %s, store %s, hot path %s, allocator %s)", index,
             ", ".join(str(addr) for addr in config.listen), config.mode, config.store, native.describe(),
             allocator.describe())
    if workers == 1:
        sd_notify("READY=1\nSTATUS=listening")
    watchdog = loop.create_task(ping_watchdog(worker.stopping)) if workers == 1 else None
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


async def start_http(config: Config, worker: Worker | None,  # type: ignore[no-untyped-def]
                     sock: socket.socket | None = None):
    """The HTTP listener (/metrics, /healthz, /readyz, admin) of one worker, or of the supervisor
    of several (``worker`` None, ``sock`` bound before the fork); None when http.listen is not set."""
    if not config.http_listen:
        return None
    from sipguard.observe.admin import list_routes, notice_routes
    from sipguard.observe.http import start_http as listen

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
        routes = {**notice_routes(store), **list_routes(store)}
    elif config.store != "memory":  # the supervisor of several workers: its own store client
        from sipguard.store import open_store

        store = open_store(config.store, config.limits, config.store_timeout)
        await store.start()
        routes = {**notice_routes(store), **list_routes(store)}
    else:  # several workers on memory stores: nothing shared to put notices in
        store, routes = None, {}
        log.warning("admin notices and lists need a shared store (Redis) when running several workers")
    return await listen(config, ready=ready, store=store, routes=routes, sock=sock)
