"""Addresses as the config writes them: ``udp://HOST:PORT`` listen addresses, ``host:port``
and next-hop ``sip:``/``sips:`` URIs. Pure parsing, no sockets and no DNS: used by the config
(to check them), by the proxy (to send) and by the pipeline (X-Sipguard-Source)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Listen:
    transport: str   # udp | tcp | tls
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_listen(value: str) -> Listen:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("udp", "tcp", "tls"):
        raise ValueError(f"{value!r}: expected udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
    host, port = split_hostport(rest)
    if port is None:
        port = 5061 if scheme == "tls" else 5060
    return Listen(scheme, host, port)


def split_hostport(text: str) -> tuple[str, int | None]:
    """'1.2.3.4:5060', '[::1]:5060', 'host' -> (host, port). IPv6 hosts come back bare."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"{text!r}: no host")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: bad port {port_text!r}")
        return host, int(port_text)
    return host, None


def next_hop_address(uri: str) -> tuple[str, int, str]:
    """'sip:10.0.0.1:5070;transport=tcp' -> ('10.0.0.1', 5070, 'udp'|'tcp'|'tls'); a sips: URI
    is TLS (port 5061 unless given). Only literal IPs and names resolvable at start; SIP URIs
    with a user part are accepted (the user is ignored)."""
    if not uri.startswith(("sip:", "sips:")):
        raise ValueError(f"{uri!r}: next hop must be a sip: URI, e.g. sip:10.0.0.5:5060")
    scheme, rest = uri.split(":", 1)
    rest, _, params = rest.partition(";")
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    host, port = split_hostport(rest)
    transport = "tls" if scheme == "sips" else "udp"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.lower() == "transport" and value:
            transport = value.lower()
    if transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"{uri!r}: transport must be udp, tcp or tls")
    if scheme == "sips" and transport != "tls":
        raise ValueError(f"{uri!r}: a sips: URI is reached over TLS only")
    return host, port or (5061 if transport == "tls" else 5060), transport
