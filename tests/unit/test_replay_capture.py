"""Capture reading on captures built here: every link type, tunnel and damage case."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest

from sipguard.replay.capture import CaptureError, iter_packets, read_sip
from sipguard.replay.pcapwrite import Message, build_frames, write_capture, write_sip_capture

INVITE = ("INVITE sip:+12025550100@example.net SIP/2.0\n"
          "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{n}\n"
          "From: <sip:+442071234567@example.org>;tag=a\nTo: <sip:+12025550100@example.net>\n"
          "Call-ID: call-{n}\nCSeq: 1 INVITE\nContent-Length: {cl}\n\n{body}")


def invite(n: int = 1, body: str = "") -> str:
    # Content-Length counts the body as sent, with CRLF line ends.
    return INVITE.format(n=n, cl=len(body.replace("\n", "\r\n").encode()), body=body)


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def _write_frames(path: Path, link: int, frames: list[bytes], start: float = 1_700_000_000.0) -> Path:
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=link, snaplen=262144)
        for i, frame in enumerate(frames):
            writer.writepkt(frame, ts=start + i)
    return path


def _raw_packets(*messages: Message) -> list[bytes]:
    return [frame for _, frame in build_frames(messages, link="raw")]


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("link", ["ethernet", "sll", "raw"])
def test_round_trip_udp_tcp_v4_v6(tmp_path: Path, fmt: str, link: str) -> None:
    body = "v=0\n" + "a=x\n" * 900
    messages = [
        Message(invite(1), ("198.51.100.7", 5060), ("192.0.2.1", 5060), 1_700_000_000.25),
        Message(invite(2, body), ("198.51.100.7", 5080), ("192.0.2.1", 5060), 1_700_000_001.5, mtu=1500),
        Message(invite(3, body), ("2001:db8::7", 5060), ("2001:db8::1", 5060), 1_700_000_002.0, mtu=1280),
        Message(invite(4, body), ("198.51.100.7", 40000), ("192.0.2.1", 5060), 1_700_000_003.0, "tcp",
                segments=7),
        Message(invite(5), ("2001:db8::7", 40001), ("2001:db8::1", 5060), 1_700_000_004.0, "tcp"),
    ]
    path = write_capture(tmp_path / f"c.{fmt}", messages, link=link, fmt=fmt)  # type: ignore[arg-type]
    msgs, report = read_sip(path)
    assert [m.data for m in msgs] == [m.payload() for m in messages]
    assert [(m.src, m.dst, m.transport) for m in msgs] == [(m.src, m.dst, m.transport) for m in messages]
    assert [m.time for m in msgs] == pytest.approx([m.time for m in messages], abs=1e-6)
    assert report.fragments_reassembled == 2
    assert report.issue_count == 0


def test_several_messages_in_one_tcp_segment_and_split_start_line(tmp_path: Path) -> None:
    two = wire(invite(1)) + wire(invite(2, "hello"))
    messages = [Message(two[:5], transport="tcp", raw=True),      # split inside "INVITE"
                Message(two[5:], transport="tcp", raw=True, time=1_700_000_001.0)]
    msgs, _ = read_sip(write_capture(tmp_path / "c.pcap", messages))
    assert [m.data for m in msgs] == [wire(invite(1)), wire(invite(2, "hello"))]
    assert [m.time for m in msgs] == [1_700_000_001.0, 1_700_000_001.0]


def test_write_sip_capture_convenience(tmp_path: Path) -> None:
    path = write_sip_capture(tmp_path / "c.pcapng", [invite(1), invite(2)], interval=0.5, fmt="pcapng")
    msgs, _ = read_sip(path)
    assert [m.time - msgs[0].time for m in msgs] == [0.0, 0.5]
    assert msgs[0].src == ("192.0.2.10", 5060)


# ------------------------------------------------------------------ link layers and tunnels


def _eth(etype: int, payload: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    tags = b"".join(struct.pack("!HH", tpid, 100) for tpid in vlans)
    first = vlans[0] if vlans else etype
    rest = tags[2:] + struct.pack("!H", etype) if vlans else b""
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", first) + rest + payload


def _ipv4(proto: int, payload: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                       bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + payload


def _cases() -> list[tuple[str, int, bytes]]:
    (v4,) = _raw_packets(Message(invite(1)))
    (v6,) = _raw_packets(Message(invite(1), ("2001:db8::a", 5060), ("2001:db8::b", 5060)))
    eth = _eth(0x0800, v4)
    erspan2 = struct.pack("!HHI", 0x1000, 0x88BE, 7) + bytes(8) + eth
    erspan3 = struct.pack("!HHI", 0x1000, 0x22EB, 7) + bytes(12) + eth
    erspan3_sub = struct.pack("!HHI", 0x1000, 0x22EB, 7) + bytes(11) + b"\x01" + bytes(8) + eth
    gre_ip = struct.pack("!HH", 0x2000, 0x0800) + b"KEY!" + v4
    return [
        ("ethernet", 1, eth),
        ("vlan", 1, _eth(0x0800, v4, (0x8100,))),
        ("qinq", 1, _eth(0x86DD, v6, (0x88A8, 0x8100))),
        ("mpls", 1, _eth(0x8847, struct.pack("!I", (16 << 12) | 0x100 | 64) + v4)),
        ("sll", 113, struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800) + v4),
        ("sll2", 276, struct.pack("!HHIHBB8s", 0x86DD, 0, 2, 1, 0, 6, bytes(8)) + v6),
        ("null-le", 0, struct.pack("<I", 2) + v4),
        ("null-v6", 0, struct.pack("<I", 30) + v6),
        ("loop", 108, struct.pack("!I", 2) + v4),
        ("raw", 101, v6),
        ("raw-12", 12, v4),
        ("ipv4-228", 228, v4),
        ("ipv6-229", 229, v6),
        ("ipip", 101, _ipv4(4, v4)),
        ("ip6-in-ip4", 101, _ipv4(41, v6)),
        ("gre-ip", 1, _eth(0x0800, _ipv4(47, gre_ip))),
        ("gre-teb", 1, _eth(0x0800, _ipv4(47, struct.pack("!HH", 0, 0x6558) + eth))),
        ("erspan-1", 1, _eth(0x0800, _ipv4(47, struct.pack("!HH", 0, 0x88BE) + eth))),
        ("erspan-2", 1, _eth(0x0800, _ipv4(47, erspan2))),
        ("erspan-3", 1, _eth(0x0800, _ipv4(47, erspan3))),
        ("erspan-3-subheader", 1, _eth(0x0800, _ipv4(47, erspan3_sub))),
    ]


@pytest.mark.parametrize("name, link, frame", _cases(), ids=[c[0] for c in _cases()])
def test_link_types_and_tunnels(tmp_path: Path, name: str, link: int, frame: bytes) -> None:
    msgs, report = read_sip(_write_frames(tmp_path / "c.pcap", link, [frame]))
    assert [m.data for m in msgs] == [wire(invite(1))], report.issues
    assert msgs[0].src[1] == 5060
    assert report.issue_count == 0


def test_non_ip_frames_are_skipped_quietly(tmp_path: Path) -> None:
    arp = _eth(0x0806, bytes(28))
    llc = b"\x01\x80\xc2\x00\x00\x00" + b"\x04" * 6 + struct.pack("!H", 38) + bytes(38)
    icmp = _eth(0x0800, _ipv4(1, bytes(16)))
    msgs, report = read_sip(_write_frames(tmp_path / "c.pcap", 1, [arp, llc, icmp]))
    assert msgs == [] and report.packets == 3 and report.issue_count == 0


# ------------------------------------------------------------------ fragments out of order


def test_ipv4_fragments_out_of_order_duplicated_and_interleaved(tmp_path: Path) -> None:
    body = "x" * 4000
    a = _raw_packets(Message(invite(1, body), mtu=576))
    b = _raw_packets(Message(invite(2, body), ("192.0.2.11", 5060), mtu=1000))
    assert len(a) > 5 and len(b) > 3
    frames = [a[-1], b[1], a[2], a[0], b[0], a[2]] + a[3:-1] + [a[1]] + b[2:]
    msgs, report = read_sip(_write_frames(tmp_path / "c.pcap", 101, frames))
    assert sorted(m.data for m in msgs) == sorted([wire(invite(1, body)), wire(invite(2, body))])
    assert report.fragments_reassembled == 2


def test_ipv6_fragments_reversed(tmp_path: Path) -> None:
    frames = _raw_packets(Message(invite(1, "y" * 3000), ("2001:db8::1", 5060), ("2001:db8::2", 5060),
                                  mtu=1280))
    msgs, report = read_sip(_write_frames(tmp_path / "c.pcap", 101, frames[::-1]))
    assert [m.data for m in msgs] == [wire(invite(1, "y" * 3000))]


def test_missing_fragment_is_reported_at_end(tmp_path: Path) -> None:
    frames = _raw_packets(Message(invite(1, "z" * 3000), mtu=1500))
    msgs, report = read_sip(_write_frames(tmp_path / "c.pcap", 101, frames[:-1]))
    assert msgs == []
    assert any("incomplete at end of capture" in str(i) for i in report.issues)


# ------------------------------------------------------------------ damaged and wrong files


def test_truncated_file_yields_what_was_read(tmp_path: Path) -> None:
    path = write_sip_capture(tmp_path / "c.pcap", [invite(1), invite(2), invite(3)])
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    msgs, report = read_sip(path)
    assert [m.data for m in msgs] == [wire(invite(1)), wire(invite(2))]
    assert report.issue_count == 1 and "truncated" in str(report.issues[0])
    assert report.issues[0].packet == 3


def test_truncated_pcapng_yields_what_was_read(tmp_path: Path) -> None:
    path = write_sip_capture(tmp_path / "c.pcapng", [invite(1), invite(2)], fmt="pcapng")
    path.write_bytes(path.read_bytes()[:-30])
    msgs, report = read_sip(path)
    assert [m.data for m in msgs] == [wire(invite(1))]
    assert report.issue_count == 1


def test_garbage_frames_are_reported_by_number(tmp_path: Path) -> None:
    (good,) = _raw_packets(Message(invite(1)))
    frames = [b"\x45\x00", b"\x60" + bytes(10), b"\x4f" + bytes(30), good[:24], b"\x99" * 60, good]
    msgs, report = read_sip(_write_frames(tmp_path / "c.pcap", 101, frames))
    assert [m.data for m in msgs] == [wire(invite(1))]
    assert [i.packet for i in report.issues] == [1, 2, 3, 4, 5]
    assert "truncated IPv4 header" in str(report.issues[0])
    assert str(report.issues[0]).startswith("packet 1: ")


def test_unknown_link_type_is_reported_once(tmp_path: Path) -> None:
    msgs, report = read_sip(_write_frames(tmp_path / "c.pcap", 147, [b"abc", b"def"]))
    assert msgs == [] and report.issue_count == 1
    assert "unsupported link type 147" in str(report.issues[0])


@pytest.mark.parametrize("content, words", [
    (b"", "empty file"),
    (b"hello world, not a capture", "not a pcap or pcapng capture"),
    (b"\xd4\xc3\xb2\xa1\x02", "unreadable pcap header"),
])
def test_not_a_capture_raises_capture_error(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=words):
        read_sip(path)


def test_missing_file_raises_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open capture"):
        list(iter_packets(tmp_path / "nope.pcap"))


def test_non_sip_udp_is_counted(tmp_path: Path) -> None:
    frames = _raw_packets(Message(b"\x80\x00rtp-ish payload", raw=True),
                          Message(b"\r\n\r\n", raw=True), Message(invite(1)))
    msgs, report = read_sip(_write_frames(tmp_path / "c.pcap", 101, frames))
    assert len(msgs) == 1 and report.non_sip == 1   # CRLF keep-alives are not counted
