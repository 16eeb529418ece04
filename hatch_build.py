"""Hatchling build hook: a wheel carries the native engine core, ``tradehall.exchange._native``.

A wheel built from the project (``pip wheel .``, ``pip install .``, ``python -m build``) compiles
the C core with ``scripts/build_native.py``'s compiler call, into a temporary directory, and
includes the module it builds. Such a wheel is platform-specific, so the hook sets
``pure_python = False`` and ``infer_tag = True`` (the tag of the building interpreter, such as
``cp311-cp311-linux_x86_64``).

The core stays optional, as for ``make``: without a C compiler or the Python headers, or when the
compiler fails, the hook logs a warning and the wheel is the pure-Python ``py3-none-any`` one,
whose engine is about 2x slower per command. ``TRADEHALL_REQUIRE_NATIVE=1`` makes any of these a
build error instead, for release builds that must not ship the slow engine by accident.

Editable installs (``pip install -e .``) import the module ``make`` builds in place and are left
alone; so is the sdist, which carries the C sources, this hook and the build script.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

REQUIRE = "TRADEHALL_REQUIRE_NATIVE"


def load_build_script(root: str) -> ModuleType:
    """``scripts/build_native.py`` as a module (``scripts/`` is not a package)."""
    path = Path(root, "scripts", "build_native.py")
    spec = importlib.util.spec_from_file_location("tradehall_build_native", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NativeCoreHook(BuildHookInterface[BuilderConfig]):
    """Compile the native engine core and force-include it in a platform-specific wheel."""

    PLUGIN_NAME = "custom"

    _workdir: str | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Build the core for a standard wheel; leave editable wheels and other targets alone."""
        if self.target_name != "wheel" or version != "standard":
            return
        native = load_build_script(self.root)
        if not native.sources():
            self._pure(f"no C sources in {native.SOURCES}", native.PURE_PYTHON)
            return
        try:
            cc = native.toolchain()
        except native.CannotBuild as missing:
            self._pure(str(missing), native.PURE_PYTHON)
            return
        self._workdir = tempfile.mkdtemp(prefix="tradehall-native-")
        output = Path(self._workdir, native.target().name)
        self.app.display_info(f"native engine core: compiling {output.name} for the wheel")
        done = native.build(cc, output)
        if done.returncode != 0:
            self._remove_workdir()
            self.app.display_warning(done.stdout + done.stderr)
            self._pure("the native engine core did not compile", native.PURE_PYTHON)
            return
        if done.stderr.strip():  # warnings: the build must stay warning-free, so show them
            self.app.display_warning(done.stderr)
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["force_include"][str(output)] = f"tradehall/exchange/{output.name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the temporary build of the core, now inside the wheel."""
        self._remove_workdir()

    def _remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _pure(self, reason: str, consequence: str) -> None:
        """Carry on with a pure-Python wheel, loudly; or stop when the core is required."""
        if os.environ.get(REQUIRE, "") not in {"", "0"}:
            raise RuntimeError(
                f"{REQUIRE} is set but the native engine core cannot be built: {reason}"
            )
        self.app.display_warning(
            f"warning: {reason}; the wheel is pure Python (py3-none-any), without the native "
            f"engine core: {consequence}"
        )
