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


def load_baseline(rev: str) -> str:
    """Make `sipguard_base` importable (sipguard at `rev`); returns the commit it resolved to."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", rev + "^{commit}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "sipguard"],
                         capture_output=True, check=True).stdout
    tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(tmp, filter="data")
    pkg = tmp / NAME
    (tmp / "sipguard").rename(pkg)
    for path in pkg.rglob("*.py"):
        path.write_text(_IMPORT.sub(r"\1\2" + NAME, path.read_text()))
    sys.path.insert(0, str(tmp))
    return commit


def base(module: str) -> ModuleType:
    """`base("sipguard.shaken.verify")` -> that module of the baseline package."""
    return importlib.import_module(NAME + module.removeprefix("sipguard"))
