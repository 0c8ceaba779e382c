"""The hot path compiled to C with mypyc, beside its Python source; Python when it is not.

The SIP layer and the proxy core are plain, fully typed Python. mypyc (part of mypy) can
translate such modules into C extension modules with the same behaviour, about a third
less CPU per call on the hot path (bench/RESULTS.md). Two builds use ``MODULES``:

- the wheel: ``setup.py`` compiles them into it (``pip install .``, ``pip wheel .``); with
  ``SIPGUARD_COMPILE=0``, or when no C compiler works, the wheel is pure Python;
- development: ``make native`` runs ``python sipguard/native.py ensure``, which compiles
  them in place (``sipguard/sip/parser.py`` gets a ``parser.cpython-311-...so`` beside it,
  which Python imports in its place) when a source changed.

Beside them, two modules are written in C against the CPython API (``C_MODULES``): the
byte-level splitting of a SIP head (``sipguard/sip/_fast.c``, module ``sipguard.sip._fast``),
whose Python callers keep their own definition of each function and run it when the extension
is absent, and the UDP sockets' reads and sends (``sipguard/proxy/_udp.c``), without which the
event loop's datagram transport serves them (proxy/transport.py). Both builds compile them
with the mypyc modules.

Either way the build records a hash of each compiled source (``native_stamp.json`` beside
this file). A compiled module built from another source would run the old code, so
``check()`` (called when ``sipguard`` is imported) refuses to start when a source no longer
matches its stamp and says how to rebuild; file times are not compared, as pip rewrites
them on install. ``python sipguard/native.py clean`` removes every compiled module. This
file is run by its path (and loaded by path from setup.py), so that it never imports the
package it builds (``import sipguard`` runs ``check()``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GROUP = "sipguard.native_lib"       # the shared runtime library: sipguard/native_lib__mypyc*.so
# Not listed: modules that hand addresses of Python buffers to the kernel (proxy/reuseport.py:
# compiled code may free a local after its last use, before the system call reads it), run
# only at start-up, or that tests patch at run time (store/memory.py: its per-call work is in
# store/memlookup.py).
MODULES = (
    "sipguard/sip/headers.py",
    "sipguard/sip/address.py",
    "sipguard/sip/message.py",
    "sipguard/sip/parser.py",
    "sipguard/sip/relay.py",
    "sipguard/sip/transaction.py",
    "sipguard/proxy/act.py",
    "sipguard/proxy/messages.py",
    "sipguard/proxy/transactions.py",
    "sipguard/proxy/stateless.py",
    "sipguard/proxy/core.py",
    "sipguard/pipeline.py",
    "sipguard/policy/facts.py",
    "sipguard/store/base.py",
    "sipguard/store/replay.py",
    "sipguard/store/keys.py",
    "sipguard/store/memlookup.py",
    "sipguard/observe/decisions.py",
    "sipguard/observe/line.py",
    "sipguard/proxy/transport.py",
    "sipguard/proxy/steer.py",
    "sipguard/proxy/overload.py",
    "sipguard/records/record.py",
    "sipguard/trunks.py",
    "sipguard/numbers.py",
    "sipguard/shaken/identity.py",
    "sipguard/shaken/passport.py",
    "sipguard/shaken/result.py",
    "sipguard/shaken/cache.py",
    "sipguard/shaken/credentials.py",
    "sipguard/shaken/verify.py",
)
# Written in C, each the faster twin of functions its Python modules define (sipguard/sip/_fast.c).
C_MODULES = ("sipguard/sip/_fast.c", "sipguard/proxy/_udp.c")
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
STAMP = "native_stamp.json"         # beside this file: {source path: blake2b of its bytes}


def _extension(source: str) -> str:
    return os.path.join(ROOT, source[:-3] + SUFFIX)


def compiled() -> list[str]:
    """The modules of MODULES that run compiled (their extension module is present)."""
    return [m[:-3].replace("/", ".") for m in MODULES if os.path.exists(_extension(m))]


def _extensions() -> list[str]:
    """Every extension module file under sipguard/, the shared runtime library included."""
    return sorted(glob.glob(os.path.join(ROOT, "sipguard", "**", "*" + SUFFIX), recursive=True))


def _built() -> list[str]:
    """Every extension module under sipguard/ (listed or left from an older list), as the
    path of its source (.py, or .c), relative to ROOT; the shared runtime library has no source."""
    out = []
    for ext in _extensions():
        base = os.path.relpath(ext, ROOT)[:-len(SUFFIX)]
        for rel in (base + ".py", base + ".c"):
            if os.path.exists(os.path.join(ROOT, rel)):
                out.append(rel.replace(os.sep, "/"))
                break
    return out


def c_extensions() -> list:  # type: ignore[type-arg]
    """The setuptools extensions of C_MODULES (imported here: only a build needs setuptools)."""
    from setuptools import Extension

    return [Extension(source[:-2].replace("/", "."), [source], extra_compile_args=["-O2"]) for source in C_MODULES]


def source_hashes() -> dict[str, str]:
    """The hash of each source of MODULES under ROOT, as the build stamp records it."""
    out = {}
    for module in MODULES + C_MODULES:
        with open(os.path.join(ROOT, module), "rb") as f:
            out[module] = hashlib.blake2b(f.read(), digest_size=16).hexdigest()
    return out


def write_stamp(package_dir: str, hashes: dict[str, str] | None = None) -> None:
    """Record the hash of every compiled source in ``package_dir/native_stamp.json``
    (``package_dir`` is the sipguard folder being built: in place, or the wheel's):
    ``hashes`` as taken before the build read the sources, or now."""
    with open(os.path.join(package_dir, STAMP), "w", encoding="utf-8") as f:
        json.dump(hashes if hashes is not None else source_hashes(), f, indent=1, sort_keys=True)
        f.write("\n")


def _stamp() -> dict[str, str]:
    try:
        with open(os.path.join(ROOT, "sipguard", STAMP), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stale() -> list[str]:
    """Compiled modules not built from their present source: the hash recorded when they
    were built differs, or there is no record."""
    built = _built()
    if not built:
        return []
    stamp = _stamp()
    out = []
    for module in built:
        with open(os.path.join(ROOT, module), "rb") as f:
            digest = hashlib.blake2b(f.read(), digest_size=16).hexdigest()
        if stamp.get(module) != digest:
            out.append(module)
    return out


def describe() -> str:
    """Which hot path runs, for ``sipguard --version`` and the worker's log."""
    names = compiled()
    if names:
        c = sum(os.path.exists(os.path.join(ROOT, m[:-2] + SUFFIX)) for m in C_MODULES)
        return f"compiled (mypyc): {len(names)} of {len(MODULES)} hot-path modules, C: {c} of {len(C_MODULES)}"
    return "Python (not compiled: pip install a compiled wheel, or make native)"


def check() -> None:
    old = stale()
    if old:
        raise ImportError(f"sipguard: the compiled {', '.join(old)} was not built from its present "
                          "source (its build stamp differs); run `make native` to rebuild, or "
                          "`python sipguard/native.py clean` to run as Python")


def clean() -> int:
    """Remove every compiled module and the shared library: back to Python."""
    found = _extensions()
    for ext in found:
        os.remove(ext)
    if os.path.exists(os.path.join(ROOT, "sipguard", STAMP)):
        os.remove(os.path.join(ROOT, "sipguard", STAMP))
    return len(found)


def build() -> tuple[bool, str]:
    """Compile MODULES in place: (True, what was built), or (False, why not: sipguard then
    runs as Python)."""
    clean()  # a failed build must not leave old modules behind
    # the sources as the build reads them: one edited while it runs keeps its old hash in the
    # stamp, so ``check`` finds the module stale (a hash taken after would vouch for code the
    # build never read)
    hashes = source_hashes()
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution
    except ImportError as exc:
        return False, f"not compiled ({exc}); sipguard runs as Python"
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypyc names modules after their paths
    try:
        extensions = mypycify(list(MODULES), opt_level="3", debug_level="0", group_name=GROUP) + c_extensions()
        dist = Distribution({"name": "sipguard-native", "ext_modules": extensions})
        cmd = dist.get_command_obj("build_ext")
        cmd.inplace = True  # type: ignore[attr-defined]
        cmd.force = True  # type: ignore[attr-defined]
        cmd.build_temp = os.path.join(ROOT, "build", "native")  # type: ignore[attr-defined]
        dist.run_command("build_ext")
    except (Exception, SystemExit) as exc:
        clean()
        return False, f"not compiled ({exc}); sipguard runs as Python"
    finally:
        os.chdir(cwd)
    write_stamp(os.path.join(ROOT, "sipguard"), hashes)
    return True, f"compiled {len(compiled())} modules in place"


def main(argv: list[str]) -> int:
    if argv == ["build"] or (argv == ["ensure"] and (stale() or set(_built()) != set(MODULES + C_MODULES))):
        ok, message = build()
        print(f"sipguard.native: {message}", file=sys.stderr)
        return 0  # not compiled is not a failure: the Python modules are the same program
    if argv == ["ensure"]:
        return 0
    if argv == ["clean"]:
        print(f"sipguard.native: removed {clean()} compiled modules", file=sys.stderr)
        return 0
    if argv == ["status"]:
        names = compiled()
        print(describe() + (": " + ", ".join(names) if names else ""))
        return 0
    print("usage: python sipguard/native.py build|ensure|clean|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    # run by path, this folder is first on sys.path: sipguard/numbers.py would shadow the
    # standard library's numbers for the compiler
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
    sys.exit(main(sys.argv[1:]))
