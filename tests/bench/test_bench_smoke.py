"""Smoke test of ``bench/``: every benchmark script that can run quickly still runs.

Nothing else runs the bench scripts, so a refactor of ``src/`` could silently break one (issue #4:
performance figures must stay reproducible with one command each). Each case runs one script as
a subprocess with the venv's Python and tiny figures, and checks the exit code and that the
figure lines it exists to print are there with a number greater than zero. No timing is
asserted: the figures themselves mean nothing at these sizes.

Scripts that need ``wrk`` or a mypyc build are listed in :data:`NOT_SMOKED` with the reason;
:func:`test_every_bench_script_is_smoked_or_listed` fails when a new script is in neither list.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tradehall.core.clock import SystemClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
NUMBER = r"(-?[\d,]+(?:\.\d+)?)"
# the engine build ``native=None`` resolves to in this environment (C core built? TRADEHALL_ENGINE?)
AUTO_BUILD = Engine(SystemClock(), SequentialIds()).build


@dataclass(frozen=True)
class Case:
    """One run of a bench script: its arguments and the figures its output must show."""

    script: str
    args: tuple[str, ...]
    figures: tuple[str, ...]
    """Regular expressions, each with one group: a number (``,`` separators allowed) > 0."""
    texts: tuple[str, ...] = ()
    """Regular expressions the output must also match (no number to check)."""

    @property
    def name(self) -> str:
        return " ".join((self.script.removeprefix("bench/"), *self.args))


CASES = (
    # ---------------------------------------------------------------- exchange
    *(
        Case(
            "bench/exchange/engine_bench.py",
            ("--layer", layer, "--engine", engine, "--commands", "2000", "--repeat", "1"),
            (
                rf"^trades\s+{NUMBER}$",
                rf"^commands/s \(wall\)\s+{NUMBER}$",
                rf"^commands/s \(CPU\)\s+{NUMBER}$",
                rf"^p50 / p99 / p99\.9 per command: {NUMBER} /",
            ),
            # the build the layer got: auto gives what a server started here would get
            (rf"^engine build\s+{AUTO_BUILD if engine == 'auto' else engine}\s",),
        )
        for layer in ("engine", "machine", "service")
        for engine in ("auto", "python")
    ),
    Case(  # the loop alone: no engine, no trades; its rate is what the other layers pay extra
        "bench/exchange/engine_bench.py",
        ("--layer", "null", "--commands", "2000", "--repeat", "1"),
        (rf"^commands/s \(wall\)\s+{NUMBER}$", rf"^commands/s \(CPU\)\s+{NUMBER}$"),
        (r"^engine build\s+none\s", r"^trades\s+0$", r"^p50 / p99 / p99\.9 per command: "),
    ),
    Case(
        "bench/exchange/memory_bench.py",
        ("--orders", "5000", "--levels", "50", "--documents", "50"),
        (rf"^resting orders\s+{NUMBER}$", rf"^submit rate\s+{NUMBER} orders/s"),
        # RSS growth over 5000 orders can round to one page or none: the line, not its value
        (r"^per order\s+-?\d+ B",),
    ),
    Case(
        "bench/exchange/flat_bench.py",
        ("--sizes", "1000", "--samples", "100"),
        # N = 1000, then the median us of cross, rest, cancel, vwap, listing, expiry and book
        (rf"^N = {NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s",),
    ),
    Case(
        "bench/exchange/crossing_flat.py",
        ("--orders", "4000", "--chunk", "2000"),
        # the last chunk: orders, trades, cpu us per order
        (rf"^\s+4000\s+{NUMBER}\s+{NUMBER}$",),
    ),
    Case(
        "bench/exchange/http_protocol_bench.py",
        ("--requests", "200", "--repeat", "1"),
        tuple(
            rf"^{scenario}\s+{protocol}\s+{NUMBER}\s"
            for scenario in ("resting", "book", "balance", "healthz")
            for protocol in ("asgi", "lean")
        ),
    ),
    Case(
        "bench/exchange/http_protocol_bench.py",
        ("--stages",),
        (rf"^validate body\s+{NUMBER} µs", rf"^render \+ encode answer\s+{NUMBER} µs"),
    ),
    Case(
        "bench/exchange/md_fanout.py",
        ("--inproc", "--clients", "2", "--seconds", "1"),
        # clients, orders/s, /cpu-s, ..., then md msgs after trades: the clients got market data
        (
            rf"^\s+2\s+{NUMBER}\s+{NUMBER}\s",
            rf"^\s+2(?:\s+\S+){{6}}\s+{NUMBER}\s",
        ),
    ),
    # ---------------------------------------------------------------- gateway
    Case(
        "bench/gateway/dispatch_bench.py",
        ("--events", "3000"),
        (
            rf"^core: {NUMBER} events in, .*: {NUMBER} events/s per core",
            rf"^async: .* {NUMBER} events/s per CPU-second",
        ),
        (r"late=0 gaps=0",),
    ),
    Case(
        "bench/gateway/parse_bench.py",
        ("--frames", "300"),
        tuple(
            rf"^{label}.*\s{NUMBER} events/s/core"
            for label in ("binance depth", "binance trades", "kraken book", "coinbase l2")
        ),
    ),
    Case(
        "bench/gateway/e2e_bench.py",
        ("--seconds", "0.5", "--warmup", "0.2"),
        (
            rf"dispatcher ingested {NUMBER}, {NUMBER} deliveries",
            rf"^replay through the dispatcher core: .* {NUMBER} events/s per core",
        ),
        (r"^check: 0 problems",),
    ),
    # ---------------------------------------------------------------- tap
    Case(
        "bench/tap/grid_bench.py",
        ("--ticks", "300", "--repeat", "2", "--refreshes", "2"),
        (
            rf"^compute: best {NUMBER} us",
            rf"^sliced build: {NUMBER} slices",
            rf"^stall sliced : longest loop hold per refresh median {NUMBER} ms",
        ),
    ),
    Case(
        "bench/tap/resolver_bench.py",
        ("--bets", "50", "--users", "50"),
        (rf"^settled {NUMBER} \(", rf"pass {NUMBER} ms wall"),
    ),
    Case(
        "bench/tap/writer_bench.py",
        ("--users", "100", "--prefill", "1000", "--batches", "5", "--heavy-user-bets", "100"),
        (rf"^per batch: WAL frames {NUMBER}, CPU {NUMBER} ms", rf"^history .*: {NUMBER} ms"),
    ),
    Case(
        "bench/tap/path_bench.py",
        ("--bets", "300", "--concurrency", "10", "--users", "50"),
        (rf"^bets: {NUMBER} in .* \({NUMBER}/s\)", rf"^cpu per bet: server process {NUMBER} us"),
        (r"statuses \{202: 300\}",),
    ),
    Case(
        "bench/tap/load.py",
        ("--duration", "0.5", "--warmup", "0.1", "--connections", "4", "--wallets", "8"),
        (rf"^accepted bets: {NUMBER} \({NUMBER}/s\)", rf"^latency ms: p50 {NUMBER}"),
        (r"^integrity check \(exit 0\)", r"^5xx: 0$"),
    ),
    Case(
        "bench/tap/soak.py",
        ("--phases", "200:1", "--interval", "0.5", "--connections", "4", "--wallets", "8"),
        (rf"^  1: offered 200/s for 1 s: accepted {NUMBER}/s, p50 {NUMBER}",),
        (r"^integrity check \(exit 0\)",),
    ),
)

NOT_SMOKED = {
    "bench/exchange/benchkit.py": "helpers, run through the scripts that import them",
    "bench/tap/proc_cpu.py": "helpers, run through the scripts that import them",
    "bench/exchange/http_bench.py": "drives the server with wrk",
    "bench/exchange/http_ceiling.py": "drives the server with wrk",
    "bench/exchange/split_probe.py": "drives the server with wrk",
    "bench/exchange/instructions.py": "runs engine_bench twice under valgrind (about 15 s)",
    "bench/exchange/http_instructions.py": (
        "runs the server twice under valgrind (start-up alone 40-50 s each)"
    ),
    "bench/exchange/mypyc_probe.py": "compiles the engine with mypyc (minutes)",
}


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _run(case: Case, cwd: Path) -> str:
    """Run the script; its standard output, or a failure showing both streams."""
    result = subprocess.run(
        [sys.executable, str(ROOT / case.script), *case.args],
        cwd=cwd,  # a scratch directory: nothing a script writes lands in the checkout
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, (
        f"{case.script} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bench_script_runs_and_prints_its_figures(case: Case, tmp_path: Path) -> None:
    out = _run(case, tmp_path)
    for pattern in case.figures:
        match = re.search(pattern, out, re.MULTILINE)
        assert match is not None, f"{pattern!r} not in the output of {case.script}:\n{out}"
        for group in match.groups():
            assert _number(group) > 0, f"{pattern!r} matched {match.group(0)!r}:\n{out}"
    for pattern in case.texts:
        assert re.search(pattern, out, re.MULTILINE), f"{pattern!r} not in:\n{out}"


def test_every_bench_script_is_smoked_or_listed() -> None:
    scripts = {str(path.relative_to(ROOT)) for path in BENCH.rglob("*.py")}
    smoked = {case.script for case in CASES}
    assert smoked <= scripts, f"cases for missing scripts: {sorted(smoked - scripts)}"
    assert not smoked & NOT_SMOKED.keys()
    assert scripts == smoked | NOT_SMOKED.keys(), (
        f"bench scripts neither smoked nor listed in NOT_SMOKED: "
        f"{sorted(scripts - smoked - NOT_SMOKED.keys())}"
    )
