"""The price watch: incoming prices, the breaker, ``system:status``, gauges and stored ticks.

Part A §1's feed, monitor and tick-writer jobs. Every function takes the
:class:`~tradehall.tap.service.TapService` and reads and sets state that lives on it (``price``,
the sampled ticks, the breaker), so that the service stays the one object the HTTP layer,
the CLI and the tests talk to; :class:`TapService` keeps thin methods that call these.
Calls back into the service (``status_json``, ``evaluate_breaker``, ``check_disk``,
``flush_ticks``) go through it, so a replaced method is the one that runs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from tradehall.tap import ledger
from tradehall.tap.breaker import Health, Override, Transition, parse_override
from tradehall.tap.hub import BROADCAST, CIRCUIT_OVERRIDE
from tradehall.tap.log import LazyLogger

if TYPE_CHECKING:
    from tradehall.tap.service import TapService

__all__ = [
    "evaluate_breaker",
    "evaluate_gauges",
    "flush_ticks",
    "ingest_price",
    "monitor_loop",
    "on_override",
    "request_override",
    "set_override",
    "status_json",
    "tick_loop",
]

NS = 1_000_000_000
_log = LazyLogger("tap")


def ingest_price(service: TapService, price_cents: int) -> None:
    """A price received now (local receive time, C-38)."""
    now = service.clock.time_ns()
    service.breaker.record_price(now)
    service.price = price_cents
    now_ms = now // 1_000_000
    if now_ms - service._last_sample_ms >= service.config.tick_sample_ms:
        # the volatility window uses the sampled ticks too: a busy feed (hundreds of trades
        # a second from several venues) would otherwise cost CPU and add venue noise
        recent = service._recent
        recent.append((now, price_cents))
        horizon = now - service.config.sigma_window_s * NS
        while recent and recent[0][0] < horizon:
            recent.popleft()
        service._last_sample_ms = now_ms
        if service.jobs == "api":
            return  # the process with every job stores, mirrors and broadcasts the ticks
        service._pending_ticks.append((now_ms, price_cents))
        service.price_mirror.record(now_ms, price_cents)  # Redis copy; SQLite is the record
        service.publish(
            BROADCAST, "price", {"symbol": "BTC/USD", "price": price_cents, "timestamp": now_ms}
        )


def status_json(service: TapService) -> dict[str, Any]:
    """The ``system:status`` body; ``recovering_for_ms`` counts a warm-up (the page's timer)."""
    now = service.clock.time_ns()
    breaker = service.breaker
    age = breaker.age_s(now)
    since = breaker.recovering_since_ns
    return {
        "price_health": breaker.state.value,
        "override": breaker.override.value,
        "stale_for_ms": None if age is None else int(age * 1000),
        "recovering_for_ms": None if since is None else (now - since) // 1_000_000,
        "recovery_ms": round(service.config.breaker.recovery_s * 1000),
        "timestamp": now // 1_000_000,
    }


def evaluate_breaker(service: TapService) -> Transition | None:
    """Evaluate the breaker now; announce a transition or a changed warm-up; set the gauges."""
    breaker = service.breaker
    warming = breaker.recovering_since_ns is not None
    transition = breaker.evaluate(service.clock.time_ns())
    if transition is not None:
        _on_transition(service, transition)
    elif warming != (breaker.recovering_since_ns is not None):
        # a warm-up began or was cut short: no state change, but the countdown did change
        service.publish(BROADCAST, "system:status", service.status_json())
    service.evaluate_gauges()
    return transition


def request_override(service: TapService, override: Override) -> None:
    """Operator override (C-47): applied here at once and sent to every API process."""
    service.set_override(override)
    service.bus.publish(CIRCUIT_OVERRIDE, override.value.encode())


def on_override(service: TapService, payload: bytes) -> None:
    """A ``circuit:override`` message (any API process, or an operator's PUBLISH)."""
    try:
        service.set_override(parse_override(payload))
    except ValueError as exc:
        _log.warning("override_message_ignored", error=str(exc))


def set_override(service: TapService, override: Override) -> None:
    """Apply ``override`` to this process's breaker; announce a transition it causes."""
    transition = service.breaker.set_override(override, service.clock.time_ns())
    if transition is not None:
        _on_transition(service, transition)


def _on_transition(service: TapService, t: Transition) -> None:
    level = _log.error if t.current is Health.CRITICAL else _log.warning
    if t.current is Health.HEALTHY:
        level = _log.info
    level("price_feed_" + t.current.value, previous=t.previous.value, stale_for=t.age_s)
    service.publish(BROADCAST, "system:status", service.status_json())


def evaluate_gauges(service: TapService) -> None:
    """Set the staleness, breaker and queue-depth gauges."""
    age = service.breaker.age_s(service.clock.time_ns())
    service.metrics.staleness.set(-1 if age is None else age)
    service.metrics.breaker_state.set(1 if service.breaker.state is Health.CRITICAL else 0)
    service.metrics.queue_depth.set(service.batcher.depth)


async def monitor_loop(service: TapService) -> None:
    """The breaker every second, the disk guards every 10 s, ``system:status`` periodically."""
    last_status = service.clock.monotonic()
    last_disk = -1e9
    while True:
        service.evaluate_breaker()
        if service.clock.monotonic() - last_disk >= 10.0:
            last_disk = service.clock.monotonic()
            service._disk_idle.clear()
            try:
                await service.check_disk()  # may purge partitions in a thread
            finally:
                service._disk_idle.set()
        if service.clock.monotonic() - last_status >= service.config.status_interval_s:
            last_status = service.clock.monotonic()
            service.publish(BROADCAST, "system:status", service.status_json())
        await service.clock.sleep(1.0)


async def flush_ticks(service: TapService) -> None:
    """Store the sampled ticks received since the last call (one write)."""
    ticks, service._pending_ticks = service._pending_ticks, []
    if ticks:
        await service.db.write(functools.partial(ledger.insert_ticks, ticks=ticks))


async def tick_loop(service: TapService) -> None:
    """Store ticks every second; prune those older than ``price_retention_s`` hourly."""
    last_prune = service.clock.monotonic()
    while True:
        await service.clock.sleep(1.0)
        await service.flush_ticks()
        if service.clock.monotonic() - last_prune >= 3600:
            last_prune = service.clock.monotonic()
            now_ms = service.clock.time_ns() // 1_000_000
            cutoff = now_ms - service.config.price_retention_s * 1000
            await service.db.write(functools.partial(ledger.prune_ticks, before_ms=cutoff))
