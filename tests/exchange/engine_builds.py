"""The two builds of the matching engine, for tests that run on both.

``Engine(..., native=True)`` runs the C core (``tradehall.exchange._native``) over the same Python
structures as the pure engine; ``native=False`` is the pure-Python engine. Engine-level tests take
the build as a parameter (:data:`BUILDS`) and construct through :func:`make_engine`, so a test
written once checks both. A missing native build is an error here, never a fallback:
``test_engine_native.py`` says how to build it.
"""

from __future__ import annotations

from tradehall.core.clock import Clock
from tradehall.core.ids import IdSource
from tradehall.exchange.engine import Engine
from tradehall.exchange.state import EngineState

__all__ = ["BUILDS", "engine_from_state", "make_engine"]

BUILDS = ("python", "native")


def make_engine(build: str, clock: Clock, ids: IdSource, *, vwap_window_ns: int) -> Engine:
    """An engine of the named build; fails if that build is not available."""
    engine = Engine(clock, ids, vwap_window_ns=vwap_window_ns, native=_native(build))
    assert engine.build == build
    return engine


def engine_from_state(
    build: str, state: EngineState, clock: Clock, ids: IdSource, *, vwap_window_ns: int
) -> Engine:
    """:meth:`Engine.from_state` for the named build."""
    engine = Engine.from_state(
        state, clock, ids, vwap_window_ns=vwap_window_ns, native=_native(build)
    )
    assert engine.build == build
    return engine


def _native(build: str) -> bool:
    if build not in BUILDS:
        raise ValueError(f"unknown engine build {build!r}")
    return build == "native"
