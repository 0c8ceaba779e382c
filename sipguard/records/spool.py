"""The local spool: records wait here, fsync'd, while the store cannot take them.

Rule 1: a record handed to the writer is either in the store or in a spool file on
disk (fsync'd per batch) -- a Redis outage or a SIGTERM loses nothing.
Rule 2: each entry carries its writer id and sequence number, and the backends
write idempotently on (writer, seq) in any order (SQLite: ``UNIQUE``; Redis: a set of
stored ranges per writer), so flushing a file twice (a crash after the store took a
batch but before the file was removed) duplicates nothing and drops nothing.
Rule 3: a writer owns its files. Several workers share one spool folder; writer W holds
an exclusive ``flock`` on ``writer-W.lock`` from its first spooled record until it exits,
and only the holder of that lock reads, flushes or removes W's files -- so a live writer's
records reach the store in its sequence order, by itself. A lock nobody holds belongs to
a dead writer: the first worker that takes it takes all of W's files over, flushes them in
order and then removes the lock file. (Writers of earlier versions locked each file
instead: a taker leaves W alone while any of W's files is locked.)

Files of writer W: ``records-W.jsonl`` (appended to), ``ready-W-NNNNNN.jsonl`` (rotated
away to be flushed, numbered in order), ``writer-W.lock``. Format: JSON lines
``{"w": writer, "s": seq, "r": {record fields}}``. A torn last line (power loss
mid-write) is skipped when read back. Synchronous code: the writer runs it in a thread
(``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from sipguard.records.record import CallRecord

log = logging.getLogger("sipguard.records")

Entry = tuple[str, int, CallRecord]   # (writer id, sequence number, record)
SUFFIX = ".jsonl"
LOCK_SUFFIX = ".lock"
ACTIVE = 1 << 62                      # the active file sorts after every rotated one
OWN_WAIT = 2.0                        # seconds to wait for our own lock while a taker checks it
OWN_POLL = 0.005


def encode(entry: Entry) -> str:
    writer, seq, record = entry
    return json.dumps({"w": writer, "s": seq, "r": record.to_dict()}, separators=(",", ":"))


def decode(line: str) -> Entry:
    obj = json.loads(line)
    writer, seq = obj["w"], obj["s"]
    # the store refuses a batch with a bad number whole: one bad line must not stall the spool
    if not isinstance(writer, str) or not writer or type(seq) is not int or seq < 1:
        raise ValueError(f"writer {writer!r}, seq {seq!r}: want a name and a sequence number >= 1")
    return writer, seq, CallRecord.from_dict(obj["r"])


def _parse(name: str) -> tuple[str, int | None] | None:
    """(writer, rank) of a spool file name -- rank None for a lock file -- or None."""
    if name.endswith(LOCK_SUFFIX) and name.startswith("writer-"):
        return (name[7:-len(LOCK_SUFFIX)], None) if len(name) > 7 + len(LOCK_SUFFIX) else None
    if not name.endswith(SUFFIX):
        return None
    body = name[:-len(SUFFIX)]
    if body.startswith("records-") and len(body) > 8:
        return body[8:], ACTIVE
    if body.startswith("ready-"):
        writer, _, number = body[6:].rpartition("-")
        if writer and number.isdigit():
            return writer, int(number)
    return None


def _take_lock(path: str) -> IO[bytes] | None:
    """The lock file at ``path``, created if need be and locked without waiting; None when a
    live process holds it."""
    for _ in range(3):
        handle = open(path, "ab")  # noqa: SIM115 - held for as long as the files are ours
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        try:
            held, named = os.fstat(handle.fileno()), os.stat(path)
            if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                return handle
        except FileNotFoundError:
            pass
        # the holder we waited behind removed it (its files are gone): lock the current one
        handle.close()
    return None


@dataclass(slots=True)
class Owner:
    """The lock of a dead writer's files, taken over by this process to flush them."""

    path: str
    handle: IO[bytes] | None
    left: int = 0                      # its claimed files not delivered yet
    files: list[IO[bytes]] = field(default_factory=list)   # its files, locked too (see claim)

    def let_go(self, remove: bool) -> None:
        if self.handle is None:
            return
        if remove:                     # while still locked: nobody can be taking it meanwhile
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        for handle in self.files:
            handle.close()
        self.files.clear()
        self.handle.close()
        self.handle = None

    def lock_files(self, paths: list[str]) -> list[str]:
        """Lock each file too: the paths still there, or [] when a process holds one of them
        (a writer of an earlier version, which locked its files one by one, is alive)."""
        kept = []
        for path in paths:
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed by let_go()
            except FileNotFoundError:
                continue                   # a previous taker delivered it after our listing
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return []
            self.files.append(handle)
            kept.append(path)
        return kept


