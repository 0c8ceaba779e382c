"""The `shaken:` section of the config file, as frozen values the verifier binds once.

Parses trust anchors, the iat window, the x5u fetch rules and the CRL mode (CONTRACT.md,
"Config file"). The `signing` sub-key belongs to the signer (sign.py) and is skipped here.
Every bad value is a ConfigError naming file:line:key; nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from sipguard.errors import ConfigError
from sipguard.shaken.reasons import LENIENT_PARAMS
from sipguard.yamlconf import Section

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CRL_FAILURE_MODES = ("fail-open", "fail-closed")


@dataclass(frozen=True, slots=True)
class X5uConfig:
    """How certificates (and CRLs) are downloaded: the SSRF-relevant rules live here."""

    timeout: float = 2.0
    ports: tuple[int, ...] = (443, 8443)
    allow_http: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()
    tls_ca_bundle: str | None = None
    max_bytes: int = 65536
    cache_size: int = 10000
    negative_ttl: float = 30.0
    stale_grace: float = 3600.0  # a good certificate past its cache lifetime: used while refreshed
    trunk_fetch_rate: float = 10.0   # downloads of new x5u URLs a trunk may start per second
    trunk_fetch_burst: int = 100     # ... and at once (a cold cache after a restart)


@dataclass(frozen=True, slots=True)
class CrlConfig:
    enabled: bool = True
    failure: str = "fail-open"  # fail-open | fail-closed


@dataclass(frozen=True, slots=True)
class TrustListConfig:
    """Where `sipguard trust update` gets the STI-PA's list of STI-CAs, and what must sign it."""

    url: str | None = None
    sti_pa_root: str | None = None  # PEM: the STI-PA root the list's signer chains to


@dataclass(frozen=True, slots=True)
class ShakenConfig:
    trust_anchors: str | None = None
    iat_max_age: int = 60
    iat_max_future: int = 5
    x5u: X5uConfig = field(default_factory=X5uConfig)
    crl: CrlConfig = field(default_factory=CrlConfig)
    # Identity header parameters whose absence is tolerated (shaken.identity.lenient): none by
    # default, as ATIS-1000074 requires `alg` and `ppt` on a SHAKEN Identity header
    identity_lenient: frozenset[str] = frozenset()
    # Identity header values a call may carry (shaken.identity.max_headers): a SHAKEN one, a
    # div per retarget, an rcd; a call with more fails with too-many-identity, unverified
    max_identity: int = 8
    # PASSporT replay detection (shaken.replay.enabled): the seen-set of verified signatures
    replay: bool = True
    # download content an rcd PASSporT names by URL (shaken.rcd.fetch) to check its rcdi digest:
    # off by default (a stranger's URL); on, with the x5u rules (SSRF guard, ports, size, timeout)
    rcd_fetch: bool = False
    trust_list: TrustListConfig = field(default_factory=TrustListConfig)

    @classmethod
    def from_section(cls, sec: Section, base_dir: str) -> ShakenConfig:
        """Build from the `shaken:` section; relative paths are resolved against base_dir."""
        sec.check_keys(("trust_anchors", "iat_max_age", "iat_max_future", "x5u", "crl", "signing", "identity",
                        "trust_list", "replay", "rcd"))
        anchors = sec.str("trust_anchors", default=None)
        if anchors is not None:
            anchors = _resolve(base_dir, anchors)
            _check_anchors(sec, anchors)
        return cls(
            trust_anchors=anchors,
            iat_max_age=sec.int("iat_max_age", default=60, minimum=1),
            iat_max_future=sec.int("iat_max_future", default=5, minimum=0),
            x5u=x5u_config(sec.section("x5u"), base_dir),
            crl=_crl_config(sec.section("crl")),
            identity_lenient=_identity_lenient(sec.section("identity")),
            max_identity=sec.section("identity").int("max_headers", default=8, minimum=1, maximum=32),
            replay=_replay(sec.section("replay")),
            rcd_fetch=_rcd_fetch(sec.section("rcd")),
            trust_list=trust_list_config(sec.section("trust_list"), base_dir),
        )


