"""Kernel transaction steering: the reuseport program sends each request to the socket
``steer.owner_of`` names, on a real reuseport group of this kernel."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.addresses import Listen
from sipguard.proxy.reuseport import MAX_INSNS, NOT_FOUND, SCAN, attach, program
from sipguard.proxy.steer import branch_hash, owner_of
from sipguard.proxy.transport import reuseport_group
from tests.sipclient import free_port


def request(method: str, branch: str, uri: str = "sip:+13036231000@127.0.0.1:5060;user=phone",
            via: str = "Via", extra: str = "") -> bytes:
    return (f"{method} {uri} SIP/2.0\r\n{extra}{via}: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport\r\n"
            "From: <sip:+12127363100@192.0.2.10>;tag=a\r\nTo: <sip:+13036231000@127.0.0.1>\r\n"
            f"Call-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n").encode()


def deliver(group: list[socket.socket], messages: list[bytes]) -> dict[bytes, int]:
    """Send each message to the group's address; which member read it."""
    port = group[0].getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for message in messages:
            sender.sendto(message, ("127.0.0.1", port))
    got: dict[bytes, int] = {}
    deadline = time.monotonic() + 2
    while len(got) < len(messages) and time.monotonic() < deadline:
        for index, sock in enumerate(group):
            try:
                got[sock.recv(65535)] = index
            except BlockingIOError:
                pass
    return got


@pytest.fixture(params=[2, 3])
def group(request: pytest.FixtureRequest) -> object:
    members = request.param
    made = reuseport_group(Listen("udp", "127.0.0.1", free_port()), members)
    if not attach(made[0], members):
        pytest.skip("this kernel refuses reuseport programs")
    yield made
    for sock in made:
        sock.close()


def test_the_program_fits_and_answers_past_the_group_when_it_finds_no_branch() -> None:
    insns = program(2)
    assert len(insns) <= MAX_INSNS
    assert insns[7 * SCAN] == (0x06, 0, 0, NOT_FOUND)


def test_the_kernel_picks_the_owner_workers_compute(group: list[socket.socket]) -> None:
    members = len(group)
    messages = []
    for n in range(200):
        branch = ["z9hG4bK-{n}-1-0", "z9hG4bKsg{n:016x}", "z9hG4bK{n}", "z9hG4bK.{n}.very-long-branch-past-32-bytes"][n % 4]
        method = ["INVITE", "CANCEL", "ACK", "BYE"][n % 4]
        messages.append(request(method, branch.format(n=n), extra=f"X-N: {n}\r\n"))
    got = deliver(group, messages)
    assert len(got) == len(messages)
    for message, index in got.items():
        assert index == owner_of(message, members), message[:120]
    assert len(set(got.values())) == members  # spread, not all on one


def test_an_invite_and_its_cancel_and_ack_meet(group: list[socket.socket]) -> None:
    branch = "z9hG4bK-77-3-0"
    messages = [request(m, branch, extra=f"X-M: {m}\r\n") for m in ("INVITE", "CANCEL", "ACK")]
    assert len(set(deliver(group, messages).values())) == 1


@settings(max_examples=60, deadline=None)
@given(branch=st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._!%*+`'~", min_size=1,
                      max_size=60),
       uri_len=st.integers(0, 300), compact=st.booleans())
def test_any_branch_and_position_goes_to_its_owner(branch: str, uri_len: int, compact: bool) -> None:
    made = reuseport_group(Listen("udp", "127.0.0.1", free_port()), 2)
    try:
        if not attach(made[0], 2):
            pytest.skip("this kernel refuses reuseport programs")
        message = request("INVITE", "z9hG4bK" + branch, uri="sip:" + "u" * uri_len + "@127.0.0.1",
                          via="v" if compact else "Via")
        [(_, index)] = deliver(made, [message]).items()
        if message.find(b"branch=") < SCAN:  # in the program's reach: the same owner
            assert index == owner_of(message, 2)
    finally:
        for sock in made:
            sock.close()


def test_the_hash_is_the_programs() -> None:
    assert branch_hash(b"") == 0
    assert branch_hash(b"ab") == (ord("a") * 31 + ord("b"))
    assert branch_hash(b"x" * 40) == branch_hash(b"x" * 32)
