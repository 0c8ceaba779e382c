"""ASYNC EDGE: download x5u certificates and CRLs, guarded against SSRF and slow servers.

A minimal HTTP/1.1 GET client on asyncio streams (no new dependency, never blocks the loop).
Rules, each one a lesson from another stack (research/anchors-shaken.md):
- https only by default, ports 443/8443 (Asterisk #1271), no userinfo or fragment;
- the host is resolved with loop.getaddrinfo and every special-use address (private, loopback,
  link-local, CGNAT, multicast, reserved, documentation, unspecified; IPv6 outside 2000::/3)
  is refused unless inside `allow_networks` (AST-2022-002); an address that carries an IPv4
  address (IPv4-mapped, -compatible, SIIT, NAT64, 6to4, Teredo) is judged by that IPv4 address,
  and the translation ranges are refused unless allowed too, because a translator would carry
  the connection to the IPv4 address inside; we connect to the address we checked, so a second
  DNS answer cannot swap it (rebinding);
- no redirects (a 3xx is a failure), a body cap (AST-2022-001) and one deadline for
  connect + request + body;
- the HTTPS trust (tls_ca_bundle, web PKI) is not the STI trust anchors.
Caching, single flight and the breaker are the Verifier's job, not this module's: a FetchError
says whether the host itself failed (`host_down`: no connection, timeout, 5xx) or answered that
this one URL does not exist (`status` 404/410), so one host is not judged by one bad URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from sipguard.shaken.config import X5uConfig
from sipguard.shaken.reasons import Reason

MAX_HEADER_BYTES = 16384
MAX_URL_LENGTH = 2048  # real x5u URLs are < 200 characters; each failed one is remembered
USER_AGENT = "sipguard-sti-vs"
_MAX_AGE_RE = re.compile(r"(?:^|[,\s])(?:s-maxage|max-age)\s*=\s*\"?(\d+)", re.IGNORECASE)


class FetchError(Exception):
    """A download that did not produce a body; `reason` is x5u-refused or x5u-fetch-failed.

    `host_down`: the host could not serve anyone (resolution or connection failed, timeout, 5xx);
    only these open its circuit breaker. `status`: the HTTP status when the server answered.
    """

    def __init__(self, reason: Reason, detail: str, *, host_down: bool = False, status: int = 0) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.host_down = host_down
        self.status = status

    @property
    def gone(self) -> bool:
        """404/410: a fact about this URL, not about its host."""
        return self.status in (404, 410)


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes
    max_age: float | None = None  # freshness the server declared (Cache-Control / Expires)


class CertFetcher(Protocol):
    """What the Verifier needs from a downloader (HTTP here; a file map in replay and tests)."""

    async def fetch(self, url: str, *, crl: bool = False) -> Fetched:
        """The body at url, or FetchError. crl=True: a CRL, for which http:// is normal."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url: str, cfg: X5uConfig, *, crl: bool = False) -> Target:
    """Apply the URL rules that need no DNS; FetchError(x5u-refused) when one is broken."""
    if len(url) > MAX_URL_LENGTH:
        raise FetchError(Reason.X5U_REFUSED, f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError(Reason.X5U_REFUSED, "not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or (scheme == "http" and not (cfg.allow_http or crl)):
        raise FetchError(Reason.X5U_REFUSED, f"scheme {scheme or '(none)'!r} not allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise FetchError(Reason.X5U_REFUSED, "userinfo not allowed")
    if parts.fragment or not parts.hostname:
        raise FetchError(Reason.X5U_REFUSED, "fragment or missing host")
    if any(ch in url for ch in " \r\n\t"):
        raise FetchError(Reason.X5U_REFUSED, "whitespace in URL")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IANA special-purpose registries (RFC 6890 and later) plus multicast and the reserved class E:
# nothing here serves certificates to the public. Python's is_global misses several of them
# (6to4, NAT64, the IPv4-compatible range, ...), so the table is ours.
SPECIAL_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), name) for net, name in (
    ("0.0.0.0/8", "this network"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "CGNAT shared"),
    ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"), ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"), ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"), ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"), ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved")))
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")  # the rest (::/8, fc00::/7, ff00::/8 ...) is special
SPECIAL_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), name) for net, name in (
    ("2001::/32", "Teredo"), ("2001::/23", "IETF protocol assignments"), ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"), ("3fff::/20", "documentation")))
# IPv6 ranges whose addresses carry an IPv4 address that a translator or tunnel would reach
TRANSLATION_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), name) for net, name in (
    ("::ffff:0:0:0/96", "SIIT"), ("64:ff9b::/96", "NAT64"), ("64:ff9b:1::/48", "local NAT64"),
    ("2002::/16", "6to4"), ("2001::/32", "Teredo"), ("::/96", "IPv4-compatible")))


