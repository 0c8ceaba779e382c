"""bench/bench_floor.py: the floor relays what it can read and drops the rest without raising
(a benchmark tool on loopback, but a datagram it cannot read must not end in its handler)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_floor import Floor  # noqa: E402

BYE = (b"BYE sip:bob@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n"
       b"Max-Forwards: %s\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c1\r\n"
       b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")


class Sent:
    def __init__(self) -> None:
        self.out: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.out.append((data, addr))


def floor() -> tuple[Floor, Sent]:
    proto = Floor(ec.generate_private_key(ec.SECP256R1()).public_key(), False, b"127.0.0.1:5060",
                  ("127.0.0.1", 5070), True)
    sent = Sent()
    proto.connection_made(sent)  # type: ignore[arg-type]
    return proto, sent


def test_a_bye_is_relayed_with_one_hop_less() -> None:
    proto, sent = floor()
    proto.datagram_received(BYE % b"70", ("127.0.0.1", 5061))
    assert len(sent.out) == 1
    data, addr = sent.out[0]
    assert addr == ("127.0.0.1", 5070)
    assert b"\r\nMax-Forwards: 69\r\n" in data and data.startswith(b"BYE sip:bob@")


@pytest.mark.parametrize("hops", [b"seventy", b"", b"0x10"])
def test_a_max_forwards_it_cannot_read_drops_the_request(hops: bytes) -> None:
    proto, sent = floor()
    proto.datagram_received(BYE % hops, ("127.0.0.1", 5061))
    assert sent.out == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_datagram_is_relayed_or_dropped_without_raising(data: bytes) -> None:
    proto, _ = floor()
    proto.datagram_received(data, ("127.0.0.1", 5061))
    proto.datagram_received(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfl1, " + data
                            + b"\r\n\r\n", ("127.0.0.1", 5070))
