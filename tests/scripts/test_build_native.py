"""``scripts/build_native.py``: where no C compiler is, the platform still sets up (pure Python).

Only the paths that leave the built module alone run here: the suite itself imports that module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_native.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CC": "no-such-compiler-tradehall"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--force", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_without_a_compiler_it_warns_and_succeeds() -> None:
    done = run()
    assert done.returncode == 0
    assert "no C compiler found" in done.stderr
    assert "pure Python" in done.stderr


def test_require_fails_without_a_compiler() -> None:
    done = run("--require")
    assert done.returncode == 1
    assert "no C compiler found" in done.stderr