def embedded_ipv4(addr: ipaddress.IPv6Address) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """(range name, the IPv4 addresses inside) for an address of a translation range, else None."""
    name = next((name for net, name in TRANSLATION_V6 if addr in net), None)
    if name is None:
        return None
    packed = addr.packed
    inside: tuple[ipaddress.IPv4Address, ...]
    if name == "6to4":
        inside = (ipaddress.IPv4Address(packed[2:6]),)
    elif name == "Teredo":  # server in bits 32-63, the client obfuscated (inverted) in the last 32
        inside = (ipaddress.IPv4Address(packed[4:8]),
                  ipaddress.IPv4Address(bytes(b ^ 0xFF for b in packed[12:16])))
    elif name == "local NAT64":  # RFC 6052 /48: two octets, the u octet (bits 64-71), two more
        inside = (ipaddress.IPv4Address(packed[6:8] + packed[9:11]),)
    else:
        inside = (ipaddress.IPv4Address(packed[12:16]),)
    return name, inside


def special_use(addr: IPAddress) -> str | None:
    """Why addr is not a public unicast address (a few words), or None when it is one.
    An IPv4-mapped address is its IPv4 address; translation ranges are special themselves."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        for net4, name in SPECIAL_V4:
            if addr in net4:
                return f"{name} ({net4})"
        return None
    if addr.is_loopback or addr.is_unspecified:
        return "loopback" if addr.is_loopback else "unspecified"
    carried = embedded_ipv4(addr)
    if carried is not None:
        return f"{carried[0]} translation (carries {', '.join(map(str, carried[1]))})"
    if addr not in GLOBAL_UNICAST_V6:
        return "not global unicast (outside 2000::/3)"
    for net6, name in SPECIAL_V6:
        if addr in net6:
            return f"{name} ({net6})"
    return None if addr.is_global else "special-use"


def network_special_use(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """Why a configured network reaches special-use addresses, or None when it holds none."""
    ranges: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]
    if isinstance(net, ipaddress.IPv4Network):
        ranges = SPECIAL_V4
    else:
        if not net.subnet_of(GLOBAL_UNICAST_V6):
            return "not inside global unicast 2000::/3"
        ranges = SPECIAL_V6
    for special, name in ranges:
        if net.overlaps(special):  # type: ignore[arg-type]  # same family by construction
            return f"{name} ({special})"
    return None


def address_refusal(addr: IPAddress, cfg: X5uConfig) -> str | None:
    """None when addr may be fetched from, else why not. Public unicast only, unless the
    operator allowed the network explicitly; an address of a translation range must be allowed
    itself and its IPv4 address(es) too, judged by the IPv4 rules."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        else:
            carried = embedded_ipv4(addr)
            if carried is not None:
                if not any(addr in net for net in cfg.allow_networks):
                    return f"address {addr} is in a special-use range: {special_use(addr)}"
                for inner in carried[1]:
                    why = address_refusal(inner, cfg)
                    if why is not None:
                        return f"{why} (inside {carried[0]} address {addr})"
                return None
    if any(addr in net for net in cfg.allow_networks):
        return None
    why = special_use(addr)
    if why is None and not addr.is_multicast:
        return None
    return f"address {addr} is in a special-use range: {why or 'multicast'}"


def address_allowed(addr: IPAddress, cfg: X5uConfig) -> bool:
    """Public unicast only, unless the operator allowed the network explicitly."""
    return address_refusal(addr, cfg) is None


def port_allowed(target: Target, addr: IPAddress,
                 cfg: X5uConfig, crl: bool) -> bool:
    if target.port in cfg.ports:
        return True
    if crl and target.port in (80, 443):
        return True
    if target.scheme == "http" and cfg.allow_http and target.port == 80:
        return True
    # a test server on a loopback port: the operator allowed the network, so any port
    return any(addr in net for net in cfg.allow_networks)


