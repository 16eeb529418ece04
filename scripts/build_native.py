"""Build the optional native engine core, ``tradehall.exchange._native``, in place.

    python scripts/build_native.py [--force] [--require] [--quiet]

The matching engine has two builds that keep the same state in the same Python structures: the
pure-Python reference (always there) and a C core for the hot commands (see
``src/tradehall/exchange/engine.py``). ``make run`` and ``make test`` call this script first, so the
C core is used wherever a C compiler is, and the platform still runs, in pure Python, where none is.

What it does: compiles every ``src/tradehall/exchange/native/*.c`` as one extension module with the
running interpreter's compiler, headers and extension suffix (``sysconfig``), into
``src/tradehall/exchange/_native<EXT_SUFFIX>``, next to the sources an editable install imports.
It rebuilds only when a source, a header or this script is newer than the built module, and
writes the result atomically (compile to a temporary name, then rename), so a running server
never loads a half-written file.

Why not setuptools: the project builds with hatchling and installs from a hashed lock; one compiler
call needs neither a second build backend nor a build-time dependency. Wheels get the same
compiler call: the hatchling build hook ``hatch_build.py`` loads this module (:func:`toolchain`,
:func:`build`) and puts the module it builds into the wheel.

When it cannot build:

- no C compiler, or no Python headers (``Python.h``, from a distribution's ``python3.x-dev``): a
  warning, exit 0; the engine runs in pure Python (``--require`` makes it exit 1);
- the compiler fails: the error, any stale module is removed (an old build could expect other
  structures than the Python code now has), exit 0 with a warning (exit 1 with ``--require``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "tradehall" / "exchange"
SOURCES = PACKAGE / "native"
FLAGS = ["-O3", "-fPIC", "-shared", "-fwrapv", "-Wall", "-Wextra", "-std=c11"]
PURE_PYTHON = "the engine runs in pure Python, about 2x slower per engine command"


class CannotBuild(Exception):
    """This machine lacks what the build needs; the message says what and how to install it."""


def target() -> Path:
    """Where the built module goes: ``_native`` plus this interpreter's extension suffix."""
    return PACKAGE / f"_native{sysconfig.get_config_var('EXT_SUFFIX')}"


def compiler() -> list[str] | None:
    """The interpreter's C compiler command (``CC``, else ``cc``), if it is installed."""
    command = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not command or shutil.which(command[0]) is None:
        return None
    return command


def toolchain() -> list[str]:
    """The compiler command to build with, once the Python headers are known to be there too.

    Raises :class:`CannotBuild` when there is no C compiler or no ``Python.h``.
    """
    cc = compiler()
    if cc is None:
        raise CannotBuild("no C compiler found (set CC or install gcc/clang)")
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if not headers.exists():
        raise CannotBuild(
            f"no Python headers ({headers} is missing; on Debian/Ubuntu install "
            f"python{sys.version_info.major}.{sys.version_info.minor}-dev)"
        )
    return cc


def sources() -> list[Path]:
    """The C files compiled into the module, in a stable order."""
    return sorted(SOURCES.glob("*.c"))


def inputs() -> list[Path]:
    """Every file a build depends on: the sources, the headers and this script."""
    return sorted([*SOURCES.glob("*.c"), *SOURCES.glob("*.h"), Path(__file__).resolve()])


def up_to_date(output: Path) -> bool:
    """Whether ``output`` exists and is newer than every input."""
    if not output.exists():
        return False
    built = output.stat().st_mtime_ns
    return all(path.stat().st_mtime_ns <= built for path in inputs())


def build(cc: list[str], output: Path) -> subprocess.CompletedProcess[str]:
    """Compile the sources with ``cc`` into ``output`` atomically; the compiler's result.

    ``output`` is replaced only when the compiler succeeds, and left as it was otherwise.
    """
    include = sysconfig.get_paths()["include"]
    files = [str(path) for path in sources()]
    fd, partial = tempfile.mkstemp(prefix=".native-", suffix=".so", dir=output.parent)
    os.close(fd)
    command = [*cc, *FLAGS, f"-I{include}", f"-I{SOURCES}", *files, "-o", partial]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode == 0:
        os.replace(partial, output)
    else:
        Path(partial).unlink(missing_ok=True)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--require", action="store_true", help="fail when it cannot build")
    parser.add_argument("--quiet", action="store_true", help="say nothing when up to date")
    args = parser.parse_args()
    failed = 1 if args.require else 0
    output = target()
    if not sources():
        print("native engine core: no C sources yet; the engine runs in pure Python")
        return failed
    if not args.force and up_to_date(output):
        if not args.quiet:
            print(f"native engine core: up to date ({output.relative_to(ROOT)})")
        return 0
    try:
        cc = toolchain()
    except CannotBuild as missing:
        print(f"warning: {missing}; {PURE_PYTHON}", file=sys.stderr)
        return failed
    done = build(cc, output)
    if done.returncode != 0:
        output.unlink(missing_ok=True)
        sys.stderr.write(done.stdout + done.stderr)
        print(
            "warning: the native engine core did not compile; the engine runs in pure Python",
            file=sys.stderr,
        )
        return failed
    if done.stderr.strip():  # warnings: the build must stay warning-free
        sys.stderr.write(done.stderr)
    print(f"native engine core: built {output.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
