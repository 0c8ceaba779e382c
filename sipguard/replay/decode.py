"""Decapsulation: one captured frame -> the IP packet(s) inside -> UDP/TCP payload.

dpkt reads the capture files (``capture.py``); this module peels the layers of each
frame itself, with ``struct`` over slices of the original bytes, because replay needs
three things dpkt's eager object decoding does not give cheaply: it must never raise on
a damaged frame (it reports instead), it needs the raw fragment payloads for its own
reassembly, and it runs once per packet of captures with millions of them.

Layers: Ethernet (802.1Q/802.1ad/QinQ VLAN tags, MPLS), Linux cooked SLL and SLL2,
BSD loopback/null, raw IPv4/IPv6; IPv4 and IPv6 (extension headers), IP-in-IP, GRE
(incl. transparent Ethernet bridging and ERSPAN types I, II, III); UDP and TCP.
Checksums are not checked: captures taken on a sending host carry offloaded (wrong)
checksums, and a proxy would have received those packets all the same.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

# pcap LINKTYPE_* values (https://www.tcpdump.org/linktypes.html)
LINK_NULL = 0
LINK_ETHERNET = 1
LINK_RAW_OPENBSD = 12
LINK_RAW_ALT = 14
LINK_RAW = 101
LINK_LOOP = 108
LINK_SLL = 113
LINK_IPV4 = 228
LINK_IPV6 = 229
LINK_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN_TAGS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
ETH_MPLS = frozenset((0x8847, 0x8848))
ETH_TEB = 0x6558          # GRE: transparent Ethernet bridging
ETH_ERSPAN_2 = 0x88BE     # ERSPAN type I (no GRE sequence) or II
ETH_ERSPAN_3 = 0x22EB

PROTO_IPIP = 4
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_GRE = 47
# IPv6 extension headers walked to reach the payload (RFC 8200 s4)
IPV6_EXT = frozenset((0, 43, 60, 135, 139, 140))
IPV6_FRAGMENT = 44
IPV6_AH = 51

# Tunnels inside tunnels are legal but a loop of them is a crafted packet.
MAX_DEPTH = 8

_U16 = struct.Struct("!H")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")
_TCP = struct.Struct("!HHIIBB")

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04


class DecodeError(Exception):
    """A frame could not be decoded; the message says which layer and why."""


@dataclass(slots=True)
class IpFragment:
    """One fragment of an IP datagram, keyed for reassembly."""

    key: tuple[object, ...]   # (version, src, dst, id, proto)
    src: str
    dst: str
    proto: int
    offset: int              # bytes
    more: bool
    payload: bytes


@dataclass(slots=True)
class Segment:
    """A UDP datagram or TCP segment with its addresses (after decapsulation)."""

    src: tuple[str, int]
    dst: tuple[str, int]
    transport: str           # "udp" | "tcp"
    payload: bytes
    seq: int = 0
    flags: int = 0


Decoded = Segment | IpFragment | None   # None: a frame without UDP/TCP (ARP, ICMP, ...)

_addr_cache: dict[bytes, str] = {}


def _addr(raw: bytes) -> str:
    # Captures repeat few addresses; formatting them once saves real time per packet.
    text = _addr_cache.get(raw)
    if text is None:
        if len(_addr_cache) > 4096:
            _addr_cache.clear()
        text = str(ipaddress.ip_address(raw))
        _addr_cache[raw] = text
    return text


def decode_frame(link: int, frame: bytes) -> Decoded:
    """Decode one frame of the given link type. Raises DecodeError on damage."""
    if link == LINK_ETHERNET:
        return _ethernet(frame, 0)
    if link in (LINK_RAW, LINK_RAW_OPENBSD, LINK_RAW_ALT):
        return _ip(frame, 0)
    if link == LINK_IPV4:
        return _ipv4(frame, 0)
    if link == LINK_IPV6:
        return _ipv6(frame, 0)
    if link == LINK_SLL:
        if len(frame) < 16:
            raise DecodeError("truncated Linux cooked (SLL) header")
        return _ethertype(_U16.unpack_from(frame, 14)[0], frame[16:], 0)
    if link == LINK_SLL2:
        if len(frame) < 20:
            raise DecodeError("truncated Linux cooked (SLL2) header")
        return _ethertype(_U16.unpack_from(frame, 0)[0], frame[20:], 0)
    if link in (LINK_NULL, LINK_LOOP):
        if len(frame) < 4:
            raise DecodeError("truncated loopback header")
        # The family is in the capturing host's byte order (NULL) or network order (LOOP);
        # the IP version nibble is a surer guide than the family numbers, which differ by OS.
        return _ip(frame[4:], 0)
    raise DecodeError(f"unsupported link type {link}")


def _ethernet(frame: bytes, depth: int) -> Decoded:
    if len(frame) < 14:
        raise DecodeError("truncated Ethernet header")
    etype = _U16.unpack_from(frame, 12)[0]
    pos = 14
    while etype in ETH_VLAN_TAGS:
        if len(frame) < pos + 4:
            raise DecodeError("truncated VLAN tag")
        etype = _U16.unpack_from(frame, pos + 2)[0]
        pos += 4
    if etype <= 1500:   # 802.3 length field: LLC frames (STP, CDP ...) carry no IP here
        return None
    return _ethertype(etype, frame[pos:], depth)


def _ethertype(etype: int, data: bytes, depth: int) -> Decoded:
    if etype == ETH_IPV4:
        return _ipv4(data, depth)
    if etype == ETH_IPV6:
        return _ipv6(data, depth)
    if etype in ETH_VLAN_TAGS:
        if len(data) < 4:
            raise DecodeError("truncated VLAN tag")
        return _ethertype(_U16.unpack_from(data, 2)[0], data[4:], depth)
    if etype in ETH_MPLS:
        pos = 0
        while True:  # label stack: 4 bytes each, bottom-of-stack bit ends it
            if len(data) < pos + 4:
                raise DecodeError("truncated MPLS label stack")
            bottom = data[pos + 2] & 0x01
            pos += 4
            if bottom:
                break
        return _ip(data[pos:], depth)
    return None


def _ip(data: bytes, depth: int) -> Decoded:
    if not data:
        raise DecodeError("empty IP packet")
    version = data[0] >> 4
    if version == 4:
        return _ipv4(data, depth)
    if version == 6:
        return _ipv6(data, depth)
    raise DecodeError(f"not an IP packet (version {version})")


def _ipv4(data: bytes, depth: int) -> Decoded:
    if len(data) < 20:
        raise DecodeError("truncated IPv4 header")
    vhl, _tos, total, ident, frag, _ttl, proto, _sum, src, dst = _IPV4.unpack_from(data)
    if vhl >> 4 != 4:
        raise DecodeError(f"bad IPv4 version {vhl >> 4}")
    hl = (vhl & 0x0F) * 4
    if hl < 20 or len(data) < hl:
        raise DecodeError(f"bad IPv4 header length {hl}")
    # total == 0 happens with TCP segmentation offload: the frame length is the truth then.
    end = total if hl <= total <= len(data) else len(data)
    payload = data[hl:end]
    offset = (frag & 0x1FFF) * 8
    more = bool(frag & 0x2000)
    if more or offset:
        s, d = _addr(src), _addr(dst)
        return IpFragment((4, s, d, ident, proto), s, d, proto, offset, more, payload)
    return _transport(proto, _addr(src), _addr(dst), payload, depth)


def _ipv6(data: bytes, depth: int) -> Decoded:
    if len(data) < 40:
        raise DecodeError("truncated IPv6 header")
    vfl, plen, nxt, _hlim, src, dst = _IPV6.unpack_from(data)
    if vfl >> 28 != 6:
        raise DecodeError(f"bad IPv6 version {vfl >> 28}")
    end = 40 + plen if plen and 40 + plen <= len(data) else len(data)
    pos = 40
    while True:
        if nxt in IPV6_EXT or nxt == IPV6_AH:
            if end < pos + 2:
                raise DecodeError("truncated IPv6 extension header")
            size = (data[pos + 1] + 2) * 4 if nxt == IPV6_AH else (data[pos + 1] + 1) * 8
            nxt = data[pos]
            pos += size
            continue
        if nxt == IPV6_FRAGMENT:
            if end < pos + 8:
                raise DecodeError("truncated IPv6 fragment header")
            inner, frag, ident = data[pos], _U16.unpack_from(data, pos + 2)[0], data[pos + 4:pos + 8]
            s, d = _addr(src), _addr(dst)
            return IpFragment((6, s, d, ident, inner), s, d, inner, frag & 0xFFF8, bool(frag & 1),
                              data[pos + 8:end])
        break
    if pos > end:
        raise DecodeError("IPv6 extension headers longer than the packet")
    return _transport(nxt, _addr(src), _addr(dst), data[pos:end], depth)


def decode_ip_payload(proto: int, src: str, dst: str, payload: bytes) -> Decoded:
    """Decode the payload of a reassembled IP datagram."""
    if proto in IPV6_EXT or proto == IPV6_AH:
        # Rare: extension headers after the fragment header. Walk them, then decode.
        pos = 0
        while proto in IPV6_EXT or proto == IPV6_AH:
            if len(payload) < pos + 2:
                raise DecodeError("truncated IPv6 extension header")
            size = (payload[pos + 1] + 2) * 4 if proto == IPV6_AH else (payload[pos + 1] + 1) * 8
            proto = payload[pos]
            pos += size
        payload = payload[pos:]
    return _transport(proto, src, dst, payload, 0)


def _transport(proto: int, src: str, dst: str, payload: bytes, depth: int) -> Decoded:
    if proto == PROTO_UDP:
        if len(payload) < 8:
            raise DecodeError("truncated UDP header")
        sport, dport, ulen, _sum = _UDP.unpack_from(payload)
        # A UDP length larger than what was captured means truncation (snaplen) or offload;
        # take what is there and let the SIP parser judge the message.
        end = ulen if 8 <= ulen <= len(payload) else len(payload)
        return Segment((src, sport), (dst, dport), "udp", payload[8:end])
    if proto == PROTO_TCP:
        if len(payload) < 20:
            raise DecodeError("truncated TCP header")
        sport, dport, seq, _ack, off, flags = _TCP.unpack_from(payload)
        hl = (off >> 4) * 4
        if hl < 20 or hl > len(payload):
            raise DecodeError(f"bad TCP header length {hl}")
        return Segment((src, sport), (dst, dport), "tcp", payload[hl:], seq, flags)
    if depth >= MAX_DEPTH:
        raise DecodeError("too many nested tunnels")
    if proto == PROTO_IPIP:
        return _ipv4(payload, depth + 1)
    if proto == PROTO_IPV6:
        return _ipv6(payload, depth + 1)
    if proto == PROTO_GRE:
        return _gre(payload, depth + 1)
    return None


def _gre(data: bytes, depth: int) -> Decoded:
    if len(data) < 4:
        raise DecodeError("truncated GRE header")
    flags, etype = _U16.unpack_from(data, 0)[0], _U16.unpack_from(data, 2)[0]
    pos = 4
    if flags & 0x8000 or flags & 0x4000:   # checksum and/or routing present: 4 bytes
        pos += 4
    if flags & 0x2000:                      # key
        pos += 4
    has_seq = bool(flags & 0x1000)
    if has_seq:
        pos += 4
    if len(data) < pos:
        raise DecodeError("truncated GRE header")
    inner = data[pos:]
    if etype == ETH_TEB:
        return _ethernet(inner, depth)
    if etype == ETH_ERSPAN_2:
        # Type I has no GRE sequence number and no ERSPAN header; type II has 8 bytes.
        return _ethernet(inner[8:] if has_seq else inner, depth)
    if etype == ETH_ERSPAN_3:
        if len(inner) < 12:
            raise DecodeError("truncated ERSPAN III header")
        skip = 12 + (8 if inner[11] & 0x01 else 0)   # O bit: platform-specific subheader
        return _ethernet(inner[skip:], depth)
    return _ethertype(etype, inner, depth)
