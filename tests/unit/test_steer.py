"""Transaction steering between workers (sipguard.proxy.steer): who owns a request, the
hand-over frame, and a real socketpair hand-over between two Steering objects."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipguard.proxy.steer import Channels, branch_hash, owner_of, pack, unpack


def request(method: str, branch: str | None, via: str = "Via", extra_via: str = "") -> bytes:
    param = f";branch={branch}" if branch is not None else ""
    return (f"{method} sip:+13036231000@127.0.0.1 SIP/2.0\r\n"
            f"{via}: SIP/2.0/UDP 10.0.0.1:5060;rport{param}{extra_via}\r\n"
            f"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-lower\r\n"
            f"From: <sip:+12127363100@10.0.0.1>;tag=a\r\nTo: <sip:+13036231000@127.0.0.1>\r\n"
            f"Call-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n").encode()


def test_a_transaction_meets_in_one_worker() -> None:
    # INVITE, its retransmission, its CANCEL and the ACK of a non-2xx share the top branch
    branches = [f"z9hG4bK-{n}" for n in range(200)]
    for workers in (2, 3, 8):
        owners = set()
        for branch in branches:
            owner = owner_of(request("INVITE", branch), workers)
            assert owner == owner_of(request("CANCEL", branch), workers) == owner_of(request("ACK", branch), workers)
            owners.add(owner)
        assert owners == set(range(workers))  # and transactions spread over every worker


def test_only_the_top_via_counts() -> None:
    # compact form, odd spacing and case, several values on the top line: the first branch wins
    assert owner_of(request("INVITE", "z9hG4bK-x", via="v"), 1000) == owner_of(request("INVITE", "z9hG4bK-x"), 1000)
    spaced = request("INVITE", None, extra_via=" ; BRANCH = z9hG4bK-x , SIP/2.0/UDP 10.0.0.2;branch=other")
    assert owner_of(spaced, 1000) == owner_of(request("INVITE", "z9hG4bK-x"), 1000)


def test_requests_without_a_branch_stay_where_they_arrived() -> None:
    no_via = b"INVITE sip:x SIP/2.0\r\nFrom: <sip:a@b>\r\nCall-ID: 1\r\n\r\n"
    assert owner_of(no_via, 2) is None
    # RFC 2543 style top Via without branch: the lower Via's branch is used; deterministic
    # for every retransmission, which is all the proxy needs
    assert owner_of(request("INVITE", None), 2) == owner_of(request("INVITE", None), 2)


BIG = 2**63 - 1  # workers so many that the owner is the hash itself


@pytest.mark.parametrize(("data", "branch"), [
    (request("INVITE", "z9hG4bK-x"), b"z9hG4bK-x"),
    (request("INVITE", None), b"z9hG4bK-lower"),                   # the next Via line's branch
    (b"INVITE x SIP/2.0\r\nVia: h;branch=;BRANCH\t=\tz9\r\n", b"z9"),  # the first ';' with a value
    (b"INVITE x SIP/2.0\r\nvIa \t: h;rport;branch=a,b\r\n", b"a"),  # the value ends at ',' (and ';', \s)
    (b"INVITE x SIP/2.0\r\nv:;branch=" + b"q" * 40 + b"\r\n", b"q" * 32),  # 32 bytes hashed
    (b"INVITE x SIP/2.0\r\nVia: h\r\nContent-Length: 20\r\n\r\n\nvia:;branch=body", b"body"),  # any line
    (b"INVITE x SIP/2.0\r\nFrom: <sip:a;branch=f>\r\nVia: h;branch=v\r\n", b"v"),  # Via lines only
    (b"INVITE x SIP/2.0\r\nVia: h;branch=\xc3\xa9\x00\xff;x\r\n", b"\xc3\xa9\x00\xff"),
    (b"INVITE x SIP/2.0\r\nX: " + b"p" * 4055 + b"\r\nVia: h;branch=abcdefgh", b"abcd"),  # cut at 4096
])
def test_the_owner_is_the_hash_of_the_branch_the_regex_finds(data: bytes, branch: bytes) -> None:
    """Whichever path answers (C when built, else the regex), one example per rule of _BRANCH."""
    assert owner_of(data, BIG) == branch_hash(branch)
    assert owner_of(data, 3) == branch_hash(branch) % 3


@pytest.mark.parametrize("data", [
    b"INVITE x SIP/2.0\r\nVia: h;rport\r\n\r\n",
    b"Via: h;branch=x\r\n",                                  # no LF before the name
    b"INVITE x SIP/2.0\r\nVias: h;branch=x\r\n",
    b"INVITE x SIP/2.0\r\nVia: h;branch=\r\n",               # no value
    b"INVITE x SIP/2.0\r\nVia: h;branch x\r\n",
    b"INVITE x SIP/2.0\r\nX: " + b"p" * 4080 + b"\r\nVia: h;branch=x",  # beyond the 4096 bytes
])
def test_no_branch_found(data: bytes) -> None:
    assert owner_of(data, 2) is None


@pytest.mark.parametrize("method", ["BYE", "INFO", "UPDATE", "PRACK", "MESSAGE", "NOTIFY"])
def test_stateless_relays_are_spread_too(method: str) -> None:
    """Any worker could relay them; spreading them keeps one busy peer's load even."""
    owners = {owner_of(request(method, f"z9hG4bK-{n}"), 2) for n in range(40)}
    assert owners == {0, 1}


