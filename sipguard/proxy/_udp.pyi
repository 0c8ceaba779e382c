"""sipguard/proxy/_udp.c: UDP datagrams in (recvmmsg) and out (sendto) beside the event loop."""

from collections.abc import Callable
from typing import Any

BATCH: int
ROUNDS: int
BUFSIZE: int

class Reader:
    fd: int
    def __init__(self, fd: int, family: int, deliver: Callable[[bytes, tuple[str, int]], Any],
                 error: Callable[[Exception], Any]) -> None: ...
    def __call__(self) -> None: ...
    def close(self) -> None: ...

def send(fd: int, family: int, data: bytes, addr: tuple[str, int]) -> int: ...
