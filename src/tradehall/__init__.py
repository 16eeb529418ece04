"""Tradehall: an open-source trading platform.

Three systems share one package and a small kernel:

- :mod:`tradehall.exchange` -- a price-time-priority matching exchange with a REST contract;
- :mod:`tradehall.gateway` -- a market-data and order gateway over several venues;
- :mod:`tradehall.tap` -- a BTC tap-trading web app;
- :mod:`tradehall.core` -- money, clocks, ids, configuration, logging and metrics.
"""

__version__ = "0.1.0"
