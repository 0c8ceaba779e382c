"""Read SIP messages out of pcap and pcapng captures, in capture order.

``iter_packets`` yields the UDP datagrams and TCP segments of a capture after
decapsulation and IP fragment reassembly; ``iter_sip`` turns those into SIP messages
(content detection on UDP, stream reassembly and Content-Length framing on TCP).

A damaged capture is reported, not raised: every problem becomes a ``CaptureIssue`` in
the ``CaptureReport`` passed in, and whatever could be read is still yielded. The only
exception is ``CaptureError``, for a file that is not a capture at all or cannot be
opened. dpkt reads the file formats; the layers inside each frame are ``decode.py``'s.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import dpkt

from sipguard.errors import SipguardError
from sipguard.replay.decode import DecodeError, IpFragment, decode_frame, decode_ip_payload
from sipguard.replay.reassembly import IpReassembler, TcpReassembler, looks_like_sip

MAX_ISSUES = 200   # kept verbatim; beyond that only counted

_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_NANO = Decimal("1E9")


class CaptureError(SipguardError):
    """The file is not a pcap/pcapng capture, or cannot be read at all."""


@dataclass(frozen=True, slots=True)
class CaptureIssue:
    packet: int | None   # 1-based frame number, as Wireshark shows it; None: not one packet
    message: str

    def __str__(self) -> str:
        return f"packet {self.packet}: {self.message}" if self.packet else self.message


@dataclass(slots=True)
class CaptureReport:
    """What reading a capture found, filled in as the iterator runs."""

    path: str = ""
    format: str = ""             # "pcap" | "pcapng"
    link_type: int | None = None
    packets: int = 0             # frames in the file
    sip_messages: int = 0
    non_sip: int = 0             # UDP datagrams and TCP streams that are not SIP
    fragments_reassembled: int = 0
    tcp_retransmissions: int = 0
    filtered: int = 0            # left out by the port filter
    file_size: int = 0
    bytes_read: int = 0          # progress through the file
    issues: list[CaptureIssue] = field(default_factory=list)
    issue_count: int = 0

    def add(self, packet: int | None, message: str) -> None:
        self.issue_count += 1
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(CaptureIssue(packet, message))

    @property
    def errors(self) -> list[CaptureIssue]:
        return self.issues

    def summary(self) -> str:
        text = (f"{self.path}: {self.packets} packets, {self.sip_messages} SIP messages, "
                f"{self.non_sip} non-SIP, {self.fragments_reassembled} datagrams reassembled from "
                f"fragments, {self.tcp_retransmissions} TCP retransmissions")
        if self.issue_count:
            text += f", {self.issue_count} problem(s)"
        return text


@dataclass(frozen=True, slots=True)
class Packet:
    """A UDP datagram (reassembled if it was fragmented) or a TCP segment."""

    number: int                  # frame number (the last fragment's, for reassembled datagrams)
    time: float                  # capture time, seconds since the epoch
    src: tuple[str, int]
    dst: tuple[str, int]
    transport: str               # "udp" | "tcp"
    payload: bytes
    seq: int = 0                 # TCP only
    flags: int = 0               # TCP only


@dataclass(frozen=True, slots=True)
class CapturedMessage:
    """One SIP message as it crossed the wire."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    transport: str               # "udp" | "tcp"
    data: bytes
    packet: int = 0              # frame that completed it


def _open(path: str | Path) -> tuple[BinaryIO, str]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by iter_frames
    except OSError as exc:
        raise CaptureError(f"{path}: cannot open capture: {exc.strerror or exc}") from None
    magic = fh.read(4)
    fh.seek(0)
    if magic in _PCAP_MAGICS:
        return fh, "pcap"
    if magic == _PCAPNG_MAGIC:
        return fh, "pcapng"
    fh.close()
    if not magic:
        raise CaptureError(f"{path}: empty file, not a capture")
    raise CaptureError(f"{path}: not a pcap or pcapng capture (starts with {magic.hex()}); "
                       "save it from Wireshark/tcpdump as pcap or pcapng")


def iter_frames(path: str | Path, report: CaptureReport) -> Iterator[tuple[int, float, int, bytes]]:
    """Yield (frame number, time, link type, frame bytes); a truncated tail is reported."""
    fh, fmt = _open(path)
    report.path, report.format = str(path), fmt
    report.file_size = os.fstat(fh.fileno()).st_size
    with fh:
        try:
            reader: dpkt.pcap.Reader | dpkt.pcapng.Reader = (
                dpkt.pcap.Reader(fh) if fmt == "pcap" else dpkt.pcapng.Reader(fh))
        except (ValueError, dpkt.Error, EOFError) as exc:
            raise CaptureError(f"{path}: unreadable {fmt} header: {exc}") from None
        link = reader.datalink()
        report.link_type = link
        records = _pcap_records(fh) if fmt == "pcap" else _pcapng_records(reader, fh)
        number = 0
        while True:
            try:
                pos, ts, frame, caplen = next(records)
            except StopIteration:
                return
            except (ValueError, dpkt.Error, EOFError, OverflowError, struct.error, MemoryError) as exc:
                report.add(number + 1, f"capture file truncated or damaged here ({exc or type(exc).__name__}); "
                           "stopped reading")
                return
            number += 1
            if len(frame) < caplen:
                report.add(number, f"capture file truncated inside this packet ({len(frame)} of "
                           f"{caplen} bytes); stopped reading")
                report.packets = number
                return
            report.packets = number
            report.bytes_read = pos + len(frame)
            yield number, ts, link, frame


