"""A small blocking SIP client and UAS for integration tests.

Not a SIP stack: it builds the few messages the tests send, and reads what comes back,
so a test can assert exact status codes and headers that sipp scenarios make awkward.
Real call flows and load use sipp itself.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on host."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


@dataclass
class Msg:
    raw: bytes
    first: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status(self) -> int | None:
        m = re.match(r"SIP/2\.0 (\d{3})", self.first)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str | None:
        return None if self.first.startswith("SIP/2.0") else self.first.split(" ", 1)[0]

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        low = name.lower()
        compact = {"via": "v", "from": "f", "to": "t", "call-id": "i", "identity": "y"}.get(low)
        return [v for k, v in self.headers if k.lower() in (low, compact)]


def parse_msg(data: bytes) -> Msg:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return Msg(data, lines[0], headers, body)


def invite(target: tuple[str, int], local: tuple[str, int], caller: str = "+12025550123",
           callee: str = "+13035550100", identity: list[str] | None = None, extra: list[str] | None = None,
           call_id: str | None = None, branch: str | None = None, max_forwards: int = 70,
           pai: str | None = None, transport: str = "UDP", ruri: str | None = None) -> bytes:
    call_id = call_id or uuid.uuid4().hex
    branch = branch or "z9hG4bK" + uuid.uuid4().hex[:16]
    ruri = ruri or f"sip:{callee}@{target[0]}:{target[1]};user=phone"
    lines = [
        f"INVITE {ruri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {local[0]}:{local[1]};branch={branch};rport",
        f"From: <sip:{caller}@{local[0]};user=phone>;tag=f{uuid.uuid4().hex[:8]}",
        f"To: <sip:{callee}@{target[0]};user=phone>",
        f"Call-ID: {call_id}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:{caller}@{local[0]}:{local[1]}>",
        f"Max-Forwards: {max_forwards}",
    ]
    if pai:
        lines.append(f"P-Asserted-Identity: {pai}")
    for value in identity or []:
        lines.append(f"Identity: {value}")
    lines.extend(extra or [])
    body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    lines += ["Content-Type: application/sdp", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def ack_for(inv: bytes, resp: Msg) -> bytes:
    req = parse_msg(inv)
    ruri = req.first.split(" ")[1]
    lines = [f"ACK {ruri} SIP/2.0", f"Via: {req.header('Via')}", f"From: {req.header('From')}",
             f"To: {resp.header('To')}", f"Call-ID: {req.header('Call-ID')}", "CSeq: 1 ACK",
             "Max-Forwards: 70", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class UdpClient:
    """A UDP socket that sends requests and collects responses."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.addr = self.sock.getsockname()

    def send(self, data: bytes, target: tuple[str, int]) -> None:
        self.sock.sendto(data, target)

    def recv(self, timeout: float = 5.0) -> Msg | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        return parse_msg(data)

    def final(self, timeout: float = 10.0) -> tuple[Msg | None, list[Msg]]:
        """Read until a final response (>= 200); returns it and everything seen."""
        seen = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self.recv(max(0.05, end - time.monotonic()))
            if msg is None:
                break
            seen.append(msg)
            if msg.status is not None and msg.status >= 200:
                return msg, seen
        return None, seen

    def call(self, target: tuple[str, int], **kw: object) -> tuple[Msg | None, list[Msg]]:
        """Send an INVITE, wait for the final response, ACK a non-2xx one."""
        inv = invite(target, self.addr, **kw)  # type: ignore[arg-type]
        self.send(inv, target)
        final, seen = self.final()
        if final is not None and final.status is not None and final.status >= 300:
            self.send(ack_for(inv, final), target)
        return final, seen

    def close(self) -> None:
        self.sock.close()


@dataclass
class MiniUas:
    """A UDP UAS that answers every INVITE with ``status`` and keeps what it received; with
    ``delay``, an INVITE gets 100 at once and ``status`` that many seconds later."""

    host: str = "127.0.0.1"
    port: int = 0
    status: int = 200
    delay: float = 0.0
    received: list[Msg] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, self.port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    def invites(self) -> list[Msg]:
        return [m for m in self.received if m.method == "INVITE"]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            msg = parse_msg(data)
            self.received.append(msg)
            if msg.method == "INVITE" and self.delay:
                self._send(self._response(msg, 100), addr)
                threading.Timer(self.delay, self._send, (self._response(msg, self.status), addr)).start()
            elif msg.method in ("INVITE", "BYE", "OPTIONS", "CANCEL"):
                status = self.status if msg.method == "INVITE" else 200
                self._send(self._response(msg, status), addr)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError:
            pass  # closed at the end of the test

    def _response(self, req: Msg, status: int) -> bytes:
        phrase = {100: "Trying", 200: "OK", 486: "Busy Here", 603: "Decline"}.get(status, "Whatever")
        lines = [f"SIP/2.0 {status} {phrase}"]
        lines += [f"Via: {v}" for v in req.all("Via")]
        to = req.header("To") or ""
        if "tag=" not in to:
            to += ";tag=uas1"
        lines += [f"From: {req.header('From')}", f"To: {to}", f"Call-ID: {req.header('Call-ID')}",
                  f"CSeq: {req.header('CSeq')}", f"Contact: <sip:uas@{self.host}:{self.port}>",
                  "Content-Length: 0"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def wait_invites(self, n: int, timeout: float = 5.0) -> list[Msg]:
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.invites()) < n:
            time.sleep(0.02)
        return self.invites()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


def mutate(draw: Any, data: bytes, inserts: bytes, most: int) -> bytes:
    """For hypothesis strategies (``draw``): ``data`` with 1 to ``most`` bytes deleted,
    inserted (one of ``inserts``) or replaced (any byte value)."""
    from hypothesis import strategies as st

    for _ in range(draw(st.integers(1, most))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 2))
        if op == 0:
            data = data[:i] + data[i + 1:]
        elif op == 1:
            data = data[:i] + bytes([draw(st.sampled_from(inserts))]) + data[i:]
        else:
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
    return data
