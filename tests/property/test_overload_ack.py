"""``relay.overload_ack`` against its definition: the To tag the regular expression finds in the
head starts with the prefix. The function first looks for the prefix anywhere in the head (no
prefix there, no such tag: most ACKs end at that look); the answers must be the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.sip.relay import _ACK_TO_TAG, overload_ack


def definition(data: bytes, tag_prefix: bytes) -> bool:
    end = data.find(b"\r\n\r\n") if data[:4] == b"ACK " else -1
    if end < 0:
        return False
    m = _ACK_TO_TAG.search(data, 0, end)
    return m is not None and m.group(1).startswith(tag_prefix)


PREFIX = st.sampled_from([b"sgx", b"", b"x", b"SGX", b"sg"])
PIECE = st.sampled_from([b"ACK ", b"sip:b@h SIP/2.0", b"\r\n", b"\r\n\r\n", b"To", b"t", b"TO", b" ", b"\t",
                         b":", b";", b"tag", b"TAG", b"=", b"sgx", b"sgx0011", b"uas", b"<sip:b@h>", b">", b",",
                         b"From: <sip:a@h>;tag=sgx1", b"Via: SIP/2.0/UDP h;branch=z9hG4bKsgx", b"sg", b"x", b"\n"])


@settings(max_examples=3000)
@given(st.lists(PIECE, max_size=30).map(b"".join), PREFIX)
def test_overload_ack_is_its_definition_on_ack_shaped_bytes(body: bytes, prefix: bytes) -> None:
    data = b"ACK " + body
    assert overload_ack(data, prefix) == definition(data, prefix)


@given(st.binary(max_size=400), PREFIX)
def test_overload_ack_is_its_definition_on_any_bytes(data: bytes, prefix: bytes) -> None:
    assert overload_ack(data, prefix) == definition(data, prefix)
    assert overload_ack(b"ACK " + data, prefix) == definition(b"ACK " + data, prefix)
