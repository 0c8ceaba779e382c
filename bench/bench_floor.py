"""The floor under a Python verifying proxy: the least work a process on uvloop can do per call.

bench_proxy.py runs it as the systems ``floor-verify`` (relay) and ``floor-redirect-verify``
(302), beside Kamailio + secsipid and sipguard, with the same sipp traffic and the same CPU
accounting. It is not a proxy anyone should deploy; it answers one question of issue 17:
what does the language, the event loop, the kernel's UDP and OpenSSL's ES256 cost per call
on this machine, before any of sipguard's own work? The gap between this floor and sipguard
is what sipguard's design can still win; the gap between this floor and Kamailio is what no
Python design on this loop can.

Per INVITE it does what the issue's "limit" names, and no more:
- the ``Identity`` header found by prefix, its token split, the signature and the claims
  base64url-decoded, the claims read as JSON (iat must be within 60 s), ES256 checked with
  the one certificate's key, loaded at start (a warm certificate cache);
- redirect: a 302 with the request's Via, From, To (+ tag), Call-ID and CSeq, and a Contact
  with the verstat; the ACK is dropped (no transaction, no retransmission of the 302);
- relay: our Via on top and a Record-Route, Max-Forwards - 1, sent to the next hop; ACK and
  BYE lose the Route naming us, get our Via and go to the next hop; a response loses our Via
  and goes to the address in the next one. Stateless: no 100 Trying, no Timer A, no ACK of
  a non-2xx.
None of: a SIP parser or its checks, transactions, policy, store look-ups, decision logs,
traceback records, metrics, overload control. Header names as sipp writes them (no compact
forms). A failed check gets 438; anything else malformed is dropped.

    bench_floor.py --port P --workers N --cert CERT.pem --mode redirect|relay [--next-hop H:P] [--no-rr]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import sys
import time

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

CRLF = b"\r\n"
ES256 = ec.ECDSA(Prehashed(hashes.SHA256()))


def b64url(part: bytes) -> bytes:
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def verified(key: ec.EllipticCurvePublicKey, value: bytes, now: float) -> bool:
    token = value.split(b";", 1)[0].strip()
    parts = token.split(b".")
    if len(parts) != 3:
        return False
    try:
        claims = json.loads(b64url(parts[1]))
        sig = b64url(parts[2])
        if len(sig) != 64 or abs(now - float(claims["iat"])) > 60:
            return False
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        key.verify(der, hashlib.sha256(parts[0] + b"." + parts[1]).digest(), ES256)
    except (ValueError, KeyError, TypeError, InvalidSignature):
        return False
    return True


class Floor(asyncio.DatagramProtocol):
    def __init__(self, key: ec.EllipticCurvePublicKey, redirect: bool, me: bytes,
                 next_hop: tuple[str, int], rr: bool) -> None:
        self.key = key
        self.redirect = redirect
        self.me = me                    # b"127.0.0.1:5060"
        self.next_hop = next_hop
        self.rr = b"Record-Route: <sip:" + me + b";lr>" if rr else b""
        self.tags = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.handle(data, addr)
        except (ValueError, IndexError, OSError):  # a field it cannot read (Max-Forwards, a port): dropped
            return

    def handle(self, data: bytes, addr: tuple[str, int]) -> None:
        end = data.find(CRLF + CRLF)
        if end < 0:
            return
        lines = data[:end].split(CRLF)
        body = data[end:]
        if lines[0].startswith(b"SIP/2.0 "):
            self.response(lines, body)
            return
        method = lines[0].split(b" ", 1)[0]
        if method == b"INVITE":
            self.invite(lines, body, addr)
        elif method == b"ACK" and self.redirect:
            return
        elif method == b"OPTIONS":
            self.reply(lines, addr, b"200 OK", b"")
        elif not self.redirect:
            self.forward([ln for ln in lines if not (ln.startswith(b"Route:") and self.me in ln)], body, 0)

    def invite(self, lines: list[bytes], body: bytes, addr: tuple[str, int]) -> None:
        identity = next((ln[9:] for ln in lines if ln.startswith(b"Identity:")), None)
        if identity is None:
            self.reply(lines, addr, b"428 Use Identity Header", b"")
            return
        if not verified(self.key, identity, time.time()):
            self.reply(lines, addr, b"438 Invalid Identity Header", b"")
            return
        if self.redirect:
            user = lines[0].split(b" ")[1].split(b"@")[0].split(b":")[-1]
            self.reply(lines, addr, b"302 Moved Temporarily",
                       b"Contact: <sip:" + user + b"@127.0.0.1:5070;verstat=TN-Validation-Passed>\r\n")
            return
        self.forward(lines, body, 1)

    def forward(self, lines: list[bytes], body: bytes, invite: int) -> None:
        branch = next((ln for ln in lines if ln.startswith(b"Via:")), b"").rpartition(b"branch=")[2]
        head = [lines[0], b"Via: SIP/2.0/UDP " + self.me + b";branch=z9hG4bKfl" + branch[7:]]
        if invite and self.rr:
            head.append(self.rr)
        for ln in lines[1:]:
            if ln.startswith(b"Max-Forwards:"):
                hops = int(ln[13:])
                if hops <= 0:
                    return
                ln = b"Max-Forwards: %d" % (hops - 1)
            head.append(ln)
        self.transport.sendto(CRLF.join(head) + body, self.next_hop)  # type: ignore[union-attr]

    def response(self, lines: list[bytes], body: bytes) -> None:
        top = next((i for i, ln in enumerate(lines) if ln.startswith(b"Via:")), -1)
        if top < 0 or b"z9hG4bKfl" not in lines[top].split(b",", 1)[0]:
            return
        ours, comma, rest = lines[top].partition(b",")
        if comma:   # Via: ours, theirs (one header line, as sipp's [last_Via:] writes them)
            lines[top] = b"Via: " + rest.strip()
            nxt = lines[top]
        elif top + 1 < len(lines) and lines[top + 1].startswith(b"Via:"):
            del lines[top]
            nxt = lines[top]
        else:
            return
        sent_by = nxt.split(b" ")[2].split(b";")[0].split(b",")[0]
        host, _, port = sent_by.rpartition(b":")
        self.transport.sendto(CRLF.join(lines) + body, (host.decode(), int(port)))  # type: ignore[union-attr]

    def reply(self, lines: list[bytes], addr: tuple[str, int], status: bytes, extra: bytes) -> None:
        self.tags += 1
        out = [b"SIP/2.0 " + status]
        for ln in lines[1:]:
            if ln.startswith((b"Via:", b"From:", b"Call-ID:", b"CSeq:")):
                out.append(ln)
            elif ln.startswith(b"To:"):
                out.append(ln if b";tag=" in ln else ln + b";tag=fl%d" % self.tags)
        self.transport.sendto(CRLF.join(out) + CRLF + extra + b"Content-Length: 0\r\n\r\n", addr)  # type: ignore[union-attr]


def child(args: argparse.Namespace, sock: socket.socket) -> None:
    import uvloop

    key = x509.load_pem_x509_certificate(open(args.cert, "rb").read()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    host, port = args.next_hop.rsplit(":", 1) if args.next_hop else ("127.0.0.1", "0")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: Floor(key, args.mode == "redirect", b"127.0.0.1:%d" % args.port, (host, int(port)),
                          not args.no_rr), sock=sock)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    uvloop.run(main())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cert", required=True)
    p.add_argument("--mode", choices=("redirect", "relay"), default="redirect")
    p.add_argument("--next-hop", default="")
    p.add_argument("--no-rr", action="store_true")
    args = p.parse_args()
    # one socket, bound before the fork, read by every child: Kamailio's UDP children share
    # theirs the same way, so both spread the calls of one sipp source port over all workers
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", args.port))
    pids = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            child(args, sock)
            os._exit(0)
        pids.append(pid)

    def stop(*_: object) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    for pid in pids:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
