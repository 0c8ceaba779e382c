"""The layer rules of STYLE.md, checked on the source: the sans-I/O core stays sans-I/O."""

from __future__ import annotations

import ast
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


def test_no_print_in_the_package_outside_cli() -> None:
    for path in files():
        rel = path.relative_to(PKG.parent).as_posix()
        # the CLI, the demo and the build script run by its path (sipguard/native.py) talk to a terminal
        if rel.startswith("sipguard/cli/") or rel in ("sipguard/demo.py", "sipguard/native.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "print", f"print() in {rel}:{node.lineno}"
