"""Distributions: the wheel carries the native engine core, the sdist its C sources.

``hatch_build.py`` (a hatchling build hook) compiles the core with ``scripts/build_native.py``'s
compiler call for every wheel, which is then platform-specific; where the core cannot be built the
wheel is the pure-Python one and the build log says why. The builds here use the venv's hatchling
(``--no-build-isolation``), so they need no network.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
NATIVE = "tradehall/exchange/native"


def build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_native", ROOT / "scripts/build_native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def can_build() -> bool:
    """Whether this machine has a C compiler and the Python headers (else: a pure wheel)."""
    native = build_script()
    try:
        native.toolchain()
    except native.CannotBuild:
        return False
    return True


def python_headers() -> bool:
    return Path(sysconfig.get_paths()["include"], "Python.h").exists()


def environment(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"TRADEHALL_REQUIRE_NATIVE", "CC"}}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def pip_wheel(source: Path, out: Path) -> Path:
    """``pip wheel`` as a user would run it, without network; the one wheel it wrote."""
    command = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation"]
    command += ["--no-cache-dir", "--disable-pip-version-check", "-w", str(out), str(source)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=environment(),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def backend(
    hook: str, out: Path, project: Path = ROOT, **env: str | None
) -> subprocess.CompletedProcess[str]:
    """Call a PEP 517 hook of hatchling (``build_wheel``, ``build_sdist``) as ``python -m build``
    does, in ``project``."""
    code = f"import sys; from hatchling.build import {hook}; print({hook}(sys.argv[1]))"
    return subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=project,
        capture_output=True,
        text=True,
        env=environment(**env),
        check=False,
    )


def natives(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("tradehall/exchange/_native") and n.endswith(".so")]


def wheel_file(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/WHEEL")]
        return archive.read(name).decode()


def test_the_wheel_carries_the_native_core_and_a_platform_tag(tmp_path: Path) -> None:
    wheel = pip_wheel(ROOT, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "unpacked")
    assert "tradehall/exchange/engine.py" in names
    assert not [n for n in names if n.startswith(f"{NATIVE}/")]  # sources go in the sdist only
    if not can_build():
        assert wheel.name.endswith("-py3-none-any.whl")
        assert natives(names) == []
        return
    # exactly one: the fresh build, never also a stale in-place one from the working tree
    assert len(natives(names)) == 1, names
    assert not wheel.name.endswith("-py3-none-any.whl")
    assert wheel.name.startswith(
        f"tradehall-0.1.0-cp{sys.version_info.major}{sys.version_info.minor}-"
    )
    assert "Root-Is-Purelib: false" in wheel_file(wheel)
    # what an installed wheel runs: its own module, imported by its own engine
    check = (
        "import tradehall.exchange._native as m, tradehall.exchange.engine as e;"
        "from tradehall.core.clock import VirtualClock;"
        "from tradehall.core.ids import SequentialIds;"
        "print(m.__file__);print(e.Engine(VirtualClock(0), SequentialIds()).build)"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment(PYTHONPATH=str(tmp_path / "unpacked"), TRADEHALL_ENGINE=None),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    module, build = done.stdout.split()
    assert Path(module).is_relative_to(tmp_path / "unpacked")
    assert build == "native"


def test_the_sdist_carries_the_c_sources_and_builds_a_native_wheel(tmp_path: Path) -> None:
    done = backend("build_sdist", tmp_path)
    assert done.returncode == 0, done.stderr
    sdist = tmp_path / done.stdout.split()[-1]
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
        archive.extractall(tmp_path / "unpacked", filter="data")
    top = "tradehall-0.1.0"
    sources = sorted(p.name for p in (ROOT / "src" / NATIVE).glob("*.[ch]"))
    assert any(name.endswith(".c") for name in sources)
    for name in sources:
        assert f"{top}/src/{NATIVE}/{name}" in names
    for needed in ("hatch_build.py", "scripts/build_native.py", "pyproject.toml"):
        assert f"{top}/{needed}" in names
    assert natives([n.removeprefix(f"{top}/src/") for n in names]) == []  # no built module
    # `python -m build` and `pip install tradehall-0.1.0.tar.gz` build the wheel from the sdist.
    # Here a stale module sits in the tree and no .gitignore hides it (as in a container's build
    # context): neither wheel may carry it.
    project = tmp_path / "unpacked" / top
    (project / ".gitignore").unlink()
    stale = b"a stale module built elsewhere"
    (project / "src" / "tradehall" / "exchange" / build_script().target().name).write_bytes(stale)
    for cc, expected in ((None, 1 if can_build() else 0), ("no-such-compiler-tradehall", 0)):
        out = tmp_path / f"dist-{cc}"
        out.mkdir()
        done = backend("build_wheel", out, project=project, CC=cc)
        assert done.returncode == 0, done.stderr
        with zipfile.ZipFile(out / done.stdout.split()[-1]) as archive:
            built = natives(archive.namelist())
            assert len(built) == expected, (cc, built)
            assert all(archive.read(name) != stale for name in built)


def test_without_a_compiler_the_wheel_is_pure_and_the_log_says_so(tmp_path: Path) -> None:
    done = backend("build_wheel", tmp_path, CC="no-such-compiler-tradehall")
    assert done.returncode == 0, done.stderr
    wheel = tmp_path / done.stdout.split()[-1]
    assert wheel.name == "tradehall-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        assert natives(archive.namelist()) == []
    assert "Root-Is-Purelib: true" in wheel_file(wheel)
    assert "warning: no C compiler found" in done.stderr
    assert "the wheel is pure Python" in done.stderr


def test_a_compiler_failure_also_leaves_a_pure_wheel(tmp_path: Path) -> None:
    done = backend("build_wheel", tmp_path, CC="false")  # a "compiler" that always fails
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "tradehall-0.1.0-py3-none-any.whl"
    reason = "the native engine core did not compile" if python_headers() else "no Python headers"
    assert f"warning: {reason}" in done.stderr


@pytest.mark.parametrize("cc", ["no-such-compiler-tradehall", "false"])
def test_required_the_core_fails_the_build_instead(tmp_path: Path, cc: str) -> None:
    done = backend("build_wheel", tmp_path, CC=cc, TRADEHALL_REQUIRE_NATIVE="1")
    assert done.returncode != 0
    assert "TRADEHALL_REQUIRE_NATIVE is set but the native engine core cannot be built" in (
        done.stderr
    )
    assert list(tmp_path.glob("*.whl")) == []
