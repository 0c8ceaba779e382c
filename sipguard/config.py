"""The sipguard config file (CONTRACT.md, "Config file"): YAML -> one frozen ``Config``.

Every error names the file, the line and the dotted key, and ``load_config`` checks
everything a running process would trip over later (files named in the config exist,
addresses parse, the policy validates), so ``sipguard check-config`` is a real check.
Each subsystem parses its own section (``ShakenConfig.from_section`` ...); this module
owns the proxy's own keys and calls the others, so there is one entry point.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sipguard import yamlconf
from sipguard.addresses import Listen, next_hop_address, parse_listen, split_hostport
from sipguard.detectors import Detectors
from sipguard.errors import ConfigError
from sipguard.observe.http_wire import HttpLimits
from sipguard.tls import TlsConfig
from sipguard.yamlconf import Section

if TYPE_CHECKING:
    from sipguard.policy.model import Redress
    from sipguard.records.measures import UpstreamsConfig
    from sipguard.records.record import TracebackConfig
    from sipguard.shaken.config import ShakenConfig
    from sipguard.shaken.sign import SigningConfig
    from sipguard.store.base import LimitSpec

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TOP_KEYS = ("listen", "mode", "next_hop", "unknown_source", "trusted_proxies", "trunks", "store", "store_failure",
            "store_timeout", "datasets", "shaken", "blocking", "limits", "policy", "traceback", "http",
            "proxy", "log", "workers", "tls", "analytics", "upstreams")
PROXY_KEYS = ("record_route", "max_pending", "max_message_size", "retry_after", "transaction_timeout",
              "instance", "advertise", "steering", "secret_file", "drain_timeout", "shed_delay", "tcp",
              "allocator")
HTTP_KEYS = ("listen", "token_file", "max_connections", "max_body", "read_timeout", "secure_cookie")
TCP_KEYS = ("head_timeout", "idle_timeout", "max_connections", "max_per_source", "fd_reserve")
TRUNK_KEYS = ("id", "role", "sources", "provider", "cps", "next_hop")
PROVIDER_KEYS = ("name", "frn", "rmd", "country", "contact")


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """``proxy.tcp`` in the config (TLS connections are TCP connections here)."""

    head_timeout: float = 10.0      # seconds an unfinished message (or TLS handshake) may take
    idle_timeout: float = 60.0      # seconds without a byte either way before the connection is closed
    max_connections: int = 1000     # inbound connections per worker
    max_per_source: int = 32        # inbound connections per source address
    fd_reserve: int = 64            # descriptors never taken by inbound connections


@dataclass(frozen=True, slots=True)
class Provider:
    name: str | None = None
    frn: str | None = None
    rmd: str | None = None
    country: str | None = None
    contact: str | None = None        # where a traceback goes next (NOC mail, phone): ITG answers


@dataclass(frozen=True, slots=True)
class Trunk:
    id: str
    role: str                         # foreign | domestic
    sources: tuple[IPNetwork, ...]
    provider: Provider = Provider()
    cps: float | None = None
    next_hop: str | None = None


@dataclass(frozen=True, slots=True)
class ProxySettings:
    record_route: bool = False
    max_pending: int = 2000           # INVITEs waiting for a decision before new ones get 503
    max_message_size: int = 65535
    retry_after: int = 5              # seconds, in 503 Retry-After
    transaction_timeout: float = 32.0  # Timer B/F: forget a transaction after this long
    instance: str | None = None       # name in records and logs (default: hostname)
    advertise: str | None = None      # host[:port] for our Via/Record-Route when listening on 0.0.0.0
    steering: str = "transaction"     # workers > 1: transaction (spread by Via branch) | peer (kernel's 4-tuple)
    secret: bytes | None = None       # proxy.secret_file: signs our Record-Route and branches (None: per start)
    drain_timeout: float = 15.0       # SIGTERM: how long transactions in progress may take to end
    shed_delay: float = 0.02          # seconds work may wait (loop lag, UDP queue) before new INVITEs get 503; 0: off
    #                                   (then a share of them: the one that holds the wait at half of it, overload.py)
    tcp: ConnectionSettings = ConnectionSettings()   # stream connection limits (TLS too)
    allocator: str = "auto"           # auto | jemalloc | python: where serve's memory comes from (proxy/allocator.py)


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    decisions: str = "info"           # info | debug | off


@dataclass(frozen=True)
class Config:
    path: str
    base_dir: str
    listen: tuple[Listen, ...]
    mode: str
    next_hop: str
    unknown_source: str
    trunks: tuple[Trunk, ...]
    trusted_proxies: tuple[IPNetwork, ...]
    store: str
    store_failure: str
    store_timeout: float
    datasets: dict[str, str]
    shaken: ShakenConfig
    signing: SigningConfig | None
    redress: Redress
    limits: tuple[LimitSpec, ...]
    policy: str | None
    traceback: TracebackConfig
    http_listen: str | None
    http_token: str | None            # bearer token for /admin and /traceback (http.token_file)
    proxy: ProxySettings
    log: LogSettings
    workers: int = 1
    tls: TlsConfig = field(default_factory=TlsConfig)
    http_limits: HttpLimits = field(default_factory=HttpLimits)   # http.max_connections, max_body, read_timeout
    http_secure_cookie: bool = False  # http.secure_cookie: the console's cookie only over HTTPS (behind a TLS proxy)
    detectors: Detectors = field(default_factory=Detectors)       # analytics.campaign (detectors.py)
    upstreams: UpstreamsConfig = field(default_factory=lambda: _upstreams_default())  # trunk.score refresh
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _upstreams_default() -> UpstreamsConfig:
    from sipguard.records.measures import UpstreamsConfig

    return UpstreamsConfig()


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """What the proxy core reads (proxy/core.py, stateless.py), built by ``of``; each SIGHUP
    hands it a new one (``ProxyCore.reconfigure``)."""

    mode: str
    next_hop: str
    unknown_source: str
    trunks: tuple[Trunk, ...]                  # their next hops and sources: who is a known peer
    trusted_proxies: tuple[IPNetwork, ...]
    record_route: bool
    max_pending: int
    max_message_size: int
    retry_after: int
    transaction_timeout: float
    secret: bytes | None
    hop_addresses: frozenset[str] | None = None   # the next hops resolved (trunks.hop_addresses); None: at use

    @classmethod
    def of(cls, config: Config, hop_addresses: frozenset[str] | None = None) -> CoreSettings:
        p = config.proxy
        return cls(config.mode, config.next_hop, config.unknown_source, config.trunks, config.trusted_proxies,
                   p.record_route, p.max_pending, p.max_message_size, p.retry_after, p.transaction_timeout,
                   p.secret, hop_addresses)


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """What ``Pipeline`` reads once it is built (the store and the verifier are made from the
    whole config by ``Pipeline.create``); each SIGHUP hands it a new one (``reconfigure``)."""

    trunks: tuple[Trunk, ...]
    trusted_proxies: tuple[IPNetwork, ...]
    unknown_source: str
    store_failure: str
    retry_after: int                           # in the 503 of fail-closed
    shaken: ShakenConfig
    signing: SigningConfig | None
    policy: str | None
    redress: Redress
    detectors: Detectors

    @classmethod
    def of(cls, config: Config) -> PipelineSettings:
        return cls(config.trunks, config.trusted_proxies, config.unknown_source, config.store_failure,
                   config.proxy.retry_after, config.shaken, config.signing, config.policy, config.redress,
                   config.detectors)


def load_config(path: str) -> Config:
    """Read and validate a config file; ConfigError names file:line:key on the first problem.

    ConfigError is the only exception a file can cause: yamlconf bounds size, depth, aliases
    and numbers, and what still runs out of stack or memory is refused here as the file's fault.
    """
    try:
        return _load_config(path)
    except ConfigError:
        raise
    except (RecursionError, MemoryError, UnicodeError) as exc:
        raise yamlconf.input_failure(exc, path) from None
    except Exception as exc:   # noqa: BLE001 - a value no check foresaw: still the file's refusal, not a crash
        raise ConfigError(f"could not be loaded ({type(exc).__name__}: {exc}); check the values in this file",
                          path) from exc


def _load_config(path: str) -> Config:
    root = yamlconf.load(path)
    root.check_keys(TOP_KEYS)
    base_dir = os.path.dirname(os.path.abspath(path))

    from sipguard.policy.loader import check_policy
    from sipguard.policy.model import Redress
    from sipguard.records.measures import UpstreamsConfig
    from sipguard.records.record import TracebackConfig
    from sipguard.shaken.config import ShakenConfig
    from sipguard.shaken.sign import SigningConfig
    from sipguard.store.base import parse_limits

    trunks = tuple(_trunk(sec) for sec in root.sections("trunks"))
    _check_unique_trunks(root, trunks)
    shaken_sec = root.section("shaken")
    signing_sec = shaken_sec.section("signing")
    signing = None
    if signing_sec.keys():
        signing = SigningConfig.from_section(_resolved(signing_sec, base_dir, ("key", "cert")))
    blocking = root.section("blocking")
    blocking.check_keys(("redress",))
    limits = parse_limits(root.section("limits"), {t.id: t.cps for t in trunks if t.cps})
    policy = _path(root, "policy", base_dir)
    if policy is not None:
        problems = check_policy(policy, Redress.from_section(root.section("blocking").section("redress")))
        if problems:
            raise problems[0]
    http = root.section("http")
    http.check_keys(HTTP_KEYS)
    datasets = root.section("datasets")
    config = Config(
        path=path,
        base_dir=base_dir,
        listen=tuple(_listen(root)),
        mode=root.choice("mode", ("proxy", "redirect"), default="proxy"),
        next_hop=_next_hop(root, "next_hop"),
        unknown_source=root.choice("unknown_source", ("reject", "allow"), default="reject"),
        trunks=trunks,
        trusted_proxies=_networks(root, "trusted_proxies"),
        store=_store(root),
        store_failure=root.choice("store_failure", ("fail-open", "fail-closed"), default="fail-open"),
        store_timeout=float(root.number("store_timeout", default=0.05, minimum=0.001, maximum=10)),
        datasets={k: _path(datasets, k, base_dir) or "" for k in datasets.keys()},
        shaken=ShakenConfig.from_section(shaken_sec, base_dir),
        signing=signing,
        redress=Redress.from_section(blocking.section("redress")),
        limits=limits,
        policy=policy,
        traceback=TracebackConfig.from_section(root.section("traceback"), base_dir, _store(root)),
        http_listen=http.str("listen", default=None),
        http_token=_http_token(http, base_dir),
        http_secure_cookie=bool(http.bool("secure_cookie", default=False)),
        proxy=_proxy(root.section("proxy"), base_dir),
        log=_log(root.section("log")),
        workers=int(root.int("workers", default=1, minimum=1, maximum=64)),
        tls=TlsConfig.from_section(root.section("tls"), base_dir),
        http_limits=HttpLimits.from_section(http),
        detectors=Detectors.from_section(root.section("analytics")),
        upstreams=UpstreamsConfig.from_section(root.section("upstreams")),
        raw=dict(root.data),
    )
    if any(a.transport == "tls" for a in config.listen) and config.tls.cert is None:
        raise root.error("listen", "a tls:// listen address needs tls.cert and tls.key (our certificate)")
    return config


def _resolved(sec: Section, base_dir: str, keys: tuple[str, ...]) -> Section:
    """A copy of ``sec`` whose file keys are made absolute relative to the config file."""
    data = sec.data.__class__() if hasattr(sec.data, "lines") else {}
    data.update(sec.data)
    for attr in ("lines", "line"):
        if hasattr(sec.data, attr):
            setattr(data, attr, getattr(sec.data, attr))
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and not os.path.isabs(value):
            data[key] = os.path.join(base_dir, value)
    return Section(data, sec.path, sec.prefix)


MIN_TOKEN = 16
MAX_TOKEN_FILE = 4096      # a token is one word; /dev/zero named by mistake must not be read for ever


def _http_token(http: Section, base_dir: str) -> str | None:
    """The admin/traceback bearer token from ``http.token_file``. Beyond loopback one is
    required: /traceback serves call records (CPNI) and /admin changes what is blocked."""
    path = http.file("token_file", base_dir)
    if path is None:
        listen = http.str("listen", default=None)
        if listen is not None and not _loopback(listen):
            raise http.error("listen", "beyond loopback the traceback records and the admin API need a "
                                       "secret: set http.token_file (/metrics, /healthz, /readyz stay open)")
        return None
    try:
        token = yamlconf.read_bounded(path, MAX_TOKEN_FILE).decode("utf-8").strip()
    except ConfigError as exc:
        raise http.error("token_file", f"{exc.message}: {path}") from None
    except UnicodeDecodeError as exc:
        raise http.error("token_file", f"cannot read {path}: {exc}") from None
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise http.error("token_file", f"{path}: the token must be one word of {MIN_TOKEN} characters or more")
    return token


def _loopback(listen: str) -> bool:
    try:
        host = split_hostport(listen)[0]
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _path(sec: Section, key: str, base_dir: str) -> str | None:
    return sec.file(key, base_dir)


def _listen(root: Section) -> list[Listen]:
    values = root.list("listen", default=["udp://127.0.0.1:5060", "tcp://127.0.0.1:5060"], item=str)
    out = []
    for index, value in enumerate(values):
        try:
            out.append(parse_listen(value))
        except ValueError as exc:
            raise ConfigError(str(exc), root.path, root.item_line("listen", index), "listen") from None
    if not out:
        raise root.error("listen", "at least one listen address is needed")
    return out


def _next_hop(sec: Section, key: str, required: bool = True) -> Any:
    value = sec.str(key, default=None if not required else "sip:127.0.0.1:5070")
    if value is None:
        return None
    try:
        next_hop_address(value)
    except ValueError as exc:
        raise sec.error(key, str(exc)) from None
    return value


def _networks(sec: Section, key: str, default: list[str] | None = None) -> tuple[IPNetwork, ...]:
    out = []
    for index, value in enumerate(sec.list(key, default=default if default is not None else [], item=str)):
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(f"{value!r} is not an IP address or CIDR", sec.path,
                              sec.item_line(key, index), sec.dotted(key)) from None
    return tuple(out)


def _trunk(sec: Section) -> Trunk:
    sec.check_keys(TRUNK_KEYS)
    sources = _networks(sec, "sources", default=None)
    if not sources:
        raise sec.error("sources", "a trunk needs at least one source address or CIDR")
    prov = sec.section("provider")
    prov.check_keys(PROVIDER_KEYS)
    provider = Provider(prov.str("name", default=None), prov.str("frn", default=None),
                        prov.str("rmd", default=None), prov.str("country", default=None),
                        prov.str("contact", default=None))
    if provider.frn is not None and not provider.frn.isdigit():
        raise prov.error("frn", f"an FRN is 10 digits, got {provider.frn!r}")
    cps = sec.number("cps", default=None, minimum=0.001)
    return Trunk(id=sec.str("id"), role=sec.choice("role", ("foreign", "domestic"), default="foreign"),
                 sources=sources, provider=provider, cps=float(cps) if cps else None,
                 next_hop=_next_hop(sec, "next_hop", required=False))


def _check_unique_trunks(root: Section, trunks: tuple[Trunk, ...]) -> None:
    seen: set[str] = set()
    for index, trunk in enumerate(trunks):
        if trunk.id in seen:
            raise ConfigError(f"duplicate trunk id {trunk.id!r}", root.path,
                              root.item_line("trunks", index), "trunks")
        seen.add(trunk.id)


def _store(root: Section) -> str:
    value = root.str("store", default="memory")
    if value != "memory" and not value.startswith(("redis://", "rediss://", "redis+sentinel://",
                                                    "redis+cluster://", "unix://")):
        raise root.error("store", f"{value!r}: expected memory or a redis://, rediss://, "
                                  "redis+sentinel:// or redis+cluster:// URL")
    return value


def _proxy(sec: Section, base_dir: str) -> ProxySettings:
    sec.check_keys(PROXY_KEYS)
    return ProxySettings(
        record_route=sec.bool("record_route", default=False),
        max_pending=sec.int("max_pending", default=2000, minimum=1),
        max_message_size=sec.int("max_message_size", default=65535, minimum=1024, maximum=1 << 20),
        retry_after=sec.int("retry_after", default=5, minimum=0),
        transaction_timeout=float(sec.number("transaction_timeout", default=32.0, minimum=1)),
        instance=sec.str("instance", default=None),
        advertise=sec.str("advertise", default=None),
        steering=sec.choice("steering", ("transaction", "peer"), default="transaction"),
        secret=_secret(sec, base_dir),
        drain_timeout=float(sec.number("drain_timeout", default=15.0, minimum=0, maximum=3600)),
        shed_delay=float(sec.number("shed_delay", default=0.02, minimum=0, maximum=10)),
        tcp=_tcp(sec.section("tcp")),
        allocator=sec.choice("allocator", ("auto", "jemalloc", "python"), default="auto"),
    )


def _tcp(sec: Section) -> ConnectionSettings:
    sec.check_keys(TCP_KEYS)
    default = ConnectionSettings()
    return ConnectionSettings(
        head_timeout=float(sec.number("head_timeout", default=default.head_timeout, minimum=0.01, maximum=3600)),
        idle_timeout=float(sec.number("idle_timeout", default=default.idle_timeout, minimum=0.01, maximum=86400)),
        max_connections=sec.int("max_connections", default=default.max_connections, minimum=1),
        max_per_source=sec.int("max_per_source", default=default.max_per_source, minimum=1),
        fd_reserve=sec.int("fd_reserve", default=default.fd_reserve, minimum=0),
    )


MIN_SECRET = 16


def _secret(sec: Section, base_dir: str) -> bytes | None:
    """``proxy.secret_file``: the key that signs sipguard's Record-Route entries and stateless
    branches, so only the dialogs and transactions it relayed are routed back. Every instance
    that may see a dialog's in-dialog requests (a pool behind Kamailio) and every restart needs
    the same one; without the file each start makes its own, and in-dialog requests of dialogs
    set up before a restart are refused."""
    path = sec.file("secret_file", base_dir)
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read(4096).strip()
    except OSError as exc:
        raise sec.error("secret_file", f"cannot read {path}: {exc.strerror}") from None
    if len(data) < MIN_SECRET:
        raise sec.error("secret_file", f"{path} holds {len(data)} bytes; at least {MIN_SECRET} random bytes "
                        "are needed (e.g. head -c 32 /dev/urandom | base64 > secret)")
    return data


def _log(sec: Section) -> LogSettings:
    sec.check_keys(("level", "decisions"))
    return LogSettings(
        level=sec.choice("level", ("debug", "info", "warning", "error"), default="info"),
        decisions=sec.choice("decisions", ("info", "debug", "off"), default="info"),
    )
