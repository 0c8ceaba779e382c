"""Which allocator the workers' memory comes from, so that a burst's memory goes back.

Python's own small-object allocator (pymalloc) returns a 1 MiB arena to the system only
when nothing in it lives. A burst (3x the clean rate for 30 s) spreads its transactions over
tens of new arenas, and a few hundred objects made meanwhile that outlive it (records being
written, parse cache entries, SQLite statements, metric values) keep nearly every one of them:
one lifetime after the burst a worker stayed 25-30 MB over idle (bench/RESULTS.md, "Overload",
"RSS after the burst"). jemalloc keeps its free pages apart per 4 KiB page and gives back
any page nothing uses; with every object taken from it (``PYTHONMALLOC=malloc``) the same
burst leaves a few MB, and the hot path costs no more CPU than with pymalloc (glibc's malloc
in its place costs 16 % more).

``PYTHONMALLOC`` and ``LD_PRELOAD`` act only when a process starts, so ``sipguard serve``
(``proxy.allocator``: ``auto`` by default) starts itself again, once, with both set, before
it binds or forks anything (``prepare``): same PID, same arguments. ``auto`` does so when
the library is installed (Debian/Ubuntu: ``libjemalloc2``), ``jemalloc`` also warns when it
is not, ``python`` keeps Python's allocator. An operator's own ``PYTHONMALLOC`` (a debug
allocator) is left alone.

``release()`` gives the free pages back after a burst (``overload.MemoryTrim``): jemalloc's
``arena.<all>.purge``, else glibc's ``malloc_trim(0)``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
from collections.abc import Callable, Mapping

log = logging.getLogger("sipguard.serve")

CHOICES = ("auto", "jemalloc", "python")
MARK = "SIPGUARD_ALLOCATOR"          # set in the environment of the process started again
_ARENAS_ALL = 4096                   # jemalloc's MALLCTL_ARENAS_ALL


def find_jemalloc() -> str | None:
    """The jemalloc shared library's name (for LD_PRELOAD), or None when it is not installed."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.util.find_library("jemalloc")


@functools.cache
def _mallctl() -> Callable[..., int] | None:
    """jemalloc's mallctl when jemalloc is this process's malloc (preloaded), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = ctypes.c_int
    mallctl: Callable[..., int] = fn
    return mallctl


def describe(environ: Mapping[str, str] | None = None) -> str:
    """The allocator in use, for the start-up line: jemalloc, pymalloc, malloc (glibc), ..."""
    environ = os.environ if environ is None else environ
    python = environ.get("PYTHONMALLOC", "pymalloc") or "pymalloc"
    if _mallctl() is not None:
        return "jemalloc" if python == "malloc" else f"{python} on jemalloc"
    return python


def plan(choice: str, environ: Mapping[str, str], library: str | None,
         loaded: bool) -> dict[str, str] | None:
    """The environment to start again with, or None to run on as is.

    ``choice``: proxy.allocator; ``library``: what ``find_jemalloc`` found; ``loaded``:
    jemalloc is already this process's malloc."""
    if choice == "python" or environ.get(MARK):
        return None   # Python's own allocator asked for, or started again already (never twice)
    python = environ.get("PYTHONMALLOC")
    if python and python != "malloc":
        return None   # the operator's choice (pymalloc_debug, malloc_debug ...)
    if loaded and python == "malloc":
        return None   # the unit or the shell set it up already
    if library is None and not loaded:
        return None
    env = dict(environ)
    env["PYTHONMALLOC"] = "malloc"
    if not loaded:
        assert library is not None
        preload = environ.get("LD_PRELOAD", "").strip()
        env["LD_PRELOAD"] = f"{preload} {library}".strip()
    env[MARK] = "jemalloc"
    return env


def prepare(choice: str) -> None:
    """``sipguard serve``: start again on jemalloc when ``choice`` and the host ask for it
    (``os.execve``: same PID, same arguments); returns when the process runs on as it is."""
    if choice not in CHOICES:
        raise ValueError(f"proxy.allocator: {choice!r}")
    environ = dict(os.environ)
    library = find_jemalloc()
    loaded = _mallctl() is not None
    if environ.get(MARK) and not loaded:
        log.warning("proxy.allocator: started again with %s preloaded, but jemalloc is not this process's "
                    "malloc; running on Python's allocator", environ.get("LD_PRELOAD", ""))
        return
    env = plan(choice, environ, library, loaded)
    if env is None:
        if choice == "jemalloc" and library is None and not loaded:
            log.warning("proxy.allocator: jemalloc asked for, but the library is not installed (Debian/Ubuntu: "
                        "apt install libjemalloc2); running on Python's allocator: a burst's memory does not "
                        "all come back")
        return
    argv = [sys.executable, *sys.orig_argv[1:]]
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError as exc:   # returns only on failure
        log.warning("proxy.allocator: could not start again on jemalloc (%s); running on Python's allocator", exc)


def release() -> bool:
    """Give the heap's free pages back to the system; False when there is no way to."""
    mallctl = _mallctl()
    if mallctl is not None:
        return mallctl(f"arena.{_ARENAS_ALL}.purge".encode(), None, None, None, 0) == 0
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _refresh(mallctl: Callable[..., int]) -> None:
    """jemalloc's statistics are a snapshot: writing ``epoch`` takes a new one."""
    epoch = ctypes.c_uint64(1)
    size = ctypes.c_size_t(ctypes.sizeof(epoch))
    mallctl(b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), size)


def dirty_bytes() -> int | None:
    """jemalloc: bytes in free pages not yet given back (all arenas); None on another allocator."""
    mallctl = _mallctl()
    if mallctl is None:
        return None
    _refresh(mallctl)
    pages, page = ctypes.c_size_t(0), ctypes.c_size_t(0)
    size = ctypes.c_size_t(ctypes.sizeof(pages))
    if mallctl(f"stats.arenas.{_ARENAS_ALL}.pdirty".encode(), ctypes.byref(pages), ctypes.byref(size), None, 0):
        return None
    size = ctypes.c_size_t(ctypes.sizeof(page))
    if mallctl(b"arenas.page", ctypes.byref(page), ctypes.byref(size), None, 0):
        return None
    return pages.value * page.value


STATS = ("allocated", "active", "metadata", "resident", "mapped", "retained")


def stats() -> dict[str, int] | None:
    """jemalloc's global counters in bytes (``stats.allocated``: live blocks; ``active``: pages
    holding them; ``resident``: pages mapped in, free ones included; ``retained``: address
    space kept unmapped), refreshed first (``epoch``); None on another allocator."""
    mallctl = _mallctl()
    if mallctl is None:
        return None
    _refresh(mallctl)
    out: dict[str, int] = {}
    for name in STATS:
        value = ctypes.c_size_t(0)
        size = ctypes.c_size_t(ctypes.sizeof(value))
        if mallctl(f"stats.{name}".encode(), ctypes.byref(value), ctypes.byref(size), None, 0) == 0:
            out[name] = value.value
    return out


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl): nothing to give back this way
        return None
    return trim
