"""Write captures from SIP message texts: the test material no public capture provides.

No public capture carries a STIR/SHAKEN Identity header, so sipguard's tests (and
operators' own) build them: choose addresses, ports, times and transport per message;
optionally cut TCP messages into several segments or fragment big UDP datagrams the way
an MTU would. Output is pcap or pcapng with Ethernet, Linux cooked (SLL) or raw IP
framing, with correct IP/UDP/TCP checksums so that Wireshark shows clean packets.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dpkt

from sipguard.replay.decode import LINK_ETHERNET, LINK_RAW, LINK_SLL

Link = Literal["ethernet", "sll", "raw"]
_LINKS: dict[str, int] = {"ethernet": LINK_ETHERNET, "sll": LINK_SLL, "raw": LINK_RAW}


@dataclass(frozen=True, slots=True)
class Message:
    """One SIP message to put on the wire.

    ``text`` may use bare LF line ends; they become CRLF unless ``raw=True``.
    ``segments``: TCP only, cut the message into that many segments.
    ``mtu``: fragment the IP datagram when it is larger (UDP; IPv4 or IPv6).
    """

    text: str | bytes
    src: tuple[str, int] = ("192.0.2.10", 5060)
    dst: tuple[str, int] = ("192.0.2.20", 5060)
    time: float = 1_700_000_000.0
    transport: Literal["udp", "tcp"] = "udp"
    segments: int = 1
    mtu: int | None = None
    raw: bool = False

    def payload(self) -> bytes:
        data = self.text.encode() if isinstance(self.text, str) else self.text
        if self.raw:
            return data
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class _Builder:
    """Builds frames; keeps per-flow TCP sequence numbers and IP identifiers."""

    def __init__(self, link: str) -> None:
        if link not in _LINKS:
            raise ValueError(f"link must be one of {sorted(_LINKS)}, not {link!r}")
        self.link = link
        self._seq: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}
        self._ip_id = 0x1000

    def frames(self, msg: Message) -> list[bytes]:
        data = msg.payload()
        src, dst = ipaddress.ip_address(msg.src[0]), ipaddress.ip_address(msg.dst[0])
        if src.version != dst.version:
            raise ValueError(f"{msg.src[0]} and {msg.dst[0]} are not the same IP version")
        s, d = src.packed, dst.packed
        if msg.transport == "udp":
            udp = struct.pack("!HHHH", msg.src[1], msg.dst[1], 8 + len(data), 0) + data
            udp = udp[:6] + struct.pack("!H", self._l4_sum(s, d, 17, udp) or 0xFFFF) + udp[8:]
            return [self._link(p, src.version) for p in self._ip(s, d, 17, udp, msg.mtu)]
        if msg.transport != "tcp":
            raise ValueError(f"transport must be udp or tcp, not {msg.transport!r}")
        out: list[bytes] = []
        key = (msg.src, msg.dst)
        if key not in self._seq:
            # A SYN starts each new flow so readers see a clean stream start.
            isn = zlib.crc32(repr(key).encode())
            out.append(self._link(self._ip(s, d, 6, self._tcp(s, d, msg, isn, 0x02, b""), None)[0],
                                  src.version))
            self._seq[key] = (isn + 1) & 0xFFFFFFFF
        count = max(1, min(msg.segments, len(data) or 1))
        step = -(-len(data) // count) if data else 0
        for i in range(count):
            chunk = data[i * step:(i + 1) * step] if step else data
            seq = self._seq[key]
            seg = self._tcp(s, d, msg, seq, 0x18, chunk)   # PSH|ACK
            self._seq[key] = (seq + len(chunk)) & 0xFFFFFFFF
            out.append(self._link(self._ip(s, d, 6, seg, None)[0], src.version))
        return out

    def _tcp(self, s: bytes, d: bytes, msg: Message, seq: int, flags: int, data: bytes) -> bytes:
        seg = struct.pack("!HHIIBBHHH", msg.src[1], msg.dst[1], seq, 1 if flags != 0x02 else 0,
                          5 << 4, flags, 65535, 0, 0) + data
        return seg[:16] + struct.pack("!H", self._l4_sum(s, d, 6, seg)) + seg[18:]

    @staticmethod
    def _l4_sum(s: bytes, d: bytes, proto: int, seg: bytes) -> int:
        if len(s) == 4:
            pseudo = s + d + struct.pack("!BBH", 0, proto, len(seg))
        else:
            pseudo = s + d + struct.pack("!IxxxB", len(seg), proto)
        return _checksum(pseudo + seg)

    def _ip(self, s: bytes, d: bytes, proto: int, payload: bytes, mtu: int | None) -> list[bytes]:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        if len(s) == 4:
            hdr = 20
            if mtu is None or hdr + len(payload) <= mtu:
                return [self._v4(s, d, proto, payload, 0, False)]
            step = (mtu - hdr) // 8 * 8
            return [self._v4(s, d, proto, payload[o:o + step], o, o + step < len(payload))
                    for o in range(0, len(payload), step)]
        if mtu is None or 40 + len(payload) <= mtu:
            return [struct.pack("!IHBB", 0x60000000, len(payload), proto, 64) + s + d + payload]
        step = (mtu - 48) // 8 * 8
        out = []
        for o in range(0, len(payload), step):
            part = payload[o:o + step]
            more = o + step < len(payload)
            frag = struct.pack("!BBHI", proto, 0, o | int(more), self._ip_id)
            out.append(struct.pack("!IHBB", 0x60000000, 8 + len(part), 44, 64) + s + d + frag + part)
        return out

    def _v4(self, s: bytes, d: bytes, proto: int, payload: bytes, offset: int, more: bool) -> bytes:
        flags = (0x2000 if more else 0) | (offset // 8)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), self._ip_id, flags, 64, proto, 0, s, d)
        return hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:] + payload

    def _link(self, packet: bytes, version: int) -> bytes:
        etype = 0x0800 if version == 4 else 0x86DD
        if self.link == "ethernet":
            return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + struct.pack("!H", etype) + packet
        if self.link == "sll":
            return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", etype) + packet
        return packet


def build_frames(messages: Iterable[Message], link: Link = "ethernet") -> list[tuple[float, bytes]]:
    """The frames (time, bytes) that carry ``messages``, in order."""
    builder = _Builder(link)
    return [(msg.time, frame) for msg in messages for frame in builder.frames(msg)]


def write_capture(path: str | Path, messages: Iterable[Message], *, link: Link = "ethernet",
                  fmt: Literal["pcap", "pcapng"] = "pcap") -> Path:
    """Write ``messages`` as a capture file; returns the path."""
    frames = build_frames(messages, link)
    path = Path(path)
    with open(path, "wb") as fh:
        writer: dpkt.pcap.Writer | dpkt.pcapng.Writer
        if fmt == "pcap":
            writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=_LINKS[link], nano=True)
        elif fmt == "pcapng":
            writer = dpkt.pcapng.Writer(fh, snaplen=262144, linktype=_LINKS[link])
        else:
            raise ValueError(f"fmt must be pcap or pcapng, not {fmt!r}")
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    return path


def write_sip_capture(path: str | Path, texts: Iterable[str | bytes], *,
                      src: tuple[str, int] = ("192.0.2.10", 5060),
                      dst: tuple[str, int] = ("192.0.2.20", 5060), start: float = 1_700_000_000.0,
                      interval: float = 1.0, transport: Literal["udp", "tcp"] = "udp",
                      link: Link = "ethernet", fmt: Literal["pcap", "pcapng"] = "pcap") -> Path:
    """The common case: several messages from one source to one destination, evenly spaced."""
    messages = [Message(t, src, dst, start + i * interval, transport) for i, t in enumerate(texts)]
    return write_capture(path, messages, link=link, fmt=fmt)
