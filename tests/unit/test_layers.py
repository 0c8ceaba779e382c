"""The layer rules of STYLE.md, checked on the source: the sans-I/O core stays sans-I/O."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "sipguard"

# package (prefix) -> modules it must never import
FORBIDDEN = {
    "sipguard/sip/": ("asyncio", "socket", "uvloop", "redis", "sipguard.proxy", "sipguard.pipeline",
                      "sipguard.store", "sipguard.shaken", "sipguard.policy"),
    "sipguard/numbers.py": ("asyncio", "socket", "sipguard.proxy", "sipguard.store"),
    "sipguard/policy/": ("asyncio", "socket", "redis", "sipguard.proxy", "sipguard.store", "sipguard.sip"),
    "sipguard/replay/": ("sipguard.proxy",),
    "sipguard/store/": ("sipguard.sip", "sipguard.proxy"),
    "sipguard/shaken/": ("sipguard.proxy", "sipguard.store", "sipguard.policy"),
    # config flows one way: the config is read below the proxy, the proxy reads the config
    "sipguard/config.py": ("sipguard.proxy", "sipguard.pipeline"),
    "sipguard/addresses.py": ("asyncio", "socket", "sipguard.proxy", "sipguard.config"),
    "sipguard/tls.py": ("sipguard.proxy", "sipguard.config"),
    # the pipeline decides; what a decision becomes (record, metrics, log) is observe/decisions.py's
    "sipguard/pipeline.py": ("sipguard.proxy", "sipguard.records", "sipguard.observe.metrics", "sipguard.observe.logs"),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def files() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("prefix", sorted(FORBIDDEN))
def test_layer_rules(prefix: str) -> None:
    checked = 0
    for path in files():
        rel = path.relative_to(PKG.parent).as_posix()
        if not rel.startswith(prefix):
            continue
        checked += 1
        for module in imports_of(path):
            for banned in FORBIDDEN[prefix]:
                assert not (module == banned or module.startswith(banned + ".")), \
                    f"{rel} imports {module}, which {prefix} must not use"
    assert checked, f"no files under {prefix}: the rule checks nothing"


def test_loading_a_config_loads_no_proxy_module() -> None:
    """The AST rule above sees config.py's own imports; this sees what they import in turn
    (records, shaken, store, policy), when every example config is loaded."""
    examples = sorted(str(p) for p in (PKG.parent / "config").glob("sipguard.*.yaml"))
    assert examples
    code = ("import sys\nfrom sipguard.config import load_config\n"
            f"for path in {examples!r}:\n    load_config(path)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('sipguard.proxy', 'sipguard.pipeline'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PKG.parent, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(PKG.parent)}, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_print_in_the_package_outside_cli() -> None:
    for path in files():
        rel = path.relative_to(PKG.parent).as_posix()
        # the CLI, the demo and the build script run by its path (sipguard/native.py) talk to a terminal
        if rel.startswith("sipguard/cli/") or rel in ("sipguard/demo.py", "sipguard/native.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"print() in {rel}:{node.lineno}"
