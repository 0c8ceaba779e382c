"""The compiled hot path (sipguard.native) is the same program as its Python source, and a
stale compiled module is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sipguard import native

REPO = Path(__file__).resolve().parents[2]


def test_every_compiled_module_is_the_one_python_imports() -> None:
    import importlib

    for name in native.compiled():
        module = importlib.import_module(name)
        assert (module.__file__ or "").endswith(native.SUFFIX), f"{name} runs as Python from {module.__file__}"


def test_a_compiled_module_is_checked_by_its_build_stamp_not_by_file_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip rewrites file times on install: a compiled module is refused only when its
    source's hash differs from the one recorded at build time (or none was recorded)."""
    monkeypatch.setattr(native, "ROOT", str(tmp_path))
    for module in native.MODULES + native.C_MODULES:
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text(f"# {module}\n")
    src = tmp_path / "sipguard" / "sip" / "parser.py"
    ext = src.with_name("parser" + native.SUFFIX)
    ext.write_bytes(b"\x7fELF")
    assert native.compiled() == ["sipguard.sip.parser"]
    assert native.stale() == ["sipguard/sip/parser.py"]          # no stamp: not known to match
    native.write_stamp(str(tmp_path / "sipguard"))
    os.utime(ext, (1_000_000, 1_000_000))       # installed: the module looks older than its source
    assert native.stale() == []
    native.check()
    src.write_text("# changed after the build\n")
    assert native.stale() == ["sipguard/sip/parser.py"]
    with pytest.raises(ImportError, match=r"sipguard/sip/parser.py was not built from its present source"
                                          r" \(its build stamp differs\); run `make native`"):
        native.check()
    assert native.clean() == 1 and not ext.exists() and native.compiled() == []
    assert not (tmp_path / "sipguard" / native.STAMP).exists()
    assert native.describe().startswith("Python (not compiled")


def test_the_c_extension_is_checked_by_its_build_stamp_and_cleaned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C modules (sipguard/sip/_fast.c, sipguard/proxy/_udp.c) are stamped like the mypyc
    modules: a _fast module built from another C source is refused, ``ensure`` rebuilds when
    one is missing, ``clean`` removes them."""
    monkeypatch.setattr(native, "ROOT", str(tmp_path))
    for module in native.MODULES + native.C_MODULES:
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text(f"# {module}\n")
    assert native.C_MODULES == ("sipguard/sip/_fast.c", "sipguard/proxy/_udp.c")
    src = tmp_path / "sipguard" / "sip" / "_fast.c"
    ext = src.with_name("_fast" + native.SUFFIX)
    ext.write_bytes(b"\x7fELF")
    udp = tmp_path / "sipguard" / "proxy" / ("_udp" + native.SUFFIX)
    udp.write_bytes(b"\x7fELF")
    assert native.stale() == ["sipguard/proxy/_udp.c", "sipguard/sip/_fast.c"]   # no stamp: not known to match
    native.write_stamp(str(tmp_path / "sipguard"))
    assert native.stale() == []
    src.write_text("/* changed after the build */\n")
    with pytest.raises(ImportError, match=r"sipguard/sip/_fast.c was not built from its present source"):
        native.check()
    built = []
    monkeypatch.setattr(native, "build", lambda: built.append(1) or (True, "built"))
    assert native.main(["ensure"]) == 0 and built == [1]            # stale: rebuilt
    assert native.clean() == 2 and not ext.exists() and not udp.exists()
    assert [e.name for e in native.c_extensions()] == ["sipguard.sip._fast", "sipguard.proxy._udp"]


def test_version_says_which_hot_path_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from sipguard.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("sipguard 0.1.0, hot path ")
    assert (f"compiled (mypyc): {len(native.MODULES)} of {len(native.MODULES)}" in out) == bool(native.compiled())
    assert ("Python (not compiled" in out) == (not native.compiled())


@pytest.mark.skipif(not native.compiled(), reason="the hot path is not compiled here (make native)")
def test_compiled_and_python_trees_give_the_same_results(tmp_path: Path) -> None:
    """tests/native/probe.py on this tree (compiled) and on a copy without the compiled
    modules: every parse, every fast-path read and every byte the proxy core sends agree."""
    pure = tmp_path / "pure"
    shutil.copytree(REPO / "sipguard", pure / "sipguard",
                    ignore=shutil.ignore_patterns("*" + native.SUFFIX, "*.so", "__pycache__"))

    def probe(path: str) -> list[str]:
        env = {**os.environ, "PYTHONPATH": path}
        # not run from the repository: `-m` would put it first on the path, before PYTHONPATH
        run = subprocess.run([sys.executable, "-m", "tests.native.probe"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout.splitlines()

    compiled = probe(str(REPO))
    python = probe(f"{pure}{os.pathsep}{REPO}")
    assert compiled[0] == f"parser from parser{native.SUFFIX}"
    assert python[0] == "parser from parser.py"
    assert len(compiled) > 250 and sum("->" in line for line in compiled) > 50   # not vacuous
    assert compiled[1:] == python[1:]


def test_a_source_edited_while_the_build_runs_is_found_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stamp records the sources as the build read them: an edit made while it compiles
    (an editor saving, a helper's tree) leaves the module stale, not vouched for (the hash was
    taken after the build before: ``import sipguard`` then ran code older than its source)."""
    import mypyc.build

    monkeypatch.setattr(native, "ROOT", str(tmp_path))
    for module in native.MODULES + native.C_MODULES:
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text(f"# {module}\n")
    src = tmp_path / "sipguard" / "sip" / "parser.py"

    def mypycify(paths: list[str], **_: object) -> list[object]:
        src.with_name("parser" + native.SUFFIX).write_bytes(b"\x7fELF")   # what was read: compiled
        src.write_text("# saved while the build ran\n")
        return []

    monkeypatch.setattr(mypyc.build, "mypycify", mypycify)
    monkeypatch.setattr(native, "c_extensions", lambda: [])
    ok, _ = native.build()
    assert ok and native.compiled() == ["sipguard.sip.parser"]
    assert native.stale() == ["sipguard/sip/parser.py"]
    with pytest.raises(ImportError, match="was not built from its present source"):
        native.check()
