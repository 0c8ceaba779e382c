"""What the admin commands (``sipguard rmd|dno|list|notice``) share: which store, how to report.

The commands read the store URL from the config (``-c CONFIG``) or take ``--store URL``.
With ``store: memory`` there is nothing to write to from outside: the data lives inside the
serving process, which loads the files named in ``datasets:``. The import commands then only
validate the file and say what would be loaded; ``is_memory`` lets them tell the user so.
No printing here (the CLI prints); this module returns lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sipguard.errors import SipguardError
from sipguard.store import open_store
from sipguard.store.base import ImportReport, LimitSpec, Store

T = TypeVar("T")
ADMIN_TIMEOUT = 5.0
MEMORY_NOTE = ("store is `memory`: the data lives inside the serving process, so nothing was written. "
               "Name the file under `datasets:` in the config; `sipguard serve` loads it at start and "
               "reloads it when it changes.")


@dataclass(slots=True)
class Target:
    url: str
    limits: tuple[LimitSpec, ...] = ()
    datasets: dict[str, str] = field(default_factory=dict)
    upstreams: tuple[tuple[str, str | None, str | None], ...] = ()   # (trunk id, RMD number, FRN)

    @property
    def is_memory(self) -> bool:
        return self.url in ("memory", "memory://")


def add_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="CONFIG", help="sipguard config file (names the store)")
    parser.add_argument("--store", metavar="URL", help="store to change (redis://HOST:PORT/DB), instead of the config's store key")


def target_of(args: argparse.Namespace) -> Target:
    config_path = getattr(args, "config", None)
    store_url = getattr(args, "store", None)
    if config_path is None and store_url is None:
        raise SipguardError("which store? give -c CONFIG (or --store URL)")
    if config_path is not None:
        from sipguard.config import load_config

        config = load_config(config_path)
        upstreams = tuple((t.id, t.provider.rmd, t.provider.frn) for t in config.trunks
                          if t.provider.rmd or t.provider.frn)
        return Target(store_url or config.store, tuple(config.limits), dict(config.datasets), upstreams)
    from sipguard.store.connect import parse_url

    if store_url not in ("memory", "memory://"):
        parse_url(store_url or "")
    return Target(store_url or "memory")


async def with_store(target: Target, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the target store, refuse to go on if it is unreachable, run ``work``, close."""
    store = open_store(target.url, target.limits, ADMIN_TIMEOUT)
    await store.start()
    try:
        if not store.healthy:
            from sipguard.store.connect import parse_url

            raise SipguardError(f"cannot reach the store {parse_url(target.url).redacted()}")
        return await work(store)
    finally:
        await store.aclose()


def report_lines(report: ImportReport, limit: int = 20) -> list[str]:
    lines = [f"{report.dataset}: {report.rows} row(s) read, {report.imported} imported"
             + (f", {report.duplicates} duplicate(s) ignored" if report.duplicates else "")
             + (f", {report.added} added" if report.added else "")
             + (f", {report.changed} changed implementation" if report.changed else "")
             + (f", {report.removed} newly removed" if report.removed else "")
             + (f", snapshot {report.snapshot}" if report.snapshot else "")]
    if report.by_implementation:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(report.by_implementation.items()))
        lines.append(f"  implementation: {counts}")
    skipped = report.rows - report.imported - report.duplicates
    if skipped > 0 or report.skipped:
        lines.append(f"  skipped {max(skipped, len(report.skipped))} line(s):")
        lines.extend(f"    line {line}: {why}" for line, why in report.skipped[:limit])
        if len(report.skipped) > limit:
            lines.append(f"    ... and {len(report.skipped) - limit} more")
    lines.extend(f"  warning: {w}" for w in report.warnings[:limit])
    return lines


async def upstream_lines(store: Store, target: Target) -> list[str]:
    """One line per configured upstream that is not listed in the snapshot now in force."""
    lines = []
    for trunk, rmd, frn in target.upstreams:
        found = (await store.rmd_show(rmd) if rmd else None) or (await store.rmd_show(frn) if frn else None)
        status = found["status"] if found else "absent"
        if status != "listed":
            lines.append(f"  upstream trunk {trunk} ({rmd or frn}) is {status.upper()} in this snapshot")
    return lines
