"""The wheel's build: the hot path compiled with mypyc into it (and the C modules:
sipguard/sip/_fast.c, the C twin of the SIP head's splitting, and sipguard/proxy/_udp.c, the
UDP sockets' reads and sends), pure Python when it cannot be.

Everything but the extension modules is declared in pyproject.toml. The list of compiled
modules and the build stamp live in sipguard/native.py, loaded here by its path (importing
the package would check the compiled modules this build is about to make).

- ``SIPGUARD_COMPILE=0 pip wheel .`` builds the pure-Python wheel on purpose;
- a failed compilation (no C compiler, no Python headers) warns and builds the
  pure-Python wheel: the same program, more CPU per call;
- a successful one writes ``sipguard/native_stamp.json`` (the hash of each compiled
  source) into the wheel, which ``sipguard`` checks when imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_sipguard_native", os.path.join(HERE, "sipguard", "native.py"))
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)


class BuildNative(build_ext):
    """build_ext that falls back to Python: a failure leaves no compiled module behind."""

    def run(self) -> None:
        try:
            super().run()
        except (Exception, SystemExit) as exc:  # CompileError, LinkError, a missing compiler
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            self.extensions = []
            print(f"sipguard: not compiled ({exc}); the wheel runs as Python", file=sys.stderr)
            return
        package = os.path.join(HERE if self.inplace else self.build_lib, "sipguard")
        native.write_stamp(package)


# Commands that make the modules; pip also runs this file for metadata only (egg_info,
# sdist), where type-checking and translating the hot path would be time lost.
BUILDS = {"build", "build_ext", "bdist_wheel", "install", "develop", "editable_wheel"}


def extensions() -> list:
    if os.environ.get("SIPGUARD_COMPILE", "1") == "0" or not BUILDS.intersection(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        print(f"sipguard: not compiled ({exc}); the wheel runs as Python", file=sys.stderr)
        return []
    cwd = os.getcwd()
    os.chdir(HERE)  # mypyc names modules after their paths
    try:
        return mypycify(list(native.MODULES), opt_level="3", debug_level="0", group_name=native.GROUP) \
            + native.c_extensions()
    except (Exception, SystemExit) as exc:  # a type error mypyc refuses: build the Python wheel
        print(f"sipguard: not compiled ({exc}); the wheel runs as Python", file=sys.stderr)
        return []
    finally:
        os.chdir(cwd)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildNative})
