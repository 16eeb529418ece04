"""Supervised child processes: ordered start with readiness checks, restarts, clean stop.

:class:`Supervisor` starts its :class:`ChildSpec` list in order; each child must pass its
readiness probe (polled every 100 ms) before the next one starts. A child that exits or misses
its deadline during startup stops the whole start (:class:`StartupError`): that is a
configuration problem (a port in use, a bad flag) that restarting would not fix.

Once everything is up, a child that exits on its own is reported with its exit status and its
last output lines, then restarted after a back-off delay (:class:`RestartPolicy`: 1 s, 2 s,
4 s ... capped). The other children keep running: each system reconnects to the ones it uses.
A child that keeps crashing (``max_restarts`` within ``window`` seconds) makes the supervisor
give up and stop everything, so a broken system is never hidden behind an endless restart loop.

Stopping sends SIGTERM to each child in reverse start order and SIGKILL to any that is still
running after ``grace`` seconds. Children run in their own process group (a terminal's Ctrl-C
reaches only the supervisor, which then stops them in order) and, on Linux, receive SIGTERM if
the supervisor itself dies (``PR_SET_PDEATHSIG``), so no orphan keeps a port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tradehall.core.clock import Clock, SystemClock

__all__ = ["ChildSpec", "RestartPolicy", "StartupError", "Supervisor", "describe_exit"]

Probe = Callable[[], Awaitable[bool]]
Report = Callable[[str], None]
LineSink = Callable[[str, str], None]

_POLL = 0.1
_TAIL = 15
_REPORTED_TAIL = 8
_LINE_LIMIT = 1 << 20  # longest child output line kept whole (a longer one is skipped)


def describe_exit(status: int) -> str:
    """``exit status 3`` or ``killed by SIGKILL`` for a process return code."""
    if status >= 0:
        return f"exit status {status}"
    try:
        return f"killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"killed by signal {-status}"


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: its command line and how to tell that it is ready."""

    name: str
    argv: Sequence[str]
    ready: Probe
    env: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 60.0


class StartupError(RuntimeError):
    """A child could not be started: it exited, or it was not ready in time."""

    def __init__(self, name: str, reason: str, tail: Sequence[str] = ()) -> None:
        super().__init__(f"{name} {reason}")
        self.name = name
        self.reason = reason
        self.tail = list(tail)


@dataclass(frozen=True)
class RestartPolicy:
    """Back-off between restarts of one child, and when to give up on it."""

    initial: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    max_restarts: int = 5  # within ``window`` seconds; one more crash gives up
    window: float = 120.0

    def next_delay(self, crashes: Sequence[float], now: float) -> float | None:
        """Delay before the next restart given past crash times (incl. this one); None: give up."""
        recent = [t for t in crashes if now - t <= self.window]
        if len(recent) > self.max_restarts:
            return None
        return min(self.max_delay, self.initial * self.factor ** (len(recent) - 1))


def _pdeathsig() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


_PREEXEC = _pdeathsig()


