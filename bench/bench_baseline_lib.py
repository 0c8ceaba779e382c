"""Load an older sipguard (a git revision) next to the working tree, for same-run before/after.

The 2 cores are shared with the team, so two benchmark runs minutes apart measure the neighbours
as much as the code. `load_baseline("HEAD~3")` extracts `sipguard/` at that revision into a
temporary folder as the package `sipguard_base` (imports rewritten), so a script can alternate
old and new rounds in one process and compare them under the same load.
"""

from __future__ import annotations

import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
NAME = "sipguard_base"
_IMPORT = re.compile(r"\b(from|import)(\s+)sipguard\b")


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True).stdout


def load_baseline(rev: str, only: list[str] | None = None) -> str:
    """Make `sipguard_base` importable (sipguard at `rev`); returns the commit it resolved to.

    `only`: paths (e.g. "sipguard/shaken/verify.py"): take HEAD's sipguard and only these files
    at `rev`, to isolate one change from what others committed in between.
    """
    commit = _git("rev-parse", "--verify", rev + "^{commit}").decode().strip()
    tar = _git("archive", "HEAD" if only else commit, "sipguard")
    tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(tmp, filter="data")
    for rel in only or ():
        (tmp / rel).write_bytes(_git("show", f"{commit}:{rel}"))
    pkg = tmp / NAME
    (tmp / "sipguard").rename(pkg)
    for py in pkg.rglob("*.py"):
        py.write_text(_IMPORT.sub(r"\1\2" + NAME, py.read_text()))
    sys.path.insert(0, str(tmp))
    return commit


def base(module: str) -> ModuleType:
    """`base("sipguard.shaken.verify")` -> that module of the baseline package."""
    return importlib.import_module(NAME + module.removeprefix("sipguard"))
