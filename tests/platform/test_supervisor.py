"""The supervisor with real child processes: order, readiness, restarts, giving up, stopping."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

import pytest

from tradehall.platform.supervisor import (
    ChildSpec,
    Probe,
    RestartPolicy,
    StartupError,
    Supervisor,
    describe_exit,
)

FAST = RestartPolicy(initial=0.05, factor=2.0, max_delay=0.2, max_restarts=2, window=60.0)


# -- the restart policy (pure) ---------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(initial=1.0, factor=2.0, max_delay=5.0, max_restarts=10, window=100.0)
    crashes: list[float] = []
    delays = []
    for t in range(6):
        crashes.append(float(t))
        delays.append(policy.next_delay(crashes, float(t)))
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_gives_up_after_max_restarts_within_the_window() -> None:
    policy = RestartPolicy(initial=1.0, max_restarts=3, window=60.0)
    assert policy.next_delay([0.0, 1.0, 2.0], 2.0) == 4.0
    assert policy.next_delay([0.0, 1.0, 2.0, 3.0], 3.0) is None


def test_old_crashes_leave_the_window_and_the_backoff_resets() -> None:
    policy = RestartPolicy(initial=1.0, max_restarts=3, window=60.0)
    assert policy.next_delay([0.0, 1.0, 2.0, 100.0], 100.0) == 1.0


def test_exit_statuses_are_described_in_words() -> None:
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"


# -- helpers ---------------------------------------------------------------------------------


def script(tmp_path: Path, name: str, body: str) -> list[str]:
    """A Python child: ``body`` runs with ``d`` = tmp_path and ``name`` set."""
    path = tmp_path / f"{name}.py"
    prelude = (
        f"import os, signal, sys, time\nfrom pathlib import Path\nd = Path({str(tmp_path)!r})\n"
    )
    path.write_text(prelude + textwrap.dedent(body))
    return [sys.executable, str(path)]


def file_probe(path: Path) -> Probe:
    async def probe() -> bool:
        return path.exists()

    return probe


SERVE = """
    def bye(*_):
        with (d / "stopped").open("a") as f:
            f.write(NAME + "\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    print("hello from", NAME, flush=True)  # before "ready": a stop may follow at once
    (d / (NAME + ".ready")).write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)
