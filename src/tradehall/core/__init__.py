"""The shared kernel: small, dependency-light building blocks every system uses.

- :mod:`~tradehall.core.money` -- exact money (integer cents) parsing and rendering;
- :mod:`~tradehall.core.clock` -- wall/monotonic clocks and a virtual clock for tests;
- :mod:`~tradehall.core.ids` -- id generation behind a seam (random UUIDs, or deterministic);
- :mod:`~tradehall.core.timefmt` -- RFC 3339 parsing and second-granular rendering;
- :mod:`~tradehall.core.config` -- typed settings from CLI flags and ``TRADEHALL_*`` variables;
- :mod:`~tradehall.core.logging` -- structured logging setup;
- :mod:`~tradehall.core.metrics` -- Prometheus helpers.
"""
