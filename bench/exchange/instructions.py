"""Instructions per engine command: a figure that does not move with the machine's load.

    python bench/exchange/instructions.py [--commands 30000] [--layer engine|machine|service]
                                          [--engine auto|native|python]

Wall-clock rates on this project's shared two-core machines swing by 20–30% from one minute to
the next, which hides a 5–10% change. Instruction counts do not: this runs
``engine_bench.py`` under valgrind's cachegrind (no cache simulation, fixed hash seed) once at the
chosen layer and once at ``--layer null`` (the same flow and loop, no engine), and prints the
difference per command. Both runs build the same flow and run it twice (untimed and timed), so
flow building and the loop cancel out. It counts work, not time: cache misses and page faults,
which the data model's big dicts do cost, are not in it -- compare builds and changes with it,
and quote commands/s from ``engine_bench.py`` itself.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "engine_bench.py"


def measure(layer: str, commands: int, engine: str) -> tuple[int, int]:
    """(instructions of the whole run, commands the engine executed) for one layer."""
    args = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        str(BENCH),
        "--commands",
        str(commands),
        "--repeat",
        "1",
        "--layer",
        layer,
        "--engine",
        engine,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    refs = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    executed = re.search(r"^commands\s+(\d+)", done.stdout, re.MULTILINE)
    if refs is None or executed is None:
        tail = done.stderr[-2000:]
        raise SystemExit(f"could not read valgrind's or the bench's figures:\n{tail}")
    return int(refs.group(1).replace(",", "")), int(executed.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=30_000)
    parser.add_argument("--layer", choices=("engine", "machine", "service"), default="engine")
    parser.add_argument("--engine", choices=("auto", "native", "python"), default="auto")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    total, executed = measure(args.layer, args.commands, args.engine)
    loop, _ = measure("null", args.commands, args.engine)
    per_command = (total - loop) / (2 * executed)  # the flow runs twice: untimed, then timed
    print(f"layer / engine      {args.layer} / {args.engine}")
    print(f"commands            {executed:>10}")
    print(f"instructions/command {per_command:>9.0f}")


if __name__ == "__main__":
    main()