def _resolve(base_dir: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


def x5u_config(sec: Section, base_dir: str) -> X5uConfig:
    sec.check_keys(("timeout", "ports", "allow_http", "allow_networks", "allow_private", "tls_ca_bundle",
                    "max_bytes", "cache_size", "negative_ttl", "stale_grace", "trunk_fetch_rate",
                    "trunk_fetch_burst"))
    ports: list[int] = sec.list("ports", default=[443, 8443], item=int)
    for index, port in enumerate(ports):
        if not 0 < port < 65536:
            raise ConfigError(f"item {index + 1}: port {port} is not between 1 and 65535",
                              sec.path, sec.item_line("ports", index), sec.dotted("ports"))
    # Imported here: x5u.py imports this module for X5uConfig.
    from sipguard.shaken.x5u import network_special_use

    allow_private = sec.bool("allow_private", default=False)
    networks: list[IPNetwork] = []
    for index, text in enumerate(sec.list("allow_networks", default=[], item=str)):
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(f"item {index + 1}: {text!r} is not an IP network like 127.0.0.0/8",
                              sec.path, sec.item_line("allow_networks", index),
                              sec.dotted("allow_networks")) from None
        why = network_special_use(net)
        if why is not None and not allow_private:
            # the demo's loopback exemption copied into production: any caller's x5u could make
            # sipguard connect inside the network, on any port (SSRF)
            raise ConfigError(f"item {index + 1}: {text} holds special-use addresses ({why}); exempting "
                              "them from the x5u guard lets any caller make sipguard connect there. "
                              "Remove it, or for a lab or demo only set shaken.x5u.allow_private: true",
                              sec.path, sec.item_line("allow_networks", index),
                              sec.dotted("allow_networks"))
        networks.append(net)
    bundle = sec.str("tls_ca_bundle", default=None)
    if bundle is not None:
        bundle = _resolve(base_dir, bundle)
        if not os.path.exists(bundle):
            raise sec.error("tls_ca_bundle", f"file not found: {bundle}")
    return X5uConfig(
        timeout=float(sec.number("timeout", default=2.0, minimum=0.01, maximum=60)),
        ports=tuple(ports),
        allow_http=sec.bool("allow_http", default=False),
        allow_networks=tuple(networks),
        tls_ca_bundle=bundle,
        max_bytes=sec.int("max_bytes", default=65536, minimum=1024, maximum=16 * 1024 * 1024),
        cache_size=sec.int("cache_size", default=10000, minimum=1),
        negative_ttl=float(sec.number("negative_ttl", default=30.0, minimum=0)),
        stale_grace=float(sec.number("stale_grace", default=3600.0, minimum=0, maximum=7 * 86400)),
        trunk_fetch_rate=float(sec.number("trunk_fetch_rate", default=10.0, minimum=0, maximum=100000)),
        trunk_fetch_burst=sec.int("trunk_fetch_burst", default=100, minimum=1, maximum=1000000),
    )


def trust_list_config(sec: Section, base_dir: str) -> TrustListConfig:
    sec.check_keys(("url", "sti_pa_root"))
    url = sec.str("url", default=None)
    if url is not None and not url.startswith(("https://", "http://")):
        raise sec.error("url", f"{url!r} is not an http(s) URL of the STI-PA's CA list")
    root = sec.str("sti_pa_root", default=None)
    if root is not None:
        root = _resolve(base_dir, root)
        if not os.path.exists(root):
            raise sec.error("sti_pa_root", f"file not found: {root}")
        from sipguard.shaken.certs import TrustStoreError, load_trust_anchors

        try:
            load_trust_anchors(root)
        except TrustStoreError as exc:
            raise sec.error("sti_pa_root", str(exc)) from None
    if url is not None and root is None:
        raise sec.error("url", "a list fetched from a URL must be signed: set shaken.trust_list.sti_pa_root "
                               "(the STI-PA root certificate, PEM)")
    return TrustListConfig(url, root)


def _rcd_fetch(sec: Section) -> bool:
    sec.check_keys(("fetch",))
    return bool(sec.bool("fetch", default=False))


def _replay(sec: Section) -> bool:
    sec.check_keys(("enabled",))
    return bool(sec.bool("enabled", default=True))


def _identity_lenient(sec: Section) -> frozenset[str]:
    sec.check_keys(("lenient", "max_headers"))
    names: list[str] = sec.list("lenient", default=[], item=str)
    for index, name in enumerate(names):
        if name not in LENIENT_PARAMS:
            why = " (RFC 8224 makes info mandatory: it names the certificate)" if name == "info" else ""
            raise ConfigError(f"item {index + 1}: {name!r} cannot be made optional{why}; "
                              f"use one of {', '.join(LENIENT_PARAMS)}",
                              sec.path, sec.item_line("lenient", index), sec.dotted("lenient"))
    return frozenset(names)


def _crl_config(sec: Section) -> CrlConfig:
    sec.check_keys(("enabled", "failure"))
    return CrlConfig(enabled=sec.bool("enabled", default=True),
                     failure=sec.choice("failure", CRL_FAILURE_MODES, default="fail-open"))


def _check_anchors(sec: Section, path: str) -> None:
    """Fail at startup, not on the first call: an empty trust store rejects everything."""
    # Imported here so that parsing a config without anchors never loads the x509 stack.
    from sipguard.shaken.certs import TrustStoreError, load_trust_anchors

    if not os.path.exists(path):
        raise sec.error("trust_anchors", f"file or folder not found: {path}")
    try:
        load_trust_anchors(path)
    except TrustStoreError as exc:
        raise sec.error("trust_anchors", str(exc)) from None
