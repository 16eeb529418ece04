"""In-process sessions, nonces and rate limits, with virtual time."""

from __future__ import annotations

from tradehall.core.clock import VirtualClock
from tradehall.tap.stores import MemoryNonceStore, MemoryRateLimiter, MemorySessionStore


async def test_session_lifecycle() -> None:
    clock = VirtualClock()
    store = MemorySessionStore(clock, ttl_s=86_400)
    session = await store.create("u1", "0xabc")
    assert len(session.id) == 64
    assert await store.get(session.id) == session
    clock.set_ns(clock.time_ns() + 86_399 * 10**9)
    assert await store.get(session.id) == session
    clock.set_ns(clock.time_ns() + 10**9)
    assert await store.get(session.id) is None
    other = await store.create("u1", "0xabc")
    await store.revoke(other.id)
    assert await store.get(other.id) is None


async def test_nonce_single_use_within_ttl() -> None:
    clock = VirtualClock()
    store = MemoryNonceStore(clock, ttl_s=90)
    assert await store.claim("n1", "u") is True
    assert await store.claim("n1", "u") is False
    clock.set_ns(clock.time_ns() + 90 * 10**9)
    assert await store.claim("n1", "u") is True


async def test_rate_limit_fixed_window() -> None:
    clock = VirtualClock()
    limiter = MemoryRateLimiter(clock)
    for _ in range(10):
        assert await limiter.hit("w", 10, 60) is None
    retry = await limiter.hit("w", 10, 60)
    assert retry is not None and abs(retry - 60) < 1e-6
    clock.set_ns(clock.time_ns() + 30 * 10**9)
    retry = await limiter.hit("w", 10, 60)
    assert retry is not None and abs(retry - 30) < 1e-6
    assert await limiter.hit("other", 10, 60) is None
    clock.set_ns(clock.time_ns() + 30 * 10**9)
    assert await limiter.hit("w", 10, 60) is None
