"""The one reader of a process's resident memory (observe/procmem.py), used by the collector
pacing and the metrics' process collector: it reads what the kernel counts, and 0 when it cannot."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

from sipguard.observe import metrics, procmem
from sipguard.observe.procmem import resident_bytes

MB = 1 << 20


def _stat_rss() -> int:
    """The other source: the rss field of /proc/self/stat, in pages."""
    with open("/proc/self/stat", "rb") as fh:
        return int(fh.read().rsplit(b")", 1)[-1].split()[21]) * os.sysconf("SC_PAGE_SIZE")


def test_reads_this_process_as_proc_stat_does() -> None:
    used = resident_bytes()
    assert used > 10 * MB   # a Python process with the test suite loaded
    assert abs(used - _stat_rss()) < 4 * MB   # two reads a moment apart of the same count
    assert resident_bytes(os.getpid()) == pytest.approx(used, abs=4 * MB)


def test_follows_what_the_process_touches() -> None:
    used = resident_bytes()
    keep = bytearray(64 * MB)
    keep[::4096] = b"x" * len(keep[::4096])   # touch every page: resident now
    assert resident_bytes() >= used + 60 * MB


def test_the_process_collector_reads_it() -> None:
    got = {f.samples[0].name: f.samples[0].value for f in metrics.AllProcesses().collect()}
    assert got["process_resident_memory_bytes"] == pytest.approx(resident_bytes(), abs=4 * MB)


@pytest.mark.parametrize("body", [b"", b"123", b"123 many 7", b"12 \xff\xfe 3", b"1 -", b"1 2.5 3"])
def test_a_file_that_does_not_read_as_statm_gives_0(monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    monkeypatch.setattr(procmem, "open", lambda *a, **kw: io.BytesIO(body), raising=False)
    assert resident_bytes() == 0


def test_an_unreadable_file_gives_0(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kw: Any) -> Any:
        raise PermissionError(13, "Permission denied", args[0])

    monkeypatch.setattr(procmem, "open", refuse, raising=False)
    assert resident_bytes() == 0


def test_a_process_that_is_gone_gives_0() -> None:
    assert resident_bytes(2 ** 22 + 1) == 0   # above Linux's largest pid (pid_max at most 2**22)
