"""Bounded reassembly: IP fragments into datagrams, TCP segments into SIP messages.

Both work on capture time (the ``now`` passed in), never on the wall clock, and both
are bounded: a fuzzed or hostile capture can make them drop data (and say so through
``notes``), never grow without limit. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# IP: RFC 791 allows 65535-byte datagrams; RFC 8200 jumbograms are not reassembled.
MAX_DATAGRAM = 65535
MAX_PENDING_DATAGRAMS = 1024
FRAGMENT_TIMEOUT = 30.0          # seconds of capture time (Linux ipfrag_time default)

# TCP: a SIP message larger than this is not one we would accept live either.
MAX_SIP_MESSAGE = 1 << 20
MAX_HEADER_BYTES = 65536
MAX_OUT_OF_ORDER = 1 << 20       # bytes held per flow waiting for a gap to fill
MAX_FLOWS = 65536

_SEQ_MOD = 1 << 32
_HALF = 1 << 31

# A SIP start line, as the first line of a message (RFC 3261 s7.1, s7.2).
START_LINE = re.compile(rb"(?:[!%'*+\-.0-9A-Z_`a-z~]+ [^ \r\n]+ SIP/2\.0|SIP/2\.0 [0-9]{3}(?: [^\r\n]*)?)\r?\n")
# Where the next message starts after lost or unframeable bytes. Only well-known methods:
# a body without a final CRLF runs straight into the next start line ("...abcINVITE sip:"),
# so the method cannot be told from the bytes before it by grammar alone.
_NEXT_START = re.compile(
    rb"(?:INVITE|ACK|BYE|CANCEL|OPTIONS|REGISTER|PRACK|SUBSCRIBE|NOTIFY|PUBLISH|INFO|REFER|MESSAGE"
    rb"|UPDATE) [^ \r\n]+ SIP/2\.0\r?\n|SIP/2\.0 [0-9]{3}[ \r]")
_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)")
# What the first bytes of a SIP stream look like, even when the start line is cut short.
_SIP_PREFIX = re.compile(rb"SIP/2\.0 |[A-Za-z]+ (?:sips?|tel|urn):", re.IGNORECASE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def looks_like_sip(data: bytes) -> bool:
    """True when ``data`` starts with a SIP request or status line (content detection).

    The first line must end in `` SIP/2.0`` (request) or start with ``SIP/2.0 NNN``
    (response); junk before a request method still counts, so that the SIP parser,
    not the capture reader, rejects it, exactly as a live proxy would.
    """
    head = data[:1024]
    if head.startswith(b"SIP/2.0 "):
        return len(head) > 11 and head[8:11].isdigit()
    eol = head.find(b"\n")
    line = head[:eol] if eol >= 0 else head
    return line.rstrip(b"\r").endswith(b" SIP/2.0") and line.count(b" ") >= 2


# ---------------------------------------------------------------- IP fragments


@dataclass(slots=True)
class _Datagram:
    first_seen: float
    data: bytearray = field(default_factory=bytearray)
    holes: list[tuple[int, int]] = field(default_factory=lambda: [(0, MAX_DATAGRAM)])
    total: int | None = None
    fragments: int = 0


class IpReassembler:
    """RFC 815 hole-list reassembly for IPv4 and IPv6, bounded in count, size and time."""

    __slots__ = ("_pending", "notes", "reassembled")

    def __init__(self) -> None:
        self._pending: dict[tuple[object, ...], _Datagram] = {}
        self.notes: list[str] = []
        self.reassembled = 0

    def add(self, key: tuple[object, ...], offset: int, more: bool, payload: bytes,
            now: float) -> bytes | None:
        """Add one fragment; return the whole payload when this one completes it."""
        end = offset + len(payload)
        if end > MAX_DATAGRAM:
            self.notes.append(f"IP fragment beyond 65535 bytes (offset {offset}) dropped")
            return None
        if not more and not payload and offset == 0:
            return None
        dgram = self._pending.get(key)
        if dgram is None:
            self._expire(now)
            if len(self._pending) >= MAX_PENDING_DATAGRAMS:
                self.notes.append("too many incomplete fragmented datagrams; oldest dropped")
                del self._pending[next(iter(self._pending))]
            dgram = self._pending[key] = _Datagram(now)
        dgram.fragments += 1
        if not more:
            if dgram.total is not None and dgram.total != end:
                self.notes.append("IP fragments disagree on the datagram length; datagram dropped")
                del self._pending[key]
                return None
            dgram.total = end
        if len(dgram.data) < end:
            dgram.data.extend(bytes(end - len(dgram.data)))
        holes: list[tuple[int, int]] = []
        for lo, hi in dgram.holes:
            if end <= lo or offset >= hi:
                holes.append((lo, hi))
                continue
            # Overlap: the fragment fills [max(lo,offset), min(hi,end)); bytes already
            # received elsewhere are kept (first copy wins, as most stacks do).
            a, b = max(lo, offset), min(hi, end)
            dgram.data[a:b] = payload[a - offset:b - offset]
            if lo < a:
                holes.append((lo, a))
            if b < hi:
                holes.append((b, hi))
        if dgram.total is not None:
            holes = [(lo, min(hi, dgram.total)) for lo, hi in holes if lo < dgram.total]
        dgram.holes = holes
        if dgram.total is not None and not holes:
            del self._pending[key]
            self.reassembled += 1
            return bytes(dgram.data[:dgram.total])
        return None

    def _expire(self, now: float) -> None:
        stale = [k for k, d in self._pending.items() if now - d.first_seen > FRAGMENT_TIMEOUT]
        for k in stale:
            del self._pending[k]
        if stale:
            self.notes.append(f"{len(stale)} fragmented datagram(s) timed out incomplete")

    def finish(self) -> None:
        if self._pending:
            self.notes.append(f"{len(self._pending)} fragmented datagram(s) incomplete at end of capture")
            self._pending.clear()


# ---------------------------------------------------------------- TCP streams


@dataclass(slots=True)
class _Flow:
    next_seq: int | None = None
    buffer: bytearray = field(default_factory=bytearray)
    pending: dict[int, bytes] = field(default_factory=dict)  # out-of-order segments by seq
    pending_bytes: int = 0
    synced: bool = True      # False after lost bytes: skip to the next start line
    checked: bool = False    # the first message was checked to be SIP
    ignored: bool = False    # not a SIP stream (HTTP, WebSocket, TLS ...): bytes are skipped


class TcpReassembler:
    """Per-direction TCP byte streams cut into SIP messages by Content-Length (RFC 3261 s18.3).

    Handles segments split and merged at any byte, retransmissions and overlaps (bytes
    already delivered are trimmed), out-of-order arrival (held until the gap fills, up to
    ``MAX_OUT_OF_ORDER``), captures starting mid-stream and lost segments (resynchronised
    at the next SIP start line), and CRLF keep-alives (RFC 5626 s3.5.1).
    """

    __slots__ = ("_flows", "notes", "retransmissions", "non_sip_streams")

    def __init__(self) -> None:
        self._flows: dict[FlowKey, _Flow] = {}
        self.notes: list[str] = []
        self.retransmissions = 0
        self.non_sip_streams = 0

    def add(self, src: tuple[str, int], dst: tuple[str, int], seq: int, flags: int,
            payload: bytes) -> list[bytes]:
        """Add one segment; return the SIP messages it completes, in stream order."""
        key = (src, dst)
        flow = self._flows.get(key)
        if flow is None:
            if len(self._flows) >= MAX_FLOWS:
                del self._flows[next(iter(self._flows))]
            flow = self._flows[key] = _Flow()
        if flags & 0x02:  # SYN: the stream starts at seq + 1
            if flow.buffer or flow.pending:
                self._drop(flow, key, "connection restarted with unread data")
            flow.next_seq = (seq + 1) % _SEQ_MOD
            if not payload:
                return []
            seq = (seq + 1) % _SEQ_MOD
        out: list[bytes] = []
        if payload and not flow.ignored:
            if flow.next_seq is None:   # capture started mid-connection
                flow.next_seq = seq
                flow.synced = False
            self._accept(flow, key, seq, payload)
            self._frame(flow, key, out)
        if flags & 0x05:  # FIN or RST: whatever is buffered will never complete
            if self._unfinished(flow):
                self._drop(flow, key, "connection closed inside a SIP message")
            del self._flows[key]
        return out

    def _accept(self, flow: _Flow, key: FlowKey, seq: int, payload: bytes) -> None:
        assert flow.next_seq is not None
        rel = (seq - flow.next_seq) % _SEQ_MOD
        if rel >= _HALF:  # starts before next_seq: retransmission or overlap
            behind = _SEQ_MOD - rel
            if behind >= len(payload):
                self.retransmissions += 1
                return
            payload = payload[behind:]
            rel = 0
        if rel:
            if seq not in flow.pending:
                flow.pending[seq] = payload
                flow.pending_bytes += len(payload)
            if flow.pending_bytes > MAX_OUT_OF_ORDER:
                self._skip_gap(flow, key)
            return
        flow.buffer += payload
        flow.next_seq = (flow.next_seq + len(payload)) % _SEQ_MOD
        self._drain(flow)

    def _drain(self, flow: _Flow) -> None:
        while flow.pending:
            assert flow.next_seq is not None
            progressed = False
            for seq in list(flow.pending):
                rel = (seq - flow.next_seq) % _SEQ_MOD
                if rel and rel < _HALF:
                    continue
                data = flow.pending.pop(seq)
                flow.pending_bytes -= len(data)
                behind = (_SEQ_MOD - rel) % _SEQ_MOD
                if behind < len(data):
                    flow.buffer += data[behind:]
                    flow.next_seq = (flow.next_seq + len(data) - behind) % _SEQ_MOD
                progressed = True
            if not progressed:
                return

    def _skip_gap(self, flow: _Flow, key: FlowKey) -> None:
        """Give up on a missing segment: continue from the earliest held one."""
        assert flow.next_seq is not None
        base = flow.next_seq
        first = min(flow.pending, key=lambda s: (s - base) % _SEQ_MOD)
        self.notes.append(f"tcp {_flow_name(key)}: {(first - base) % _SEQ_MOD} bytes never captured; "
                          "skipped to the next SIP message")
        flow.buffer.clear()
        flow.synced = False
        flow.next_seq = first
        self._drain(flow)

    @staticmethod
    def _unfinished(flow: _Flow) -> bool:
        """Bytes are waiting in a stream known to carry SIP (others are not our business)."""
        if flow.ignored:
            return False
        rest = flow.buffer.lstrip(b"\r\n")
        return bool(rest or flow.pending) and (flow.checked or _SIP_PREFIX.match(rest) is not None)

    def _drop(self, flow: _Flow, key: FlowKey, why: str) -> None:
        self.notes.append(f"tcp {_flow_name(key)}: {why}; {len(flow.buffer)} bytes dropped")
        flow.buffer.clear()
        flow.pending.clear()
        flow.pending_bytes = 0

    def _frame(self, flow: _Flow, key: FlowKey, out: list[bytes]) -> None:
        buf = flow.buffer
        while buf:
            if not flow.synced or not buf[:1].isalpha():
                start = 0
                while start < len(buf) and buf[start] in b"\r\n":   # keep-alives
                    start += 1
                if start == len(buf):
                    buf.clear()
                    return
                if not (flow.synced and START_LINE.match(buf, start)):
                    m = _NEXT_START.search(buf, start)
                    if m is None:
                        if len(buf) > MAX_HEADER_BYTES:
                            self.notes.append(f"tcp {_flow_name(key)}: {len(buf)} bytes of non-SIP data skipped")
                            buf.clear()
                        return
                    if m.start() > start:
                        self.notes.append(f"tcp {_flow_name(key)}: {m.start() - start} bytes of non-SIP "
                                          "data skipped")
                    start = m.start()
                del buf[:start]
                flow.synced = True
            m = _HEADER_END.search(buf, 0, MAX_HEADER_BYTES)
            if m is None:
                if len(buf) > MAX_HEADER_BYTES:
                    self.notes.append(f"tcp {_flow_name(key)}: SIP header over {MAX_HEADER_BYTES} bytes; "
                                      "skipped")
                    del buf[:1]
                    flow.synced = False
                    continue
                return
            head_end = m.end()
            length = 0
            cl = _CONTENT_LENGTH.search(buf, 0, m.start())
            if cl is not None:
                text = cl.group(1).strip()
                if text.isdigit() and int(text) <= MAX_SIP_MESSAGE:
                    length = int(text)
                else:
                    # Deliver the header alone: the SIP parser will reject the message as a
                    # live proxy would; the body bytes are then skipped as non-SIP.
                    self.notes.append(f"tcp {_flow_name(key)}: bad Content-Length {text[:40]!r}")
                    flow.synced = False
            if len(buf) < head_end + length:
                return
            message = bytes(buf[:head_end + length])
            del buf[:head_end + length]
            if not flow.checked:
                flow.checked = True
                if not looks_like_sip(message):
                    self.non_sip_streams += 1   # HTTP and the like: normal, not a problem
                    flow.ignored = True
                    buf.clear()
                    flow.pending.clear()
                    flow.pending_bytes = 0
                    return
            out.append(message)

    def finish(self) -> None:
        for key, flow in self._flows.items():
            if self._unfinished(flow):
                self.notes.append(f"tcp {_flow_name(key)}: capture ended inside a SIP message "
                                  f"({len(flow.buffer) + flow.pending_bytes} bytes)")
        self._flows.clear()


FlowKey = tuple[tuple[str, int], tuple[str, int]]


def _flow_name(key: FlowKey) -> str:
    return f"{_hostport(*key[0])} -> {_hostport(*key[1])}"


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
