"""A process's resident memory, read the one way sipguard reads it: the worker's collector
pacing (proxy/gcpacing.py) asks twice a second, the metrics' process collector at each scrape.

Only /proc/self or /proc/PID: the systemd units set ProcSubset=pid, which hides the rest of
/proc (observe/metrics.AllProcesses)."""

from __future__ import annotations

import os

_PAGE = os.sysconf("SC_PAGE_SIZE")   # fixed for the life of the process: asked once


def resident_bytes(pid: int | str = "self") -> int:
    """The resident memory of a process, this one by default (Linux: /proc/PID/statm, one
    read); 0 where unknown (no /proc, a process gone or not ours to read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0