def max_age_of(headers: dict[str, str]) -> float | None:
    """Seconds of freshness the server declared: Cache-Control max-age, else Expires - Date."""
    match = _MAX_AGE_RE.search(headers.get("cache-control", ""))
    if match:
        return float(match.group(1))
    expires, date = headers.get("expires"), headers.get("date")
    if expires and date:
        try:
            delta = (email.utils.parsedate_to_datetime(expires)
                     - email.utils.parsedate_to_datetime(date)).total_seconds()
        except (TypeError, ValueError):
            return None
        return max(0.0, delta)
    return None


class HttpFetcher:
    """The production CertFetcher. One instance per worker; holds the TLS context."""

    def __init__(self, cfg: X5uConfig) -> None:
        self.cfg = cfg
        self._tls = ssl.create_default_context(cafile=cfg.tls_ca_bundle)
        self.requests = 0

    async def aclose(self) -> None:
        return None

    async def fetch(self, url: str, *, crl: bool = False) -> Fetched:
        target = parse_target(url, self.cfg, crl=crl)
        try:
            async with asyncio.timeout(self.cfg.timeout):
                addr = await self._resolve(target, crl)
                return await self._get(target, addr)
        except TimeoutError:
            raise FetchError(Reason.X5U_FETCH_FAILED, f"timeout after {self.cfg.timeout} s",
                             host_down=True) from None
        except (OSError, ssl.SSLError) as exc:
            raise FetchError(Reason.X5U_FETCH_FAILED, f"connection failed: {exc}", host_down=True) from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise FetchError(Reason.X5U_FETCH_FAILED, f"bad HTTP response: {exc}") from None

    async def _resolve(self, target: Target, crl: bool) -> str:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError(Reason.X5U_FETCH_FAILED, f"cannot resolve {target.host}: {exc}",
                             host_down=True) from None
        refused = ""
        for info in infos:
            text = str(info[4][0]).split("%", 1)[0]
            addr = ipaddress.ip_address(text)
            why = address_refusal(addr, self.cfg)
            if why is not None:
                refused = why
            elif not port_allowed(target, addr, self.cfg, crl):
                refused = f"port {target.port} not allowed"
            else:
                return text
        raise FetchError(Reason.X5U_REFUSED, refused or "no address")

    async def _get(self, target: Target, addr: str) -> Fetched:
        tls = self._tls if target.scheme == "https" else None
        reader, writer = await asyncio.open_connection(
            addr, target.port, ssl=tls, server_hostname=target.host if tls else None,
            limit=MAX_HEADER_BYTES)
        self.requests += 1
        try:
            writer.write((f"GET {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
                          f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n")
                         .encode("ascii", "strict"))
            await writer.drain()
            status, headers = await _read_head(reader)
            if 300 <= status < 400:
                raise FetchError(Reason.X5U_FETCH_FAILED, f"redirect ({status}) not followed", status=status)
            if status != 200:
                raise FetchError(Reason.X5U_FETCH_FAILED, f"HTTP status {status}", status=status,
                                 host_down=status >= 500)
            body = await _read_body(reader, headers, self.cfg.max_bytes)
            return Fetched(body, max_age_of(headers))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") \
            or not (status_line[1].isascii() and status_line[1].isdigit()):
        raise ValueError(f"bad status line {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError("bad header line")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(status_line[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], cap: int) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader, cap)
    length = headers.get("content-length")
    if length is not None:
        if not (length.strip().isascii() and length.strip().isdigit()):
            raise ValueError("bad Content-Length")
        size = int(length)
        if size > cap:
            raise FetchError(Reason.X5U_FETCH_FAILED, f"body of {size} bytes exceeds {cap}")
        return await reader.readexactly(size)
    body = await reader.read(cap + 1)
    while len(body) <= cap:
        more = await reader.read(cap + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > cap:
        raise FetchError(Reason.X5U_FETCH_FAILED, f"body exceeds {cap} bytes")
    return body


async def _read_chunked(reader: asyncio.StreamReader, cap: int) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            return bytes(body)
        if len(body) + size > cap:
            raise FetchError(Reason.X5U_FETCH_FAILED, f"body exceeds {cap} bytes")
        body += await reader.readexactly(size)
        await reader.readexactly(2)
