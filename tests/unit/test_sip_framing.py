"""StreamFramer: TCP bytes become whole messages by Content-Length (RFC 3261 18.3)."""

from __future__ import annotations

import pytest

from sipguard.sip import SipParseError, StreamFramer, parse


def message(n: int, body: bytes = b"", cl_name: str = "Content-Length") -> bytes:
    head = (f"OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK{n}\r\n"
            f"From: <sip:a@b>;tag={n}\r\nTo: <sip:x@example.com>\r\nCall-ID: c{n}\r\nCSeq: {n} OPTIONS\r\n"
            f"{cl_name}: {len(body)}\r\n\r\n")
    return head.encode() + body


MESSAGES = [message(1), message(2, b"v=0\r\n"), message(3, b"\r\n\r\nbody with blank lines\r\n\r\n", "l"),
            message(4, bytes(range(256)))]
STREAM = b"".join(MESSAGES)


def test_several_messages_in_one_segment() -> None:
    assert StreamFramer().feed(STREAM) == MESSAGES


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000])
def test_one_message_over_many_segments(chunk: int) -> None:
    framer, out = StreamFramer(), []
    for i in range(0, len(STREAM), chunk):
        out += framer.feed(STREAM[i:i + chunk])
    assert out == MESSAGES and framer.buffered == 0
    assert [parse(m).call_id for m in out] == ["c1", "c2", "c3", "c4"]


def test_crlf_keepalives_between_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [] and framer.buffered == 0
    assert framer.feed(b"\r\n") == []
    assert framer.feed(MESSAGES[0] + b"\r\n\r\n\r\n" + MESSAGES[1][:10]) == [MESSAGES[0]]
    assert framer.feed(MESSAGES[1][10:] + b"\r\n\r\n") == [MESSAGES[1]]
    assert framer.buffered == 0


def test_missing_content_length_on_a_stream() -> None:
    raw = message(1).replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(raw)
    assert "Content-Length" in info.value.reason and info.value.status_hint == 400


def test_two_content_lengths() -> None:
    raw = message(1).replace(b"Content-Length: 0\r\n", b"Content-Length: 0\r\nl: 0\r\n")
    with pytest.raises(SipParseError):
        StreamFramer().feed(raw)


def test_oversize_header_block() -> None:
    framer = StreamFramer(max_size=1000)
    assert framer.feed(b"OPTIONS sip:x SIP/2.0\r\n") == []
    with pytest.raises(SipParseError) as info:
        framer.feed(b"X-Pad: " + b"a" * 1000)
    assert info.value.status_hint == 513


def test_oversize_body_announced() -> None:
    raw = message(1).replace(b"Content-Length: 0", b"Content-Length: 5000")
    with pytest.raises(SipParseError) as info:
        StreamFramer(max_size=4000).feed(raw)
    assert info.value.status_hint == 513


def test_message_exactly_at_the_limit() -> None:
    raw = message(9, b"x" * 100)
    assert StreamFramer(max_size=len(raw)).feed(raw) == [raw]


def test_content_length_spelling() -> None:
    raw = message(1, b"abc").replace(b"Content-Length: 3", b"content-LENGTH :  3 ")
    assert StreamFramer().feed(raw + message(2)) == [raw, message(2)]


def test_good_messages_before_a_bad_one_are_delivered() -> None:
    bad = message(5).replace(b"Content-Length: 0\r\n", b"")
    framer = StreamFramer()
    assert framer.feed(MESSAGES[0] + MESSAGES[1] + bad) == MESSAGES[:2]
    assert framer.error is not None and "Content-Length" in framer.error.reason
    with pytest.raises(SipParseError):
        framer.feed(b"more")


def test_oversize_answer_does_not_depend_on_segmentation() -> None:
    big = message(1).replace(b"Content-Length: 0\r\n", b"X-Pad: " + b"a" * 3000 + b"\r\n")
    for chunk in (len(big), 100, 1):
        framer = StreamFramer(max_size=2000)
        with pytest.raises(SipParseError) as info:
            for i in range(0, len(big), chunk):
                framer.feed(big[i:i + chunk])
        assert info.value.status_hint == 513
