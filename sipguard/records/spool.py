"""The local spool: records wait here, fsync'd, while the store cannot take them.

Rule 1: a record handed to the writer is either in the store or in a spool file on
disk (fsync'd per batch) -- a Redis outage or a SIGTERM loses nothing.
Rule 2: each entry carries its writer id and sequence number, and the backends
write idempotently on (writer, seq), so flushing the same file twice (a crash after
the store took a batch but before the file was removed) duplicates nothing.
Rule 3: several workers share one spool folder. A writer appends only to its own
file and holds an exclusive ``flock`` on every file it writes or flushes; a file
nobody holds a lock on was left by a dead process and any writer may flush it.

Format: JSON lines ``{"w": writer, "s": seq, "r": {record fields}}``. A torn last
line (power loss mid-write) is skipped when read back. Synchronous code: the writer
runs it in a thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from sipguard.records.record import CallRecord

log = logging.getLogger("sipguard.records")

Entry = tuple[str, int, CallRecord]   # (writer id, sequence number, record)
SUFFIX = ".jsonl"


def encode(entry: Entry) -> str:
    writer, seq, record = entry
    return json.dumps({"w": writer, "s": seq, "r": record.to_dict()}, separators=(",", ":"))


def decode(line: str) -> Entry:
    obj = json.loads(line)
    return str(obj["w"]), int(obj["s"]), CallRecord.from_dict(obj["r"])


@dataclass(slots=True)
class Claimed:
    """A spool file this writer holds locked while it flushes it."""

    path: str
    handle: IO[str]


@dataclass
class Spool:
    folder: str
    writer: str
    _handle: IO[str] | None = None
    _rotations: int = 0
    spooled: int = field(default=0)    # records written to disk since start (a metric)

    @property
    def active_path(self) -> str:
        return os.path.join(self.folder, f"records-{self.writer}{SUFFIX}")

    def append(self, entries: Iterable[Entry]) -> int:
        """Append entries and fsync: when this returns, they survive a crash."""
        lines = [encode(e) + "\n" for e in entries]
        if not lines:
            return 0
        handle = self._open()
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
        self.spooled += len(lines)
        return len(lines)

    def _open(self) -> IO[str]:
        if self._handle is None:
            os.makedirs(self.folder, exist_ok=True)
            handle = open(self.active_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            self._handle = handle
        return self._handle

    def has_files(self) -> bool:
        try:
            return any(name.endswith(SUFFIX) for name in os.listdir(self.folder))
        except FileNotFoundError:
            return False

    def claim(self) -> list[Claimed]:
        """Files to flush, in the order they must be flushed: this writer's own (rotated
        away, so new records start a fresh file) and any a dead process left behind.
        Sorting by name keeps each writer's files in sequence order ("ready-W-000001" <
        "ready-W-000002" < "records-W"), which the store's high-water mark relies on."""
        out: list[Claimed] = []
        if self._handle is not None:
            self._rotations += 1
            ready = os.path.join(self.folder, f"ready-{self.writer}-{self._rotations:06d}{SUFFIX}")
            os.replace(self.active_path, ready)
            out.append(Claimed(ready, self._handle))   # still locked by us
            self._handle = None
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return out
        mine = {c.path for c in out}
        for name in names:
            path = os.path.join(self.folder, name)
            if not name.endswith(SUFFIX) or path in mine or path == self.active_path:
                continue
            try:
                handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by done()/release()
            except FileNotFoundError:
                continue                               # another writer just finished it
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()                         # a live writer owns it
                continue
            if not os.path.exists(path):               # flushed and removed meanwhile
                handle.close()
                continue
            out.append(Claimed(path, handle))
        out.sort(key=lambda c: os.path.basename(c.path))
        return out

    @staticmethod
    def read(claimed: Claimed) -> list[Entry]:
        entries: list[Entry] = []
        with open(claimed.path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    log.warning("spool %s: torn last line %d skipped", claimed.path, number)
                    break
                try:
                    entries.append(decode(line))
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("spool %s:%d: unreadable entry skipped (%s)", claimed.path, number, exc)
        return entries

    @staticmethod
    def done(claimed: Claimed) -> None:
        """The store has every entry of the file: remove it, then let go of the lock."""
        try:
            os.unlink(claimed.path)
        except FileNotFoundError:
            pass
        claimed.handle.close()

    @staticmethod
    def release(claimed: Claimed) -> None:
        """Flushing failed: keep the file for a later attempt (by us or anyone)."""
        claimed.handle.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
