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


def test_a_stale_compiled_module_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "sipguard" / "sip" / "parser.py"
    src.parent.mkdir(parents=True)
    src.write_text("# source\n")
    ext = src.with_name("parser" + native.SUFFIX)
    ext.write_bytes(b"\x7fELF")
    monkeypatch.setattr(native, "ROOT", str(tmp_path))
    os.utime(ext, (1_000_000, 1_000_000))       # built, then the source changed
    assert native.compiled() == ["sipguard.sip.parser"]
    assert native.stale() == ["sipguard/sip/parser.py"]
    with pytest.raises(ImportError, match=r"sipguard/sip/parser.py is older than its source; run `make native`"):
        native.check()
    os.utime(src, (1_000_000, 1_000_000))
    os.utime(ext, (2_000_000, 2_000_000))       # rebuilt
    assert native.stale() == []
    native.check()
    assert native.clean() == 1 and not ext.exists() and native.compiled() == []


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