class _Child:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None
        self.tail: deque[str] = deque(maxlen=_TAIL)
        self.crashes: list[float] = []
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    """Runs children; see the module docstring for the rules."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        report: Report,
        on_line: LineSink | None = None,
        log_dir: Path | None = None,
        policy: RestartPolicy | None = None,
        grace: float = 15.0,
        clock: Clock | None = None,
        render: Callable[[str], str | None] | None = None,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self._children = [_Child(s) for s in specs]
        self._report = report
        self._on_line = on_line
        self._log_dir = log_dir
        self._logs: dict[str, IO[str]] = {}
        self.policy = policy or RestartPolicy()
        self.grace = grace
        self.clock = clock or SystemClock()
        self._stopping = False
        self.failed: str | None = None  # set when the supervisor gave up on a child
        self._render = render or (lambda line: line)
        self._done = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []

    # -- introspection ------------------------------------------------------------------------

    def pids(self) -> dict[str, int | None]:
        """The current process id of each child (None when it is not running)."""
        return {
            c.spec.name: (c.process.pid if c.running and c.process else None)
            for c in self._children
        }

    def starts(self, name: str) -> int:
        """How many times ``name`` was started (1 + restarts)."""
        return next(c.starts for c in self._children if c.spec.name == name)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every child in order, each one ready before the next; StartupError on failure.

        On failure the children already started are stopped before the error propagates.
        """
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for child in self._children:
                if self._stopping:
                    return
                began = self.clock.monotonic()
                await self._spawn(child)
                await self._await_ready(child)
                took = self.clock.monotonic() - began
                self._report(f"{child.spec.name} ready in {took:.1f} s (pid {self._pid(child)})")
        except BaseException:
            await self.stop()
            raise
        for child in self._children:
            self._watchers.append(asyncio.create_task(self._watch(child)))

    async def wait(self) -> int:
        """Until :meth:`stop` finished: 0 after a requested stop, 1 if a child was given up on."""
        await self._done.wait()
        return 1 if self.failed else 0

    async def stop(self) -> None:
        """SIGTERM every child in reverse order, SIGKILL after the grace period. Idempotent."""
        if self._stopping:
            await self._done.wait()
            return
        self._stopping = True
        current = asyncio.current_task()
        for task in self._watchers:
            if task is not current:
                task.cancel()
        for child in reversed(self._children):
            await self._terminate(child)
        for log in self._logs.values():
            log.close()
        self._done.set()

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _pid(child: _Child) -> int:
        assert child.process is not None
        return child.process.pid

    async def _spawn(self, child: _Child) -> None:
        spec = child.spec
        env = {**os.environ, **spec.env}
        child.process = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            limit=_LINE_LIMIT,
            process_group=0,
            preexec_fn=_PREEXEC,
        )
        child.starts += 1
        child.tail.clear()
        child.reader = asyncio.create_task(self._pump(child, child.process))

    async def _pump(self, child: _Child, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        name = child.spec.name
        log = self._log_file(name)
        while True:
            try:
                raw = await process.stdout.readline()
            except ValueError:  # a line longer than the stream limit: skip its remainder
                continue
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\n")
            child.tail.append(line)
            if log is not None:
                log.write(line + "\n")
                log.flush()
            if self._on_line is not None:
                self._on_line(name, line)

    def _log_file(self, name: str) -> IO[str] | None:
        if self._log_dir is None:
            return None
        if name not in self._logs:
            self._logs[name] = (self._log_dir / f"{name}.log").open("a", encoding="utf-8")
        return self._logs[name]

    async def _await_ready(self, child: _Child) -> None:
        spec, process = child.spec, child.process
        assert process is not None
        deadline = self.clock.monotonic() + spec.ready_timeout
        while True:
            if process.returncode is not None:
                await self._drain(child)
                reason = f"exited during startup ({describe_exit(process.returncode)})"
                raise StartupError(spec.name, reason, child.tail)
            with contextlib.suppress(Exception):
                if await spec.ready():
                    return
            if self.clock.monotonic() >= deadline:
                raise StartupError(
                    spec.name, f"was not ready within {spec.ready_timeout:g} s", child.tail
                )
            await self.clock.sleep(_POLL)

    async def _drain(self, child: _Child) -> None:
        """Let the output reader finish, so the tail holds the child's last words."""
        if child.reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(child.reader), 2.0)

    async def _watch(self, child: _Child) -> None:
        name = child.spec.name
        while not self._stopping:
            process = child.process
            assert process is not None
            status = await process.wait()
            if self._stopping:
                return
            await self._drain(child)
            now = self.clock.monotonic()
            child.crashes.append(now)
            lines = [self._render(line) for line in child.tail]
            tail = "\n".join(f"    {line}" for line in lines[-_REPORTED_TAIL:] if line)
            self._report(
                f"{name} stopped unexpectedly ({describe_exit(status)}); last output:\n{tail}"
            )
            delay = self.policy.next_delay(child.crashes, now)
            if delay is None:
                self.failed = name
                recent = sum(1 for t in child.crashes if now - t <= self.policy.window)
                self._report(
                    f"{name} crashed {recent} times within {self.policy.window:g} s; "
                    "giving up and stopping the platform"
                )
                asyncio.create_task(self.stop())  # noqa: RUF006 - stop() cancels this watcher
                return
            self._report(f"restarting {name} in {delay:g} s (restart {child.starts})")
            await self.clock.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn(child)
                await self._await_ready(child)
            except StartupError as exc:
                self._report(f"{name} restart failed: {exc.reason}")
                if child.running:
                    await self._terminate(child)
                continue  # the failed start counts as a crash on the next round
            self._report(f"{name} is back (pid {self._pid(child)})")

    async def _terminate(self, child: _Child) -> None:
        process = child.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.grace)
            except TimeoutError:
                self._report(
                    f"{child.spec.name} did not stop within {self.grace:g} s; sending SIGKILL"
                )
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await self._drain(child)