"""


def server(tmp_path: Path, name: str, before: str = "") -> ChildSpec:
    body = f"NAME = {name!r}\n" + textwrap.dedent(before) + textwrap.dedent(SERVE)
    return ChildSpec(name, script(tmp_path, name, body), file_probe(tmp_path / f"{name}.ready"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


class Recorder:
    def __init__(self) -> None:
        self.reports: list[str] = []
        self.lines: list[tuple[str, str]] = []

    def report(self, message: str) -> None:
        self.reports.append(message)

    def line(self, name: str, line: str) -> None:
        self.lines.append((name, line))


# -- start, output, stop ---------------------------------------------------------------------


async def test_starts_in_order_logs_output_and_stops_in_reverse(tmp_path: Path) -> None:
    rec = Recorder()
    # b refuses to start unless a is ready: proves a's readiness is awaited first
    b = server(tmp_path, "b", before="if not (d / 'a.ready').exists(): sys.exit(3)\n")
    sup = Supervisor(
        [server(tmp_path, "a"), b],
        report=rec.report,
        on_line=rec.line,
        log_dir=tmp_path / "logs",
        policy=FAST,
    )
    await sup.start()
    pids = sup.pids()
    assert all(pid is not None and alive(pid) for pid in pids.values())
    assert [r.split()[0:2] for r in rec.reports] == [["a", "ready"], ["b", "ready"]]
    await sup.stop()
    assert await sup.wait() == 0
    assert (tmp_path / "stopped").read_text().split() == ["b", "a"]
    assert not any(alive(pid) for pid in pids.values() if pid is not None)
    assert ("a", "hello from a") in rec.lines
    assert "hello from b" in (tmp_path / "logs" / "b.log").read_text()


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    rec = Recorder()
    stubborn = ChildSpec(
        "stubborn",
        script(
            tmp_path,
            "stubborn",
            """
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            (d / "stubborn.ready").touch()
            while True:
                time.sleep(0.05)
            """,
        ),
        file_probe(tmp_path / "stubborn.ready"),
    )
    sup = Supervisor([stubborn], report=rec.report, policy=FAST, grace=0.3)
    await sup.start()
    pid = sup.pids()["stubborn"]
    assert pid is not None
    await sup.stop()
    assert not alive(pid)
    assert any("did not stop within 0.3 s; sending SIGKILL" in r for r in rec.reports)
    assert await sup.wait() == 0


# -- startup failures ------------------------------------------------------------------------


async def test_a_child_exiting_during_startup_stops_the_start(tmp_path: Path) -> None:
    rec = Recorder()
    broken = ChildSpec(
        "broken",
        script(
            tmp_path, "broken", 'print("port 8080 is already in use", flush=True)\nsys.exit(4)\n'
        ),
        file_probe(tmp_path / "never"),
    )
    sup = Supervisor([server(tmp_path, "a"), broken], report=rec.report, policy=FAST)
    with pytest.raises(StartupError) as info:
        await sup.start()
    assert info.value.name == "broken"
    assert "broken exited during startup (exit status 4)" in str(info.value)
    assert "port 8080 is already in use" in info.value.tail
    a_pid = int((tmp_path / "a.ready").read_text())
    assert not alive(a_pid)  # what had started is stopped again
    assert (tmp_path / "stopped").read_text().split() == ["a"]


async def test_a_child_never_ready_times_out(tmp_path: Path) -> None:
    rec = Recorder()
    slow = ChildSpec(
        "slow",
        script(tmp_path, "slow", "while True:\n    time.sleep(0.05)\n"),
        file_probe(tmp_path / "never"),
        ready_timeout=0.5,
    )
    sup = Supervisor([slow], report=rec.report, policy=FAST, grace=1.0)
    with pytest.raises(StartupError, match=r"slow was not ready within 0.5 s"):
        await sup.start()
    assert sup.pids() == {"slow": None}


async def test_a_failing_probe_counts_as_not_ready(tmp_path: Path) -> None:
    async def broken_probe() -> bool:
        raise ConnectionError("refused")

    child = ChildSpec(
        "c", script(tmp_path, "c", "time.sleep(30)\n"), broken_probe, ready_timeout=0.3
    )
    sup = Supervisor([child], report=Recorder().report, policy=FAST, grace=1.0)
    with pytest.raises(StartupError, match="not ready"):
        await sup.start()


# -- crashes after start ---------------------------------------------------------------------


async def test_a_crashed_child_is_reported_and_restarted(tmp_path: Path) -> None:
    rec = Recorder()
    # the first run crashes (status 7) after becoming ready; later runs serve normally
    flaky = server(
        tmp_path,
        "flaky",
        before="""
        runs = d / "runs"
        runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
        if runs.read_text() == "x":
            (d / "flaky.ready").touch()
            print("about to fail", flush=True)
            time.sleep(0.3)
            sys.exit(7)
        """,
    )
    sup = Supervisor([server(tmp_path, "a"), flaky], report=rec.report, policy=FAST)
    await sup.start()
    a_pid = sup.pids()["a"]
    for _ in range(200):
        if any(r.startswith("flaky is back") for r in rec.reports):
            break
        await _tick()
    assert sup.starts("flaky") == 2
    crash = next(r for r in rec.reports if "stopped unexpectedly" in r)
    assert "flaky stopped unexpectedly (exit status 7)" in crash
    assert "about to fail" in crash
    assert any(r.startswith("restarting flaky in 0.05 s") for r in rec.reports)
    assert sup.pids()["a"] == a_pid  # the others were not touched
    await sup.stop()
    assert await sup.wait() == 0


async def test_a_child_that_keeps_crashing_stops_the_platform(tmp_path: Path) -> None:
    rec = Recorder()
    crasher = ChildSpec(
        "crasher",
        script(
            tmp_path, "crasher", '(d / "crasher.ready").touch()\ntime.sleep(0.2)\nsys.exit(9)\n'
        ),
        file_probe(tmp_path / "crasher.ready"),
    )
    sup = Supervisor([server(tmp_path, "a"), crasher], report=rec.report, policy=FAST)
    await sup.start()
    a_pid = sup.pids()["a"]
    assert a_pid is not None
    assert await sup.wait() == 1
    assert sup.failed == "crasher"
    assert sup.starts("crasher") == 3  # first start + max_restarts
    assert any("crasher crashed 3 times" in r and "giving up" in r for r in rec.reports)
    assert not alive(a_pid)


async def _tick() -> None:
    await asyncio.sleep(0.05)
