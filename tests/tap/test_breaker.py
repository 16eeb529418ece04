"""The Part B §8 breaker state machine, driven by explicit times."""

from __future__ import annotations

from tradehall.tap.breaker import Breaker, BreakerConfig, Health, Override

NS = 1_000_000_000
T0 = 1_000 * NS


def fresh_for(breaker: Breaker, start_s: int, seconds: int) -> None:
    """A tick every second and an evaluation right after it."""
    for s in range(start_s, start_s + seconds + 1):
        breaker.record_price(T0 + s * NS)
        breaker.evaluate(T0 + s * NS)


def healthy_breaker() -> Breaker:
    breaker = Breaker()
    fresh_for(breaker, 0, 30)
    assert breaker.state is Health.HEALTHY
    return breaker


def test_starts_critical_and_needs_30s_of_fresh_prices() -> None:
    breaker = Breaker()
    assert breaker.evaluate(T0) is None
    assert breaker.state is Health.CRITICAL and not breaker.allows_bets
    fresh_for(breaker, 0, 29)
    assert breaker.state is Health.CRITICAL
    breaker.record_price(T0 + 30 * NS)
    transition = breaker.evaluate(T0 + 30 * NS)
    assert transition is not None and transition.current is Health.HEALTHY
    assert breaker.allows_bets


def test_degraded_after_3s_critical_after_10s() -> None:
    breaker = healthy_breaker()
    last = T0 + 30 * NS
    assert breaker.evaluate(last + 3 * NS) is None  # age exactly 3 s is still fresh
    t = breaker.evaluate(last + 3 * NS + 1)
    assert t is not None and t.current is Health.DEGRADED and breaker.allows_bets
    assert breaker.evaluate(last + 10 * NS) is None
    t = breaker.evaluate(last + 10 * NS + 1)
    assert t is not None and t.previous is Health.DEGRADED and t.current is Health.CRITICAL
    assert not breaker.allows_bets


def test_healthy_jumps_straight_to_critical() -> None:
    breaker = healthy_breaker()
    t = breaker.evaluate(T0 + 45 * NS)
    assert t is not None and (t.previous, t.current) == (Health.HEALTHY, Health.CRITICAL)


def test_degraded_recovers_immediately() -> None:
    breaker = healthy_breaker()
    breaker.evaluate(T0 + 35 * NS)
    assert breaker.state is Health.DEGRADED
    breaker.record_price(T0 + 36 * NS)
    t = breaker.evaluate(T0 + 36 * NS)
    assert t is not None and t.current is Health.HEALTHY


def test_recovery_restarts_when_fresh_run_is_interrupted() -> None:
    breaker = healthy_breaker()
    breaker.evaluate(T0 + 50 * NS)
    assert breaker.state is Health.CRITICAL
    fresh_for(breaker, 60, 20)  # 20 s fresh
    assert breaker.recovering_since_ns == T0 + 60 * NS
    breaker.evaluate(T0 + 84 * NS)  # age 4 s: rule 5 clears recovering_since
    assert breaker.recovering_since_ns is None
    assert breaker.state is Health.CRITICAL
    fresh_for(breaker, 85, 29)
    assert breaker.state is Health.CRITICAL
    fresh_for(breaker, 115, 0)
    assert breaker.state is Health.HEALTHY


def test_stale_but_not_dead_in_critical_does_not_reopen() -> None:
    # C-27: the buggy sample went CRITICAL -> DEGRADED at ages 3..10 s; the rule keeps CRITICAL.
    breaker = healthy_breaker()
    breaker.evaluate(T0 + 50 * NS)
    breaker.record_price(T0 + 51 * NS)
    breaker.evaluate(T0 + 56 * NS)
    assert breaker.state is Health.CRITICAL


def test_override() -> None:
    breaker = healthy_breaker()
    t = breaker.set_override(Override.OPEN, T0 + 31 * NS)
    assert t is not None and t.current is Health.CRITICAL and not breaker.allows_bets
    assert breaker.raw_state is Health.HEALTHY
    breaker.set_override(Override.AUTO, T0 + 31 * NS)
    assert breaker.state is Health.HEALTHY
    breaker.evaluate(T0 + 60 * NS)
    breaker.set_override(Override.CLOSE, T0 + 60 * NS)
    assert breaker.allows_bets


def test_configurable_thresholds() -> None:
    breaker = Breaker(BreakerConfig(recovery_s=0))
    breaker.record_price(T0)
    t = breaker.evaluate(T0)
    assert t is not None and t.current is Health.HEALTHY
