"""What ``pip install`` gives an operator: the wheel built as pip builds it (isolated, with
the lowest setuptools pyproject.toml admits) carries the compiled hot path, installs into a
fresh virtual environment and runs compiled there; the pure-Python wheel runs too.

The compiled wheel is built once per session (mypyc takes about a minute here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, SipguardProcess, base_config, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
CONSOLE_STATIC = ("console.js", "console.css", "favicon.svg")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the suite's PYTHONPATH: only the installed package may run."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT")}
    return {**env, **extra}


def source_tree(dest: Path) -> Path:
    """The files a release is built from (no compiled modules, stamps or caches of this tree)."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "sipguard", dest / "sipguard", ignore=shutil.ignore_patterns(
        "*" + SUFFIX, "*.so", "__pycache__", "native_stamp.json"))
    return dest


def setuptools_floor() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"setuptools>=([0-9.]+)"', text)
    assert match, "pyproject.toml declares no setuptools floor"
    return match.group(1)


def build_wheel(folder: Path, **env: str) -> Path:
    src = source_tree(folder / "src")
    constraints = folder / "constraints.txt"
    # the floor itself, not whatever is newest: "setuptools>=77" must build with 77.x
    constraints.write_text(f"setuptools=={setuptools_floor()}.*\n")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(folder / "dist"), str(src)],
                         cwd=folder, env=clean_env(PIP_CONSTRAINT=str(constraints), **env),
                         capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    if run.returncode != 0 and any(s in output for s in ("No matching distribution found", "NewConnectionError",
                                                         "Could not find a version")):
        pytest.skip("the build requirements (setuptools, mypy) cannot be fetched here: " + output[-500:])
    assert run.returncode == 0, output[-6000:]
    (wheel,) = (folder / "dist").glob("sipguard-*.whl")
    return wheel


def fresh_venv(folder: Path, wheel: Path) -> Path:
    """A new virtual environment with only ``wheel`` installed as sipguard; its dependencies
    come from the suite's environment by a path entry (installing them again from an index
    is not what this test is about)."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    run = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                          "--no-index", str(wheel)], env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "suite_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


@pytest.fixture(scope="session")
def compiled_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def installed(compiled_wheel: Path, tmp_path: Path) -> Iterator[Path]:
    yield fresh_venv(tmp_path, compiled_wheel)


def sipguard(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "sipguard"), *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=60)


def test_the_wheel_carries_the_compiled_hot_path_and_its_build_stamp(compiled_wheel: Path) -> None:
    import zipfile

    assert not compiled_wheel.name.endswith("-none-any.whl"), compiled_wheel.name
    names = zipfile.ZipFile(compiled_wheel).namelist()
    assert "sipguard/sip/parser" + SUFFIX in names and "sipguard/proxy/core" + SUFFIX in names
    for c in ("sipguard/sip/_fast", "sipguard/proxy/_udp"):
        assert c + SUFFIX in names and c + ".c" in names and c + ".pyi" in names   # the C, and its stamped source
    assert "sipguard/native_stamp.json" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert {f"sipguard/console/static/{n}" for n in CONSOLE_STATIC} <= set(names)
    assert not any("pyjwt" in n.lower() or "phonenumbers" in n.lower() for n in names)


def test_an_installed_wheel_runs_compiled(installed: Path, tmp_path: Path) -> None:
    run = sipguard(installed, "--version", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r"sipguard \S+, hot path compiled \(mypyc\): (\d+) of \1 hot-path modules, C: 2 of 2\n",
                        run.stdout), run.stdout
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import sipguard.sip.parser as p; print(p.__file__)"],
                           cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert where.stdout.strip().startswith(str(installed)) and where.stdout.strip().endswith(SUFFIX), where


def test_an_installed_wheel_serves_and_its_log_says_compiled(installed: Path, tmp_path: Path) -> None:
    sg = SipguardProcess(base_config(free_port()), tmp_path)
    with open(sg.log_path, "wb") as log:
        sg.proc = subprocess.Popen([str(installed / "bin" / "sipguard"), "serve", "-c", str(sg.path)],
                                   cwd=tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        sg.wait_ready(60)                       # answers OPTIONS
        assert "hot path compiled (mypyc)" in sg.logs(), sg.logs()
        assert sg.stop() == 0
    finally:
        sg.stop()


def test_an_edited_installed_source_is_refused_by_its_stamp(installed: Path, tmp_path: Path) -> None:
    """pip gave every file a new time; only a changed source makes the compiled one stale."""
    python = installed / "bin" / "python"
    parser = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    source = Path(parser) / "sipguard" / "sip" / "parser.py"
    os.utime(source)   # newer than its compiled module: still the same program
    assert sipguard(installed, "--version", cwd=tmp_path).returncode == 0
    source.write_text(source.read_text() + "\n# edited\n")
    run = sipguard(installed, "--version", cwd=tmp_path)
    assert run.returncode != 0
    assert "sipguard/sip/parser.py was not built from its present source" in run.stderr


def test_the_pure_python_wheel_installs_and_says_so(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, SIPGUARD_COMPILE="0")
    assert wheel.name.endswith("-py3-none-any.whl")
    venv = fresh_venv(tmp_path, wheel)
    run = sipguard(venv, "--version", cwd=tmp_path)
    assert run.returncode == 0 and "hot path Python (not compiled" in run.stdout, run
    # the console's static files come with the package: read as the listener reads them
    read = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "from importlib import resources; import sipguard.console.app as a; "
                           "print(a.__file__); print(sum(len(resources.files('sipguard.console')"
                           ".joinpath('static', n).read_bytes()) for n in a.STATIC))"],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    where, size = read.stdout.split()
    assert read.returncode == 0 and where.startswith(str(venv)) and int(size) > 5000, read
