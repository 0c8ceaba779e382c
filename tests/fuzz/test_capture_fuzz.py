"""Bounded fuzzing of capture reading (sipguard/replay/capture.py, decode.py, reassembly.py).

capture.py's promise: a damaged capture is reported, not raised. Whatever the bytes,
``read_sip`` returns the SIP messages it could read and a report of the problems, or raises
``CaptureError`` (not a capture at all); ``decode_frame`` returns a segment, a fragment or
None, or raises ``DecodeError``; the reassemblers take any sequence of fragments and segments.
Seeds: captures built here (every link type and format, IPv4/IPv6, fragments, TCP cut into
segments) and the public captures (tests/data/captures, ../shared/corpus when present).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipguard.replay.capture import CaptureError, CaptureReport, read_sip
from sipguard.replay.decode import (
    LINK_ETHERNET,
    LINK_IPV4,
    LINK_IPV6,
    LINK_LOOP,
    LINK_NULL,
    LINK_RAW,
    LINK_SLL,
    LINK_SLL2,
    DecodeError,
    IpFragment,
    Segment,
    decode_frame,
)
from sipguard.replay.pcapwrite import Message, build_frames, write_capture
from sipguard.replay.reassembly import IpReassembler, TcpReassembler
from sipguard.sip import SipParseError, parse
from tests.fuzz.mutation import IN_DIALOG_BYE, RELAYED_RESPONSE, TRUNK_INVITE, capture_files, mutate_binary

MUTANTS = 1_200
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINKS = (LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LOOP, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2, 12, 14, 999)
BODY = b"v=0\r\n" + b"a=x\r\n" * 500


def built_messages() -> list[Message]:
    big = TRUNK_INVITE.replace(b"Content-Length: 13\r\n\r\nv=0\r\ns=-\r\nx=1",
                               b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
    return [
        Message(TRUNK_INVITE, ("198.51.100.7", 5060), ("192.0.2.1", 5060), 1_700_000_000.25, raw=True),
        Message(big, ("198.51.100.7", 5080), ("192.0.2.1", 5060), 1_700_000_001.0, mtu=600, raw=True),
        Message(big, ("2001:db8::7", 5060), ("2001:db8::1", 5060), 1_700_000_002.0, mtu=1280, raw=True),
        Message(RELAYED_RESPONSE + IN_DIALOG_BYE, ("198.51.100.7", 40000), ("192.0.2.1", 5060), 1_700_000_003.0,
                "tcp", segments=5, raw=True),
        Message(big, ("2001:db8::7", 40001), ("2001:db8::1", 5060), 1_700_000_004.0, "tcp", segments=3, raw=True),
    ]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("captures")
    out = []
    for fmt in ("pcap", "pcapng"):
        for link in ("ethernet", "sll", "raw"):
            out.append(write_capture(folder / f"{link}.{fmt}", built_messages(), link=link,  # type: ignore[arg-type]
                                     fmt=fmt).read_bytes())  # type: ignore[arg-type]
    out += [path.read_bytes() for path in capture_files(max_bytes=40_000)]
    return out


def read(path: Path) -> str:
    """Read a capture as replay does; the outcome label. Any other exception propagates."""
    report = CaptureReport()
    try:
        messages, report = read_sip(path)
    except CaptureError as exc:
        assert str(exc)
        return "not-a-capture"
    assert report.issue_count >= len(report.issues) and report.packets >= 0
    for issue in report.issues:
        assert str(issue)
    report.summary()
    for msg in messages:
        assert msg.transport in ("udp", "tcp") and msg.data
        try:
            parse(msg.data)
        except SipParseError:
            pass
    return "damaged" if report.issue_count else "read"


def test_seed_captures_read(seeds: list[bytes], tmp_path: Path) -> None:
    path = tmp_path / "seed.pcap"
    for data in seeds:
        path.write_bytes(data)
        assert read(path) in ("read", "damaged")


def test_mutated_captures_are_read_or_refused_with_capture_error(seeds: list[bytes], tmp_path: Path) -> None:
    rng = random.Random(2026_12)
    path = tmp_path / "mutant.pcap"
    seen: dict[str, int] = {}
    for index in range(MUTANTS):
        data = rng.choice(seeds)
        # mostly keep the magic, so the mutant reaches the record reader and the decoders
        path.write_bytes(mutate_binary(rng, data, protect=4 if rng.random() < 0.9 else 0))
        try:
            label = read(path)
        except Exception as exc:  # name the reproducer: rerun with this seed and index
            raise AssertionError(f"mutant {index}: {type(exc).__name__}: {exc}") from exc
        seen[label] = seen.get(label, 0) + 1
    assert min(seen.get(k, 0) for k in ("read", "damaged", "not-a-capture")) > 5, seen


@FUZZ
@given(st.sampled_from(LINKS), st.binary(max_size=120))
def test_any_frame_decodes_or_raises_decode_error(link: int, frame: bytes) -> None:
    try:
        decoded = decode_frame(link, frame)
    except DecodeError as exc:
        assert str(exc)
        return
    assert decoded is None or isinstance(decoded, Segment | IpFragment)


def test_mutated_frames_decode_or_raise_decode_error() -> None:
    rng = random.Random(815)
    frames = [(link, frame) for name, link in (("ethernet", LINK_ETHERNET), ("sll", LINK_SLL), ("raw", LINK_RAW))
              for _, frame in build_frames(built_messages(), link=name)]  # type: ignore[arg-type]
    for _ in range(MUTANTS * 4):
        link, frame = rng.choice(frames)
        try:
            decode_frame(link, mutate_binary(rng, frame[:200]))
        except DecodeError:
            pass


FRAGMENT = st.tuples(st.sampled_from([(4, "a", "b", 1, 17), (6, "a", "b", 2, 17)]),
                     st.integers(0, 70_000), st.booleans(), st.binary(max_size=64), st.floats(0, 100))
SEGMENT = st.tuples(st.sampled_from([(("a", 1), ("b", 2)), (("b", 2), ("a", 1))]),
                    st.integers(0, 2**32 - 1) | st.integers(0, 300), st.integers(0, 63),
                    st.sampled_from([TRUNK_INVITE, RELAYED_RESPONSE, b"\r\n", b"junk"]), st.integers(0, 400))


@FUZZ
@given(st.lists(FRAGMENT, max_size=30))
def test_ip_reassembly_takes_any_fragments(fragments: list[tuple[tuple[object, ...], int, bool, bytes, float]]) -> None:
    ip = IpReassembler()
    for key, offset, more, payload, now in fragments:
        whole = ip.add(key, offset, more, payload, now)
        assert whole is None or isinstance(whole, bytes) and len(whole) <= 65535
    ip.finish()


@FUZZ
@given(st.lists(SEGMENT, max_size=30))
def test_tcp_reassembly_takes_any_segments(
        segments: list[tuple[tuple[tuple[str, int], tuple[str, int]], int, int, bytes, int]]) -> None:
    tcp = TcpReassembler()
    for (src, dst), seq, flags, data, cut in segments:
        for msg in tcp.add(src, dst, seq, flags, data[cut:cut + 120]):
            assert isinstance(msg, bytes) and msg
    tcp.finish()