@dataclass(slots=True)
class Claimed:
    """A spool file to flush, owned by this writer (``owner`` None) or taken over."""

    path: str
    writer: str
    owner: Owner | None = None


@dataclass
class Spool:
    folder: str
    writer: str
    _handle: IO[str] | None = None
    _lock: IO[bytes] | None = None
    _rotations: int = 0
    spooled: int = field(default=0)    # records written to disk since start (a metric)

    @property
    def active_path(self) -> str:
        return os.path.join(self.folder, f"records-{self.writer}{SUFFIX}")

    def lock_path(self, writer: str | None = None) -> str:
        return os.path.join(self.folder, f"writer-{writer or self.writer}{LOCK_SUFFIX}")

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
            self._own()
            self._handle = open(self.active_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        return self._handle

    def _own(self) -> None:
        """Hold this writer's lock before its first file exists, until it exits.

        Another worker's ``claim`` may hold it for a moment: it lists the folder, finds this
        lock file and tries it, in case it is a dead writer's. With no files behind it, the
        taker lets go (and removes the file) at once, so a lock held by someone else is waited
        for, up to ``OWN_WAIT`` seconds; only then is it another live writer with this id."""
        if self._lock is None:
            deadline = time.monotonic() + OWN_WAIT
            while (lock := _take_lock(self.lock_path())) is None:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"{self.lock_path()}: another process holds this writer's lock;"
                                       " each writer needs an id of its own")
                time.sleep(OWN_POLL)
            self._lock = lock

    def has_files(self) -> bool:
        try:
            return any(name.endswith(SUFFIX) for name in os.listdir(self.folder))
        except FileNotFoundError:
            return False

    def claim(self) -> list[Claimed]:
        """Files to flush, each writer's in its sequence order: this writer's own (the active
        file rotated away, so new records start a fresh one), then every file of each dead
        writer whose lock this process could take. A live writer's files are never listed:
        it flushes them itself."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._rotations += 1
            os.replace(self.active_path,
                       os.path.join(self.folder, f"ready-{self.writer}-{self._rotations:06d}{SUFFIX}"))
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        files: dict[str, list[tuple[int, str]]] = {}
        for name in names:
            parsed = _parse(name)
            if parsed is not None:
                writer, rank = parsed
                ranked = files.setdefault(writer, [])
                if rank is not None:
                    ranked.append((rank, os.path.join(self.folder, name)))
        out: list[Claimed] = []
        mine = files.pop(self.writer, [])
        if mine:
            self._own()
            out += [Claimed(path, self.writer) for _, path in sorted(mine)]
        for writer in sorted(files):
            lock = _take_lock(self.lock_path(writer))
            if lock is None:
                continue                               # alive: its files are its own
            owner = Owner(self.lock_path(writer), lock)
            paths = owner.lock_files([path for _, path in sorted(files[writer])])
            if not paths:                              # no files left, or an old version's live writer
                owner.let_go(remove=not any(os.path.exists(path) for _, path in files[writer]))
                continue
            owner.left = len(paths)
            out += [Claimed(path, writer, owner) for path in paths]
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
        """The store has every entry of the file: remove it; a taken-over writer's lock goes
        with its last file."""
        try:
            os.unlink(claimed.path)
        except FileNotFoundError:
            pass
        owner = claimed.owner
        if owner is not None:
            owner.left -= 1
            if owner.left <= 0:
                owner.let_go(remove=True)

    @staticmethod
    def release(claimed: Claimed) -> None:
        """Flushing failed: keep the file for a later attempt (ours stay ours; a dead writer's
        lock is let go, for whichever worker tries next)."""
        if claimed.owner is not None:
            claimed.owner.let_go(remove=False)

    def close(self) -> None:
        """At exit: the lock file goes too unless files are left (then the next worker to
        claim takes them over: the lock is free once this process is gone)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._lock is not None:
            left = False
            try:
                left = any(parsed is not None and parsed[0] == self.writer and parsed[1] is not None
                           for parsed in map(_parse, os.listdir(self.folder)))
            except FileNotFoundError:
                pass
            if not left:
                try:
                    os.unlink(self.lock_path())
                except FileNotFoundError:
                    pass
            self._lock.close()
            self._lock = None