def _pcap_records(fh: BinaryIO) -> Iterator[tuple[int, float, bytes, int]]:
    """(record offset, time, frame, caplen) of a pcap file whose header dpkt has read.

    The 16-byte record header is read here rather than by dpkt's reader (one object and two
    system calls less per frame); the results are dpkt's: the same time arithmetic, and a
    short header raises the same dpkt error. The caller compares caplen with the bytes read:
    a short last frame means a truncated file, not a short packet.
    """
    fh.seek(0)
    magic = fh.read(4)
    little = magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    header = struct.Struct("<IIII" if little else ">IIII")
    short_header = dpkt.pcap.LEPktHdr if little else dpkt.pcap.PktHdr
    pos = 24
    fh.seek(pos)
    read = fh.read
    while True:
        head = read(16)
        if not head:
            return
        if len(head) < 16:
            short_header(head)  # raises dpkt.NeedData, the error dpkt's reader gives here
        sec, frac, caplen, _ = header.unpack(head)
        frame = read(caplen)
        # dpkt: seconds + fraction / 1E6, or / Decimal("1E9") for nanosecond files
        ts = float(sec + frac / _NANO) if nano else sec + frac / 1E6
        yield pos, ts, frame, caplen
        pos += 16 + len(frame)


def _pcapng_records(reader: dpkt.pcap.Reader | dpkt.pcapng.Reader,
                    fh: BinaryIO) -> Iterator[tuple[int, float, bytes, int]]:
    iterator = iter(reader)
    while True:
        pos = fh.tell()
        try:
            ts, frame = next(iterator)
        except StopIteration:
            return
        yield pos, float(ts), frame, 0


def iter_packets(path: str | Path, report: CaptureReport | None = None) -> Iterator[Packet]:
    """UDP datagrams (reassembled from IP fragments) and TCP segments, in capture order."""
    report = report if report is not None else CaptureReport()
    ip = IpReassembler()
    unsupported_link_reported = False
    for number, ts, link, frame in iter_frames(path, report):
        try:
            decoded = decode_frame(link, frame)
            if isinstance(decoded, IpFragment):
                whole = ip.add(decoded.key, decoded.offset, decoded.more, decoded.payload, ts)
                _flush_notes(ip.notes, number, report)
                if whole is None:
                    continue
                report.fragments_reassembled = ip.reassembled
                decoded = decode_ip_payload(decoded.proto, decoded.src, decoded.dst, whole)
                if isinstance(decoded, IpFragment):  # impossible: fragments do not nest
                    continue
        except DecodeError as exc:
            if str(exc).startswith("unsupported link type"):
                if not unsupported_link_reported:
                    report.add(None, f"{exc}: this capture's frames cannot be decoded")
                    unsupported_link_reported = True
            else:
                report.add(number, str(exc))
            continue
        if decoded is None:
            continue
        yield Packet(number, ts, decoded.src, decoded.dst, decoded.transport, decoded.payload,
                     decoded.seq, decoded.flags)
    ip.finish()
    _flush_notes(ip.notes, None, report)


def iter_sip(path: str | Path, ports: Collection[int] | None = None,
             report: CaptureReport | None = None) -> Iterator[CapturedMessage]:
    """The SIP messages of a capture, in capture order; ``ports`` keeps only those flows."""
    report = report if report is not None else CaptureReport()
    port_set = frozenset(ports) if ports else None
    tcp = TcpReassembler()
    for pkt in iter_packets(path, report):
        if port_set is not None and pkt.src[1] not in port_set and pkt.dst[1] not in port_set:
            report.filtered += 1
            continue
        if pkt.transport == "udp":
            if not pkt.payload:
                continue
            if looks_like_sip(pkt.payload):
                report.sip_messages += 1
                yield CapturedMessage(pkt.time, pkt.src, pkt.dst, "udp", pkt.payload, pkt.number)
            elif pkt.payload.strip(b"\r\n\x00 "):
                report.non_sip += 1
            continue
        for data in tcp.add(pkt.src, pkt.dst, pkt.seq, pkt.flags, pkt.payload):
            report.sip_messages += 1
            yield CapturedMessage(pkt.time, pkt.src, pkt.dst, "tcp", data, pkt.number)
        if tcp.non_sip_streams:
            report.non_sip += tcp.non_sip_streams
            tcp.non_sip_streams = 0
        report.tcp_retransmissions = tcp.retransmissions
        _flush_notes(tcp.notes, pkt.number, report)
    tcp.finish()
    _flush_notes(tcp.notes, None, report)


def read_sip(path: str | Path, ports: Collection[int] | None = None
             ) -> tuple[list[CapturedMessage], CaptureReport]:
    """All SIP messages of a capture and the report (small captures, tests)."""
    report = CaptureReport()
    return list(iter_sip(path, ports, report)), report


def _flush_notes(notes: list[str], number: int | None, report: CaptureReport) -> None:
    if notes:
        for note in notes:
            report.add(number, note)
        notes.clear()

__all__ = ["CaptureError", "CaptureIssue", "CaptureReport", "CapturedMessage", "Packet",
           "iter_frames", "iter_packets", "iter_sip", "read_sip"]
