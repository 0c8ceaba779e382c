"""Admin side of the Redis store: imports, lists, notices (several round trips, may raise).

Imports write a new generation of keys, then switch the pointer in the meta hash with one
HSET, then UNLINK the old generation: a call sees the old snapshot or the new, never a mix.
One import of a kind runs at a time (a lock key); leftovers of an interrupted import are
swept by the next one. Whole-hash replacements (OCN map, lists file) build the new hash
aside and RENAME it over the live one. ``RedisStore`` (redis.py) inherits these methods.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError

from sipguard.errors import SipguardError
from sipguard.store.base import (
    MAX_RMD_CHANGES,
    ImportReport,
    ListEntry,
    Notice,
    OcnMapping,
    RmdChange,
    RmdRecord,
    check_list_args,
)
from sipguard.store.connect import RedisTarget
from sipguard.store.keys import KeySchema, frn10, split_record
from sipguard.store.tables import (
    build_rmd,
    list_field,
    list_value,
    listed_filings,
    normalise_list_value,
    normalise_notice,
    notice_from_json,
    notice_json,
    parse_list_field,
)
from sipguard.threats import ThreatEntry, entries_to_json

T = TypeVar("T")
BATCH = 1000          # field/value pairs (or set members) per command on import
PIPELINE_DEPTH = 50   # commands per pipeline round trip on import
LOCK_MS = 600_000     # an import lock outlives no crashed import by more than this


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pack(command: str, key: str, args: Sequence[str]) -> bytes:
    """RESP encoding of one command (what redis-py's packer does, in fewer steps)."""
    parts = [command.encode(), key.encode(), *(a.encode() for a in args)]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class RedisAdmin:
    target: RedisTarget
    keys: KeySchema
    _client: Any

    # -- admin helpers -----------------------------------------------------------------------
    async def _admin(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        if self._client is None:
            raise SipguardError(f"store {self.target.redacted()}: not started")
        try:
            return await op()
        except RedisError as exc:
            raise SipguardError(f"store {self.target.redacted()}: {what} failed: {exc}") from None
        except OSError as exc:
            raise SipguardError(f"store {self.target.redacted()}: {what} failed: {exc.strerror or exc}") from None

    async def _hset_batches(self, key: str, mapping: dict[str, str]) -> None:
        await self._bulk("HSET", key, [x for pair in mapping.items() for x in pair], 2 * BATCH)

    async def _bulk(self, command: str, key: str, args: Sequence[str], per_command: int) -> None:
        """``command key args...`` in chunks, pipelined, for imports of millions of values.

        Outside Cluster the commands are encoded here and written on one connection: redis-py's
        generic encoder costs ~1.8 µs per argument, which made a 2M-entry DNO list take
        seconds of pure packing; this costs a quarter of that.
        """
        chunks = _chunks(args, per_command)
        if self.target.cluster:
            async with self._client.pipeline(transaction=False) as pipe:
                pending = 0
                for chunk in chunks:
                    pipe.execute_command(command, key, *chunk)
                    pending += 1
                    if pending >= PIPELINE_DEPTH:
                        await pipe.execute()
                        pending = 0
                if pending:
                    await pipe.execute()
            return
        pool = self._client.connection_pool
        conn = await pool.get_connection()
        try:
            pending = 0
            for chunk in chunks:
                await conn.send_packed_command(_pack(command, key, chunk), check_health=False)
                pending += 1
                if pending >= PIPELINE_DEPTH:
                    for _ in range(pending):
                        await conn.read_response()     # raises ResponseError on an error reply
                    pending = 0
            for _ in range(pending):
                await conn.read_response()
        except BaseException:
            await conn.disconnect()                    # replies may be pending: never reuse it
            raise
        finally:
            await pool.release(conn)

    async def _new_gen(self) -> str:
        return str(await self._client.hincrby(self.keys.meta, "gen", 1))

    async def _hgetall(self, key: str) -> dict[str, str]:
        raw = await self._client.hgetall(key)
        return {_s(k): _s(v) for k, v in raw.items()}

    async def _exclusive(self, name: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run an import alone: two at once would both diff against the same old snapshot."""
        key = f"{self.keys.base}lock:{name}"
        token = os.urandom(8).hex()
        if not await self._client.set(key, token, nx=True, px=LOCK_MS):
            raise SipguardError(f"another {name} import is running on this store; retry when it ends "
                                f"(a crashed import's lock expires after {LOCK_MS // 60000} min)")
        try:
            return await op()
        finally:
            if _s(await self._client.get(key) or b"") == token:
                await self._client.delete(key)

    async def _sweep(self, kind: str, keep: str) -> None:
        """Unlink generations an interrupted import left behind (never the one in force)."""
        stale = [k async for k in self._client.scan_iter(match=f"{self.keys.base}{kind}:*", count=1000)
                 if not _s(k).startswith(f"{self.keys.base}{kind}:{keep}:") and _s(k) != f"{self.keys.base}{kind}:{keep}"]
        if stale:
            await self._client.unlink(*stale)

    # -- datasets -------------------------------------------------------------------------------
    async def import_rmd(self, records: Sequence[RmdRecord], snapshot: str,
                         removed: Sequence[RmdRecord] = ()) -> ImportReport:
        async def run() -> ImportReport:
            old = _s(await self._client.hget(self.keys.meta, "rmd_gen") or b"")
            previous = _s(await self._client.hget(self.keys.meta, "rmd_snapshot") or b"")
            await self._sweep("rmd", old)
            prev_ids = await self._hgetall(self.keys.rmd_id(old)) if old else {}
            prev_frns = await self._hgetall(self.keys.rmd_frn(old)) if old else {}
            ids, frns, report = build_rmd(records, removed, prev_ids, prev_frns, snapshot, previous)
            gen = await self._new_gen()
            try:
                await self._hset_batches(self.keys.rmd_id(gen), ids)
                await self._hset_batches(self.keys.rmd_frn(gen), frns)
            except BaseException:
                await self._client.unlink(self.keys.rmd_id(gen), self.keys.rmd_frn(gen))
                raise
            await self._client.hset(self.keys.meta, mapping={"rmd_gen": gen, "rmd_snapshot": snapshot})
            if old:
                await self._client.unlink(self.keys.rmd_id(old), self.keys.rmd_frn(old))
            await self._log_changes(report.changes)
            return report
        return await self._admin("RMD import", lambda: self._exclusive("rmd", run))

    async def _log_changes(self, changes: Sequence[RmdChange]) -> None:
        """Append to the change log (a Stream in Redis's time order, trimmed to about
        MAX_RMD_CHANGES entries), in pipelined batches."""
        for start in range(0, len(changes), BATCH):
            pipe = self._client.pipeline(transaction=False)
            for c in changes[start:start + BATCH]:
                pipe.xadd(self.keys.rmd_changes, {"c": json.dumps(c.to_json())},
                          maxlen=MAX_RMD_CHANGES, approximate=True)
            await pipe.execute()

    async def rmd_changes(self, since: float | None = None, limit: int = 1000) -> list[RmdChange]:
        async def run() -> list[RmdChange]:
            # entry IDs are Redis's clock, the changes carry the importer's: a minute of slack,
            # then the exact filter on the change's own time
            start = "-" if since is None else str(max(0, int((since - 60) * 1000)))
            out: list[RmdChange] = []
            while len(out) < limit:
                entries = await self._client.xrange(self.keys.rmd_changes, start, "+", count=BATCH)
                for _, fields in entries:
                    change = RmdChange.from_json(json.loads(fields[b"c"]))
                    if since is None or change.time > since:
                        out.append(change)
                if len(entries) < BATCH:
                    break
                start = "(" + _s(entries[-1][0])
            return out[:limit]
        return await self._admin("RMD changes", run)

    async def rmd_show(self, ident: str) -> dict[str, str] | None:
        async def run() -> dict[str, str] | None:
            meta = await self._hgetall(self.keys.meta)
            gen = meta.get("rmd_gen")
            if not gen:
                return None
            value = await self._client.hget(self.keys.rmd_id(gen), ident.strip().upper())
            if value is None and frn10(ident):
                value = await self._client.hget(self.keys.rmd_frn(gen), frn10(ident))
            if value is None:
                return None
            status, impl, rmd, frn = split_record(_s(value))
            return {"status": status, "implementation": impl, "rmd": rmd, "frn": frn,
                    "snapshot": meta.get("rmd_snapshot", "")}
        return await self._admin("RMD lookup", run)

    async def _swap_hash(self, key: str, mapping: dict[str, str]) -> int:
        """Replace a whole hash atomically: build it aside, then RENAME over the live one."""
        if not mapping:
            await self._client.delete(key)
            return 0
        tmp = f"{key}:new:{await self._new_gen()}"
        await self._hset_batches(tmp, mapping)
        await self._client.rename(tmp, key)
        return len(mapping)

    async def map_ocn(self, rows: Sequence[OcnMapping]) -> int:
        mapping = {r.spc.upper(): f"{r.rmd or ''}|{frn10(r.frn) or ''}" for r in rows}
        return await self._admin("OCN map import", lambda: self._swap_hash(self.keys.ocn, mapping))

    async def import_dno(self, entries: Sequence[str]) -> int:
        async def run() -> int:
            old = _s(await self._client.hget(self.keys.meta, "dno_gen") or b"")
            await self._sweep("dno", old)
            gen = await self._new_gen()
            key = self.keys.dno(gen)
            try:
                await self._bulk("SADD", key, list(entries), 5 * BATCH)
            except BaseException:
                await self._client.unlink(key)
                raise
            await self._client.hset(self.keys.meta, "dno_gen", gen)
            if old:
                await self._client.unlink(self.keys.dno(old))
            return int(await self._client.scard(key))
        return await self._admin("DNO import", lambda: self._exclusive("dno", run))

    async def in_force(self, dataset: str) -> int:
        async def run() -> int:
            gen = _s(await self._client.hget(self.keys.meta, f"{dataset}_gen") or b"")
            if not gen:
                return 0
            if dataset == "dno":
                return int(await self._client.scard(self.keys.dno(gen)))
            return listed_filings(await self._hgetall(self.keys.rmd_id(gen)),
                                  await self._hgetall(self.keys.rmd_frn(gen)))
        if dataset not in ("rmd", "dno"):
            return 0
        return await self._admin(f"{dataset.upper()} count", run)

    # -- lists and notices ------------------------------------------------------------------
    async def list_add(self, kind: str, list_name: str, value: str, note: str | None = None) -> None:
        check_list_args(kind, list_name)
        entry = ListEntry(kind, list_name, normalise_list_value(kind, value), note)
        await self._admin("list add", lambda: self._client.hset(self.keys.lists, list_field(entry),
                                                                 list_value(entry)))

    async def list_remove(self, kind: str, value: str) -> bool:
        field = f"{kind}:{normalise_list_value(kind, value)}"
        return bool(await self._admin("list remove", lambda: self._client.hdel(self.keys.lists, field)))

    async def list_show(self, kind: str | None = None) -> list[ListEntry]:
        raw = await self._admin("list show", lambda: self._hgetall(self.keys.lists))
        entries = [parse_list_field(f, v) for f, v in sorted(raw.items())]
        return [e for e in entries if kind is None or e.kind == kind]

    async def list_replace(self, entries: Sequence[ListEntry]) -> int:
        normal = [ListEntry(e.kind, e.list_name, normalise_list_value(e.kind, e.value), e.note)
                  for e in entries]
        mapping = {list_field(e): list_value(e) for e in normal}
        return await self._admin("list import", lambda: self._swap_hash(self.keys.lists, mapping))

    async def notice_add(self, notice: Notice) -> None:
        n = normalise_notice(notice)
        await self._admin("notice add", lambda: self._client.hset(self.keys.notices, n.ref, notice_json(n)))

    async def notice_remove(self, ref: str) -> bool:
        return bool(await self._admin("notice remove", lambda: self._client.hdel(self.keys.notices, ref)))

    async def threats_import(self, entries: Sequence[ThreatEntry], source: str) -> int:
        """Replace ``source``'s threat entries (one HSET), then bump ``threat_gen`` so every
        worker reloads the lists within ``THREAT_REFRESH`` (redis.py)."""
        async def run() -> int:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(self.keys.threats, source, entries_to_json(entries))
            pipe.hincrby(self.keys.meta, "threat_gen", 1)
            await pipe.execute()
            return len(entries)
        return await self._admin("threat import", run)

    async def threat_entries(self) -> dict[str, str]:
        """The stored threat lists, source -> JSON (what the workers load)."""
        return await self._admin("threat list", lambda: self._hgetall(self.keys.threats))

    async def notice_list(self) -> list[Notice]:
        raw = await self._admin("notice list", lambda: self._hgetall(self.keys.notices))
        return [notice_from_json(raw[r]) for r in sorted(raw)]
