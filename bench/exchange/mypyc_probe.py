"""Probe: how much faster is the matching engine compiled with mypyc? (An experiment, not a build.)

    python bench/exchange/mypyc_probe.py [--modules engine,book,indexes] [--src src]
                                         [--layer engine] [--commands 300000] [--repeat 3]

Copies the ``tradehall`` package from ``--src`` into a temporary directory, compiles the chosen
``tradehall.exchange`` modules there with mypyc (``build_ext --inplace``, gcc, ``-O3``), and runs
``engine_bench.py`` against the copy, then against the pure-Python ``--src`` in the same session,
so both figures share the machine's load. The compiled copy is deleted afterwards; nothing in the
working tree changes.

Needs mypy (locked) and setuptools, which is *not* in ``requirements.lock``: on Python 3.11 a
virtualenv happens to get one from ``ensurepip``, on 3.12+ it does not. Without setuptools the
probe says so in one line and exits. See docs/exchange-performance.md, "Engine core", for what was
measured and why no compiled build ships.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).with_name("engine_bench.py")
SETUP = """\
import sys
from setuptools import setup
from mypyc.build import mypycify

paths = sys.argv.pop(1).split(",")
setup(
    name="tradehall-mypyc-probe",
    ext_modules=mypycify(paths, opt_level="3", group_name="tradehall.exchange.probe"),
)
"""


def bench(src: Path, args: argparse.Namespace) -> None:
    env = {**os.environ, "PYTHONPATH": str(src)}
    # --engine python: with the C core built, "auto" would time it in both runs, not the
    # Python methods mypyc compiled
    command = [sys.executable, str(BENCH), "--layer", args.layer, "--engine", "python"]
    command += ["--commands", str(args.commands), "--repeat", str(args.repeat)]
    subprocess.run(command, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default="engine,book,indexes")
    parser.add_argument("--src", type=Path, default=Path(__file__).parents[2] / "src")
    parser.add_argument("--layer", choices=("engine", "machine", "service"), default="engine")
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if importlib.util.find_spec("setuptools") is None:
        print("mypyc probe: setuptools is not installed (not in requirements.lock); nothing built")
        return
    with tempfile.TemporaryDirectory(prefix="mypyc-probe-") as tmp:
        work = Path(tmp)
        shutil.copytree(args.src / "tradehall", work / "tradehall")
        (work / "setup.py").write_text(SETUP)
        paths = ",".join(f"tradehall/exchange/{name}.py" for name in args.modules.split(","))
        subprocess.run(
            [sys.executable, "setup.py", paths, "build_ext", "--inplace"],
            cwd=work,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"== compiled with mypyc: {args.modules}")
        bench(work, args)
    print("== pure Python")
    bench(args.src, args)


if __name__ == "__main__":
    main()
