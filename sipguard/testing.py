"""sipguard's pytest plugin (entry point ``pytest11: sipguard``).

Operators replay captures through their own config in their own test suites::

    def test_new_policy_blocks_the_robocaller(replay):
        decisions = replay("captures/monday.pcap", config="sipguard.yaml", policy="new.yaml")
        assert [d.action for d in decisions] == ["forward", "reject"]
        assert decisions[1].status == 603 and decisions[1].rule == "do-not-originate"

and build captures from SIP message texts with the pcapwrite helpers re-exported here
(``Message``, ``write_capture``, ``write_sip_capture``, ``build_frames``).

pytest imports this module at start-up whenever sipguard is installed, so it must
import cleanly and cheaply at all times: everything heavy is imported on first use.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sipguard.config import Config
    from sipguard.replay.capture import CaptureReport
    from sipguard.replay.runner import ReplayDecision

_PCAPWRITE = ("Message", "build_frames", "write_capture", "write_sip_capture")


def __getattr__(name: str) -> Any:
    # Re-exports without importing dpkt at pytest start-up.
    if name in _PCAPWRITE:
        from sipguard.replay import pcapwrite
        return getattr(pcapwrite, name)
    raise AttributeError(name)


class Decisions(list["ReplayDecision"]):
    """The decisions of one replay, in capture order, with the capture ``report``."""

    report: CaptureReport


def _x5u(x5u_map: str | Path | Mapping[str, bytes | str | Path] | None) -> dict[str, bytes] | None:
    from sipguard.replay.runner import load_x5u_map

    if x5u_map is None:
        return None
    if isinstance(x5u_map, (str, Path)):
        return load_x5u_map(str(x5u_map))
    return {url: pem if isinstance(pem, bytes) else Path(pem).read_bytes() for url, pem in x5u_map.items()}


def replay_capture(capture: str | Path, config: str | Path | Config, *, policy: str | Path | None = None,
                   clock: str | float = "capture",
                   x5u_map: str | Path | Mapping[str, bytes | str | Path] | None = None,
                   ports: Collection[int] | None = None) -> Decisions:
    """Replay ``capture`` through the pipeline built from ``config`` (a path or a Config).

    Works from plain and from async tests (then it runs on a private event loop in a thread).
    """
    from sipguard.config import load_config
    from sipguard.replay.capture import CaptureReport
    from sipguard.replay.runner import replay

    cfg = load_config(str(config)) if isinstance(config, (str, Path)) else config
    result = Decisions()
    result.report = CaptureReport()

    async def go() -> None:
        async for d in replay(capture, cfg, policy=str(policy) if policy else None, clock=clock,
                              x5u_map=_x5u(x5u_map), ports=ports, report=result.report):
            result.append(d)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(go())
        return result
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            asyncio.run(go())
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
    worker = threading.Thread(target=in_thread, name="sipguard-replay")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return result


@pytest.fixture
def replay() -> Callable[..., Decisions]:
    """``replay(capture, config=..., policy=None, clock="capture", x5u_map=None, ports=None)``
    -> the decisions (objects with .action .status .rule .verstat .attest .reasons .caller
    .callee .trunk .spc .signed .call_id .time .source), with ``.report`` for the capture."""
    return replay_capture
