"""Memory per resting order: RSS growth of the state machine the server holds, over N orders.

    python bench/exchange/memory_bench.py [--orders 1000000] [--levels 2000] [--documents 1000]

Every order goes through :meth:`ExchangeMachine.execute` exactly as the server runs it: random
UUID ids, the system clock, the journal record built (then dropped, as the service does once it is
encoded). Requests are decoded from JSON bytes one by one, so every order brings its own freshly
allocated strings, as an HTTP request does. Orders never cross: bids sit on ``--levels`` prices
below 100.00, asks on as many above, so all of them rest. ``--documents`` distinct document numbers
are used in turn (end clients of the brokers).

Prints RSS before and after, and the growth per resting order in bytes and KB (target: <= 0.5 KB).
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import msgspec

from tradehall.core.clock import SystemClock
from tradehall.core.ids import RandomIds
from tradehall.exchange.commands import RegisterBroker, SubmitOrder
from tradehall.exchange.engine import OrderRequest
from tradehall.exchange.machine import ExchangeMachine

FAR = 4_102_444_800 * 10**9  # 2100-01-01


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def body(i: int, levels: int, documents: int) -> bytes:
    side = "bid" if i % 2 else "ask"
    step = (i // 2) % levels
    price = 10_000 - 1 - step if side == "bid" else 10_000 + 1 + step
    return msgspec.json.encode(
        {
            "type": "limit",
            "broker_id": "maker" if side == "bid" else "seller",
            "document_number": f"{i % documents:011d}",
            "side": side,
            "symbol": "AAPL",
            "quantity": 1 + i % 7,
            "price": price,
            "expires_at": FAR + i,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--levels", type=int, default=2_000)
    parser.add_argument("--documents", type=int, default=1_000)
    args = parser.parse_args()
    machine = ExchangeMachine(SystemClock(), RandomIds(), vwap_window_ns=300 * 10**9)
    machine.execute(RegisterBroker("maker", 10**15, []))
    machine.execute(RegisterBroker("seller", 0, [("AAPL", 10**12)]))
    decode = msgspec.json.decode
    # Build the bodies first so their memory is not counted; each decode makes fresh strings.
    bodies = [body(i, args.levels, args.documents) for i in range(args.orders)]
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    for raw in bodies:
        fields = decode(raw)
        request = OrderRequest(
            fields["type"],
            fields["broker_id"],
            fields["document_number"],
            fields["side"],
            fields["symbol"],
            fields["quantity"],
            fields["price"],
            fields["expires_at"],
        )
        executed = machine.execute(SubmitOrder(request))
        assert executed.error is None, executed.error
    elapsed = time.perf_counter() - started
    del raw, fields, request, executed
    gc.collect()
    after = rss_bytes()  # ``bodies`` is still alive, as it was for ``before``
    resting = machine.engine.resting_orders
    per_order = (after - before) / resting
    print(f"resting orders   {resting:>12}")
    print(f"price levels     {2 * args.levels:>12}")
    print(f"RSS before       {before / 2**20:>12.1f} MiB")
    print(f"RSS after        {after / 2**20:>12.1f} MiB")
    print(f"per order        {per_order:>12.0f} B  ({per_order / 1024:.3f} KB; target <= 0.5 KB)")
    print(f"submit rate      {resting / elapsed:>12.0f} orders/s (machine.execute, while filling)")


if __name__ == "__main__":
    main()
