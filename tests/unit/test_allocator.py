"""proxy.allocator: when ``sipguard serve`` starts itself again on jemalloc, and with what
environment (``allocator.plan``: pure, no process started); the config key; MemoryTrim
gives the pages back through the allocator in use."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard.config import load_config
from sipguard.errors import ConfigError
from sipguard.proxy import allocator
from sipguard.proxy.allocator import MARK, plan
from sipguard.proxy.overload import MemoryTrim
from sipguard.proxy.worker import restart_keys

LIB = "libjemalloc.so.2"


def test_auto_with_the_library_installed_starts_again_on_it() -> None:
    env = plan("auto", {"PATH": "/usr/bin", "LD_PRELOAD": "/opt/shim.so"}, LIB, loaded=False)
    assert env == {"PATH": "/usr/bin", "LD_PRELOAD": f"/opt/shim.so {LIB}", "PYTHONMALLOC": "malloc",
                   MARK: "jemalloc"}
    assert plan("jemalloc", {}, LIB, loaded=False) == {"LD_PRELOAD": LIB, "PYTHONMALLOC": "malloc", MARK: "jemalloc"}


def test_jemalloc_preloaded_by_the_unit_needs_only_pythonmalloc() -> None:
    env = plan("auto", {"LD_PRELOAD": LIB}, LIB, loaded=True)
    assert env == {"LD_PRELOAD": LIB, "PYTHONMALLOC": "malloc", MARK: "jemalloc"}
    assert plan("auto", {"LD_PRELOAD": LIB, "PYTHONMALLOC": "malloc"}, LIB, loaded=True) is None


@pytest.mark.parametrize(("choice", "environ", "library"), [
    ("python", {}, LIB),                                  # Python's own allocator asked for
    ("auto", {}, None),                                   # not installed: run on as is
    ("jemalloc", {}, None),                               # the same, with a warning (prepare)
    ("auto", {MARK: "jemalloc"}, LIB),                    # started again already: never twice
    ("auto", {"PYTHONMALLOC": "pymalloc_debug"}, LIB),    # the operator's own choice
    ("jemalloc", {"PYTHONMALLOC": "malloc_debug"}, LIB),
])
def test_no_start_again(choice: str, environ: dict[str, str], library: str | None) -> None:
    assert plan(choice, environ, library, loaded=False) is None


def test_prepare_refuses_an_unknown_choice() -> None:
    with pytest.raises(ValueError):
        allocator.prepare("tcmalloc")


def test_config_key(tmp_path: Path) -> None:
    path = tmp_path / "sg.yaml"
    path.write_text("listen: [udp://127.0.0.1:5060]\n")
    assert load_config(str(path)).proxy.allocator == "auto"
    path.write_text("listen: [udp://127.0.0.1:5060]\nproxy:\n  allocator: python\n")
    old = load_config(str(path))
    assert old.proxy.allocator == "python"
    path.write_text("listen: [udp://127.0.0.1:5060]\nproxy:\n  allocator: jemalloc\n")
    assert restart_keys(old, load_config(str(path))) == ["proxy.allocator"]
    path.write_text("listen: [udp://127.0.0.1:5060]\nproxy:\n  allocator: tcmalloc\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert ":3:" in str(err.value) and "allocator" in str(err.value)


def test_memory_trim_gives_pages_back_through_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[bool] = []
    monkeypatch.setattr(allocator, "release", lambda: released.append(True) or True)
    trim = MemoryTrim(minimum=1000)
    assert [trim.tick(c) for c in (5000, 4000, 2400)] == [False, False, True]
    assert released == [True]


def test_prepare_starts_again_with_the_same_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import sys

    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: LIB)
    monkeypatch.setattr(allocator, "_mallctl", lambda: None)
    monkeypatch.delenv(MARK, raising=False)
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "sipguard", "serve", "-c", "sg.yaml"])
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    allocator.prepare("auto")
    [(path, argv, env)] = calls
    assert path == sys.executable and argv == [sys.executable, "-m", "sipguard", "serve", "-c", "sg.yaml"]
    assert env["PYTHONMALLOC"] == "malloc" and env["LD_PRELOAD"].endswith(LIB) and env[MARK] == "jemalloc"
    calls.clear()
    allocator.prepare("python")
    assert calls == []


def test_prepare_runs_on_when_starting_again_fails(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    import os

    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(allocator, "find_jemalloc", lambda: LIB)
    monkeypatch.setattr(allocator, "_mallctl", lambda: None)
    monkeypatch.delenv(MARK, raising=False)
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.setattr(os, "execve", refuse)
    allocator.prepare("auto")   # no exception: serve goes on
    assert "could not start again on jemalloc" in caplog.text


def test_prepare_warns_when_jemalloc_is_asked_for_but_missing(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: None)
    monkeypatch.setattr(allocator, "_mallctl", lambda: None)
    monkeypatch.delenv(MARK, raising=False)
    allocator.prepare("jemalloc")
    assert "apt install libjemalloc2" in caplog.text
    caplog.clear()
    allocator.prepare("auto")
    assert caplog.text == ""
