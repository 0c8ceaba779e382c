"""TCP stream reassembly with SIP framing, and IP fragment reassembly, driven directly."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.replay.reassembly import IpReassembler, TcpReassembler, looks_like_sip

A = ("192.0.2.1", 40000)
B = ("192.0.2.2", 5060)
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04


def msg(n: int, body: bytes = b"") -> bytes:
    return (f"OPTIONS sip:b@example.net SIP/2.0\r\nCall-ID: c{n}\r\nCSeq: {n} OPTIONS\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def feed(segments: list[tuple[int, bytes]], isn: int = 1000, syn: bool = True) -> tuple[list[bytes], TcpReassembler]:
    tcp = TcpReassembler()
    out: list[bytes] = []
    if syn:
        out += tcp.add(A, B, isn - 1, SYN, b"")
    for seq, data in segments:
        out += tcp.add(A, B, seq, ACK, data)
    return out, tcp


@pytest.mark.parametrize("data, expected", [
    (b"INVITE sip:+12025550100@x SIP/2.0\r\n", True),
    (b"SIP/2.0 200 OK\r\n", True),
    (b"SIP/2.0 100\r\n", True),
    (b"\x00junkREGISTER sip:x SIP/2.0\r\n", True),      # the parser, not the reader, rejects it
    (b"GET / HTTP/1.1\r\n", False),
    (b"HTTP/1.1 200 OK\r\n", False),
    (b"SIP/2.0 OK\r\n", False),
    (b"\r\n\r\n", False),
    (b"", False),
])
def test_looks_like_sip(data: bytes, expected: bool) -> None:
    assert looks_like_sip(data) is expected


def test_split_anywhere_and_merged() -> None:
    stream = msg(1) + msg(2, b"body-2") + msg(3)
    for cut in range(1, len(stream)):
        out, _ = feed([(1000, stream[:cut]), (1000 + cut, stream[cut:])])
        assert out == [msg(1), msg(2, b"body-2"), msg(3)], cut


def test_retransmission_and_overlap_are_trimmed() -> None:
    stream = msg(1) + msg(2, b"xyz")
    out, tcp = feed([(1000, stream[:50]), (1000, stream[:50]), (1030, stream[30:80]),
                     (1000, stream[:80]), (1080, stream[80:])])
    assert out == [msg(1), msg(2, b"xyz")]
    assert tcp.retransmissions == 2


def test_out_of_order_segments_wait_for_the_gap() -> None:
    stream = msg(1) + msg(2)
    out, _ = feed([(1060, stream[60:]), (1030, stream[30:60]), (1000, stream[:30])])
    assert out == [msg(1), msg(2)]


def test_sequence_wraps_around() -> None:
    stream = msg(1) + msg(2)
    isn = (1 << 32) - 20
    out, _ = feed([(isn, stream[:40]), ((isn + 40) % (1 << 32), stream[40:])], isn=isn)
    assert out == [msg(1), msg(2)]


def test_mid_stream_start_resyncs_at_next_message() -> None:
    stream = msg(1, b"abc") + msg(2)
    out, tcp = feed([(5000, stream[17:])], syn=False)
    assert out == [msg(2)]
    assert any("non-SIP data skipped" in n for n in tcp.notes)


def test_keepalives_between_messages() -> None:
    stream = b"\r\n\r\n" + msg(1) + b"\r\n\r\n" + msg(2)
    out, tcp = feed([(1000, stream)])
    assert out == [msg(1), msg(2)] and tcp.notes == []


def test_lost_segment_is_skipped_when_too_much_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sipguard.replay.reassembly.MAX_OUT_OF_ORDER", 200)
    first, lost, later = msg(1), msg(2, b"L" * 50), [msg(n) for n in range(3, 8)]
    segments = [(1000, first)]
    seq = 1000 + len(first) + len(lost)
    for m in later:
        segments.append((seq, m))
        seq += len(m)
    out, tcp = feed(segments)
    assert out[0] == msg(1) and out[-1] == msg(7) and msg(2, b"L" * 50) not in out
    assert any("never captured" in n for n in tcp.notes)


def test_fin_inside_a_message_is_reported() -> None:
    tcp = TcpReassembler()
    tcp.add(A, B, 99, SYN, b"")
    assert tcp.add(A, B, 100, ACK | FIN, msg(1)[:30]) == []
    assert any("closed inside a SIP message" in n for n in tcp.notes)


def test_non_sip_stream_is_ignored() -> None:
    tcp = TcpReassembler()
    tcp.add(A, B, 99, SYN, b"")
    http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + msg(1)
    assert tcp.add(A, B, 100, ACK, http) == []
    assert tcp.non_sip_streams == 1 and tcp.notes == []


def test_bad_content_length_delivers_header_then_resyncs() -> None:
    bad = b"INVITE sip:b@x SIP/2.0\r\nContent-Length: abc\r\n\r\nbodybody"
    out, tcp = feed([(1000, bad + msg(2))])
    assert out == [bad[:-8], msg(2)]
    assert any("bad Content-Length" in n for n in tcp.notes)


def test_compact_content_length() -> None:
    m = b"SIP/2.0 200 OK\r\nl: 4\r\n\r\nabcd"
    out, _ = feed([(1000, m + msg(2))])
    assert out == [m, msg(2)]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_segmentation_order_and_duplication_gives_the_same_messages(data: st.DataObject) -> None:
    messages = [msg(i, b"b" * data.draw(st.integers(0, 40))) for i in range(data.draw(st.integers(1, 5)))]
    stream = b"".join(messages)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=12))))
    bounds = [0, *cuts, len(stream)]
    segments = [(1000 + lo, stream[lo:hi]) for lo, hi in zip(bounds, bounds[1:], strict=False)]
    segments += data.draw(st.lists(st.sampled_from(segments), max_size=4))    # retransmissions
    order = data.draw(st.permutations(range(len(segments))))
    out, _ = feed([segments[i] for i in order])
    assert out == messages


# ------------------------------------------------------------------ IP fragments


def test_ip_reassembly_any_order() -> None:
    payload = bytes(range(256)) * 10
    parts = [(o, payload[o:o + 512]) for o in range(0, len(payload), 512)]
    for seed in range(5):
        random.Random(seed).shuffle(parts)
        ip = IpReassembler()
        results = [ip.add(("k",), o, o + 512 < len(payload), p, 0.0) for o, p in parts]
        assert [r for r in results if r is not None] == [payload]
        assert ip.reassembled == 1


def test_ip_reassembly_bounds() -> None:
    ip = IpReassembler()
    assert ip.add(("k",), 65528, True, b"x" * 16, 0.0) is None
    assert "beyond 65535" in ip.notes[-1]
    ip.add(("old",), 0, True, b"a" * 8, 0.0)
    ip.add(("new",), 0, True, b"b" * 8, 100.0)
    assert "timed out" in ip.notes[-1]
    assert ip.add(("old",), 8, False, b"c", 100.0) is None   # its first part expired
    ip.finish()
    assert "incomplete at end of capture" in ip.notes[-1]


def test_ip_fragments_disagreeing_on_length_are_dropped() -> None:
    ip = IpReassembler()
    ip.add(("k",), 8, False, b"x" * 8, 0.0)
    assert ip.add(("k",), 16, False, b"y" * 8, 0.0) is None
    assert "disagree" in ip.notes[-1]
