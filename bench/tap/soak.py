"""Soak and spike runs for the tap server: open-loop bet rate by phases, figures per interval.

Starts ``tradehall tap`` like ``load.py`` (sim feed, fresh data directory, per-wallet limits
raised), logs in and funds ``--wallets`` wallets, then offers bets open loop over
``--connections`` keep-alive connections at the rates of ``--phases`` (``rate:seconds`` pairs,
e.g. ``1000:10,8000:10,1000:20`` for a spike, ``5000:600`` for a soak). A request's latency
counts from when it was due (no coordinated omission). Every ``--interval`` seconds it prints
the offered and accepted rate, p50/p99/max latency of the requests answered in that interval,
503 ``overloaded`` and other 5xx counts, the server's and writer's heap (``RssAnon``), and the
WAL and database sizes; at the end, per phase, the same figures and the recovery time after
each phase whose rate is higher than the next one's (first interval after it whose p99 is back
under ``--recovered-ms`` or twice the median p99 of the phase before it, whichever is higher).

Each connection has one request outstanding at a time, so the server never holds more than
``--connections`` bets: 503 ``overloaded`` can only appear when that exceeds the batcher's queue
(``--queue-size``, 10 000). Below that, an offered rate the server cannot take builds a backlog on
the client side, which shows as latency (counted from when each bet was due) and as the time the
backlog takes to drain after the spike: the recovery time.

    .venv/bin/python bench/tap/soak.py --phases 5000:300 --interval 10          # soak
    .venv/bin/python bench/tap/soak.py --phases 1000:10,8000:10,1000:20 --interval 1  # spike
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from load import (
    Conn,
    Wallet,
    bet_body,
    free_port,
    grid_watcher,
    integrity_check,
    make_wallets,
    pct,
    start_server,
    wait_healthy,
)


@dataclass
class Answer:
    at: float  # when the answer arrived (perf_counter)
    latency: float  # from when the request was due
    status: int
    error: str | None


@dataclass
class Schedule:
    """Offered rate over time: ``(rate, seconds)`` phases from ``start``."""

    phases: list[tuple[float, float]]
    start: float = 0.0

    def rate_at(self, t: float) -> float | None:
        elapsed = t - self.start
        for rate, seconds in self.phases:
            if elapsed < seconds:
                return rate
            elapsed -= seconds
        return None  # past the last phase

    def phase_of(self, t: float) -> int:
        elapsed = t - self.start
        for i, (_, seconds) in enumerate(self.phases):
            if elapsed < seconds:
                return i
            elapsed -= seconds
        return len(self.phases) - 1


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)


async def worker(
    host: str,
    port: int,
    wallets: list[Wallet],
    cells: list[list[str]],
    schedule: Schedule,
    connections: int,
    run: Run,
    rng: random.Random,
) -> None:
    """One connection: a bet every ``connections / rate`` seconds, latency from when it was due."""
    conn = Conn(host, port)
    await conn.open()
    i = 0
    first = schedule.rate_at(time.perf_counter()) or 1.0
    due = schedule.start + rng.uniform(0, connections / first)
    while True:
        rate = schedule.rate_at(due)
        if rate is None:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        wallet = wallets[i % len(wallets)]
        i += 1
        body = bet_body(rng, cells[0], wallet)
        if body is None:  # a bet on every open cell already: skip this slot
            due += connections / rate
            continue
        started = due
        due += connections / rate
        status, resp = await conn.request("POST", "/api/bets", body, wallet.token)
        now = time.perf_counter()
        error = resp.get("error") if status != 202 and isinstance(resp, dict) else None
        run.answers.append(Answer(now, now - started, status, error))
    conn.close()


def rss_mb(pid: int) -> float:
    """Anonymous resident memory of ``pid`` and its children (the writer process), in MB.

    ``RssAnon`` (heap), not ``VmRSS``: the latter also counts the pages of the database file
    that the connections' 256 MB memory maps have touched, which grows with the file and is
    page cache, not a leak.
    """
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except OSError:
        return 0.0


def summarize(answers: list[Answer]) -> tuple[int, int, int, float, float, float]:
    """Accepted, 503 overloaded, other 5xx, p50 / p99 / max latency in ms."""
    lat = sorted(a.latency for a in answers)
    accepted = sum(a.status == 202 for a in answers)
    overloaded = sum(a.status == 503 and a.error == "overloaded" for a in answers)
    other = sum(a.status >= 500 for a in answers) - overloaded
    if not lat:
        return accepted, overloaded, other, float("nan"), float("nan"), float("nan")
    return accepted, overloaded, other, pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3, lat[-1] * 1e3


async def reporter(
    run: Run,
    schedule: Schedule,
    interval: float,
    pid: int | None,
    data_dir: Path | None,
    rows: list[tuple[float, float, int, float]],
) -> None:
    """Print one line per interval; ``rows`` collects (end, offered, phase, p99) for recovery."""
    print(
        f"{'t s':>6} {'offered/s':>9} {'accepted/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'503 ovl':>7} {'5xx':>5} {'anon MB':>7} {'wal MB':>7} {'db MB':>7}"
    )
    seen = 0
    begin = schedule.start
    end = begin + interval
    while True:
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        batch = [a for a in run.answers[seen:] if a.at < end]
        seen += len(batch)
        offered = schedule.rate_at(end - interval / 2)
        accepted, overloaded, other, p50, p99, worst = summarize(batch)
        rss = rss_mb(pid) if pid is not None else float("nan")
        wal = size_mb(data_dir / "tap.db-wal") if data_dir else float("nan")
        db = size_mb(data_dir / "tap.db") if data_dir else float("nan")
        t = end - begin
        print(
            f"{t:6.0f} {offered or 0:9.0f} {accepted / interval:10.0f} {p50:8.1f} {p99:8.1f} "
            f"{worst:8.1f} {overloaded:7d} {other:5d} {rss:7.0f} {wal:7.1f} {db:7.1f}",
            flush=True,
        )
        rows.append((t, offered or 0.0, schedule.phase_of(end - interval / 2), p99))
        if offered is None:
            return
        end += interval


def recovery_times(
    rows: list[tuple[float, float, int, float]], phases: list[tuple[float, float]], ok_ms: float
) -> list[str]:
    """After each phase busier than the next: when p99 is back to normal.

    Normal is ``ok_ms`` or twice the median interval p99 of the phase before the busy one,
    whichever is higher (on a loaded machine the quiet phase itself may not meet ``ok_ms``).
    """
    lines = []
    for i in range(len(phases) - 1):
        if phases[i][0] <= phases[i + 1][0]:
            continue
        before = sorted(r[3] for r in rows if i > 0 and r[2] == i - 1 and r[3] == r[3])
        baseline = before[len(before) // 2] if before else 0.0
        threshold = max(ok_ms, 2 * baseline)
        phase_end = sum(s for _, s in phases[: i + 1])
        after = [r for r in rows if r[0] > phase_end]
        back = next((r for r in after if r[3] <= threshold), None)
        when = f"{back[0] - phase_end:.0f} s" if back else "not within the run"
        lines.append(
            f"recovery after phase {i + 1} ({phases[i][0]:.0f}/s -> {phases[i + 1][0]:.0f}/s):"
            f" p99 <= {threshold:.0f} ms (max of {ok_ms:.0f} ms and 2x the median p99 before"
            f" the phase, {baseline:.0f} ms) again after {when} (interval end)"
        )
    return lines


async def main_async(args: argparse.Namespace) -> int:
    phases = [(float(r), float(s)) for r, s in (p.split(":") for p in args.phases.split(","))]
    host, port = "127.0.0.1", free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="tap-soak-"))
    proc = start_server(port, data_dir, args.flush_interval, args.batch_size, args.synchronous)
    try:
        await wait_healthy(host, port)
        wallets = await make_wallets(host, port, args.wallets, 1)
        cells: list[list[str]] = [[]]
        stop = asyncio.Event()
        watcher = asyncio.create_task(grid_watcher([(host, port)], cells, stop))
        for _ in range(200):
            if cells[0]:
                break
            await asyncio.sleep(0.05)
        per = max(1, len(wallets) // args.connections)
        groups = [wallets[i * per : (i + 1) * per] or wallets for i in range(args.connections)]
        schedule = Schedule(phases, time.perf_counter() + 0.5)
        run = Run()
        rows: list[tuple[float, float, int, float]] = []
        print(f"phases: {args.phases}, connections: {args.connections}, wallets: {len(wallets)}")
        tasks = [
            asyncio.create_task(
                worker(host, port, g, cells, schedule, args.connections, run, random.Random(i))
            )
            for i, g in enumerate(groups)
        ]
        report = asyncio.create_task(
            reporter(run, schedule, args.interval, proc.pid, data_dir, rows)
        )
        await asyncio.gather(*tasks)
        await report
        stop.set()
        await watcher
        print("per phase:")
        for i, (rate, seconds) in enumerate(phases):
            answers = [a for a in run.answers if schedule.phase_of(a.at) == i]
            accepted, overloaded, other, p50, p99, worst = summarize(answers)
            print(
                f"  {i + 1}: offered {rate:.0f}/s for {seconds:.0f} s: accepted"
                f" {accepted / seconds:.0f}/s, p50 {p50:.1f} p99 {p99:.1f} max {worst:.1f} ms,"
                f" 503 overloaded {overloaded}, other 5xx {other}"
            )
        for line in recovery_times(rows, phases, args.recovered_ms):
            print(line)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        print(integrity_check(data_dir)[:240])
        return 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="1000:10,8000:10,1000:20", help="rate:seconds,...")
    parser.add_argument("--interval", type=float, default=1.0, help="report every N seconds")
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--wallets", type=int, default=800)
    parser.add_argument("--recovered-ms", type=float, default=50.0)
    parser.add_argument("--flush-interval", default="20ms")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
