"""ASYNC EDGE: download x5u certificates and CRLs, guarded against SSRF and slow servers.

A minimal HTTP/1.1 GET client on asyncio streams (no new dependency, never blocks the loop).
Rules, each one a lesson from another stack (research/anchors-shaken.md):
- https only by default, ports 443/8443 (Asterisk #1271), no userinfo or fragment;
- the host is resolved with loop.getaddrinfo and every special-use address (private, loopback,
  link-local, CGNAT, multicast, reserved, unspecified) is refused unless inside
  `allow_networks` (AST-2022-002); we connect to the address we checked, so a second DNS answer
  cannot swap it (rebinding);
- no redirects (a 3xx is a failure), a body cap (AST-2022-001) and one deadline for
  connect + request + body;
- the HTTPS trust (tls_ca_bundle, web PKI) is not the STI trust anchors.
Caching, single flight and the breaker are the Verifier's job, not this module's.
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
USER_AGENT = "sipguard-sti-vs"
_MAX_AGE_RE = re.compile(r"(?:^|[,\s])(?:s-maxage|max-age)\s*=\s*\"?(\d+)", re.IGNORECASE)


class FetchError(Exception):
    """A download that did not produce a body; `reason` is x5u-refused or x5u-fetch-failed."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


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


def address_allowed(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, cfg: X5uConfig) -> bool:
    """Public unicast only, unless the operator allowed the network explicitly."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if any(addr in net for net in cfg.allow_networks):
        return True
    return addr.is_global and not addr.is_multicast


def port_allowed(target: Target, addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
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
            raise FetchError(Reason.X5U_FETCH_FAILED, f"timeout after {self.cfg.timeout} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise FetchError(Reason.X5U_FETCH_FAILED, f"connection failed: {exc}") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise FetchError(Reason.X5U_FETCH_FAILED, f"bad HTTP response: {exc}") from None

    async def _resolve(self, target: Target, crl: bool) -> str:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError(Reason.X5U_FETCH_FAILED, f"cannot resolve {target.host}: {exc}") from None
        refused = ""
        for info in infos:
            text = str(info[4][0]).split("%", 1)[0]
            addr = ipaddress.ip_address(text)
            if not address_allowed(addr, self.cfg):
                refused = f"address {text} is in a special-use range"
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
                raise FetchError(Reason.X5U_FETCH_FAILED, f"redirect ({status}) not followed")
            if status != 200:
                raise FetchError(Reason.X5U_FETCH_FAILED, f"HTTP status {status}")
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
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
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
        if not length.strip().isdigit():
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
