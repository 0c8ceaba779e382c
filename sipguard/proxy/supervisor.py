"""``sipguard serve``: the event loop, and with ``--workers N`` the parent of N workers.

One worker: everything runs in this process (``worker.run_worker``). ``--workers N``: the
parent forks N workers that each bind the listening ports with SO_REUSEPORT and run their own
pipeline; the parent serves HTTP (/metrics aggregated over workers, /healthz, /readyz, admin),
forwards SIGHUP and SIGTERM, and restarts a worker that dies. SIGTERM drains: new INVITEs get
503 while decisions in flight finish (bounded), records are flushed, then the process exits.
(uvicorn splits its server and ``supervisors/multiprocess.py`` the same way.)
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import time

from sipguard.addresses import split_hostport
from sipguard.config import Config
from sipguard.errors import ConfigError
from sipguard.proxy.steer import Channels
from sipguard.proxy.systemd import ping_watchdog, sd_notify
from sipguard.proxy.worker import run_worker, start_http

log = logging.getLogger("sipguard.serve")


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

    # bound before the first fork: /healthz and /metrics accept from the moment a worker
    # answers SIP (connections wait in the backlog until parent() serves them)
    from sipguard.observe.http import bind_http

    http_sock = bind_http(config)

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            if http_sock is not None:
                http_sock.close()
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
                logging.shutdown()   # pending decision lines out: os._exit skips atexit
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
        http = await start_http(config, None, http_sock)
        sd_notify(f"READY=1\nSTATUS={workers} workers")
        watchdog = loop.create_task(ping_watchdog(stopping))
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
