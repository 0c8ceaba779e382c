"""SIP over TLS (RFC 3261 section 26, RFC 5630): the ``tls:`` config section and its contexts.

A ``tls://HOST:PORT`` listen address takes TLS connections from the trunks (port 5061 by
default); a next hop ``sips:`` URI or ``;transport=tls`` is reached over TLS. What arrives
over TLS is framed and handled like TCP; Via says ``SIP/2.0/TLS``.

    tls:
      cert: certs/sipguard.pem        # our certificate chain (PEM): needed to listen on tls://
      key: certs/sipguard.key
      ca: certs/carriers-ca.pem       # who we trust: peers' CAs (null: the system's)
      verify_client: false            # true: a trunk must present a certificate signed by ca
      verify_server: true             # the next hop's certificate is checked against ca
      server_name: sbc.example.net    # the next hop's name: SNI, and its certificate must match

TLS 1.2 at least. Certificates are read at start (``check-config`` loads them) and again on
SIGHUP, renewed in place or not: connections made after the reload get the new ones, open
ones keep theirs (``Transports.reload_tls``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from sipguard.yamlconf import Section

TLS_KEYS = ("cert", "key", "ca", "verify_client", "verify_server", "server_name")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    verify_client: bool = False
    verify_server: bool = True
    server_name: str | None = None

    @classmethod
    def from_section(cls, sec: Section, base_dir: str) -> TlsConfig:
        sec.check_keys(TLS_KEYS)
        cfg = cls(cert=sec.file("cert", base_dir), key=sec.file("key", base_dir), ca=sec.file("ca", base_dir),
                  verify_client=sec.bool("verify_client", default=False),
                  verify_server=sec.bool("verify_server", default=True),
                  server_name=sec.str("server_name", default=None))
        if (cfg.cert is None) != (cfg.key is None):
            raise sec.error("cert" if cfg.cert is None else "key", "cert and key go together")
        if cfg.verify_client and cfg.cert is None:
            raise sec.error("verify_client", "checking clients needs our own cert and key")
        # the files are tried now, so a bad one is a config error and not a failed call
        for key, build in (("cert", server_context if cfg.cert else None),
                           ("ca", client_context if cfg.ca or cfg.cert else None)):
            if build is None:
                continue
            try:
                build(cfg)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise sec.error(key, f"cannot use it for TLS: {exc}") from None
        return cfg


def server_context(cfg: TlsConfig) -> ssl.SSLContext:
    """For tls:// listen addresses: our certificate; the trunks' when verify_client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert is None or cfg.key is None:
        raise ValueError("tls.cert and tls.key are needed to listen on tls://")
    ctx.load_cert_chain(cfg.cert, cfg.key)
    if cfg.verify_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cfg.ca:
            ctx.load_verify_locations(cfg.ca)
        else:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return ctx


def client_context(cfg: TlsConfig) -> ssl.SSLContext:
    """For next hops over TLS: their certificate checked against ca (unless verify_server is
    false), their name against server_name when given; ours presented when configured."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.verify_server:
        ctx.check_hostname = cfg.server_name is not None
        if cfg.ca:
            ctx.load_verify_locations(cfg.ca)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cfg.cert and cfg.key:
        ctx.load_cert_chain(cfg.cert, cfg.key)
    return ctx