@given(data=st.binary(max_size=2000), port=st.integers(0, 65535), index=st.integers(0, 255),
       ip=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str))
def test_frame_round_trip(data: bytes, port: int, index: int, ip: str) -> None:
    assert unpack(pack(data, (ip, port), index)) == (data, (ip, port), index)


@given(st.binary(max_size=64))
def test_bad_frames_raise_value_error(frame: bytes) -> None:
    try:
        unpack(frame)
    except ValueError:  # UnicodeDecodeError is one
        pass


@pytest.mark.parametrize("workers", [2, 3])
def test_hand_over_through_the_socketpair(workers: int) -> None:
    async def run() -> None:
        channels = Channels(workers)
        try:
            sides = [channels.for_worker(i) for i in range(workers)]
            got: dict[int, list[tuple[bytes, tuple[str, int], int]]] = {i: [] for i in range(workers)}
            for i, side in enumerate(sides):
                await side.start(lambda d, s, x, i=i: got[i].append((d, s, x)))
            data = [request("INVITE", f"z9hG4bK-{n}") for n in range(60)]
            local = 0
            for msg in data:
                if not sides[0].hand_over(msg, ("2001:db8::7", 5062), 1):
                    local += 1  # owned by worker 0: it handles the request itself
            for _ in range(50):
                if sum(len(v) for v in got.values()) == len(data) - local:
                    break
                await asyncio.sleep(0.01)
            assert got[0] == []
            for i in range(1, workers):
                assert got[i], f"worker {i} got nothing"
                for msg, source, index in got[i]:
                    assert owner_of(msg, workers) == i and source == ("2001:db8::7", 5062) and index == 1
            assert sides[0].counters.steered_out == len(data) - local and sides[0].counters.steer_dropped == 0
            assert sum(side.counters.steered_in for side in sides) == len(data) - local
            for side in sides:
                side.close()
        finally:
            channels.close()

    asyncio.run(run())


def test_steered_receive_hands_over_only_requests_on_listening_udp_sockets() -> None:
    """Steering.wrap: in front of the core's receive, a request that arrived on a listening
    UDP socket and that the other worker owns goes to it; a response, a request this worker
    owns, one on a private socket (index -1) or over TCP goes on to the inner receive."""
    from sipguard.proxy.transport import UdpEndpoint

    async def run() -> None:
        channels = Channels(2)
        try:
            mine, other = channels.for_worker(0), channels.for_worker(1)
            arrived: list[bytes] = []
            await other.start(lambda d, s, x: arrived.append(d))
            inner: list[tuple[bytes, str]] = []
            receive = mine.wrap(lambda d, s, t, c: inner.append((d, t)))
            theirs = next(r for n in range(50) if owner_of(r := request("INVITE", f"z9hG4bK-{n}"), 2) == 1)
            ours = next(r for n in range(50) if owner_of(r := request("INVITE", f"z9hG4bK-{n}"), 2) == 0)
            response = b"SIP/2.0 200 OK\r\n" + theirs.split(b"\r\n", 1)[1]
            listening, private = UdpEndpoint(receive, 0), UdpEndpoint(receive, -1)
            receive(theirs, ("10.0.0.1", 5060), "udp", listening)
            for data, conn, transport in ((ours, listening, "udp"), (response, listening, "udp"),
                                          (theirs, private, "udp"), (theirs, None, "tcp")):
                receive(data, ("10.0.0.1", 5060), transport, conn)
            for _ in range(50):
                if arrived:
                    break
                await asyncio.sleep(0.01)
            assert arrived == [theirs] and mine.counters.steered_out == 1
            assert inner == [(ours, "udp"), (response, "udp"), (theirs, "udp"), (theirs, "tcp")]
            other.close()
        finally:
            channels.close()
    asyncio.run(run())
