"""The platform: ``tradehall up`` (the supervised systems) and ``tradehall bots``.

* :mod:`~tradehall.platform.supervisor` -- child processes started in order with readiness checks,
  restarted with back-off, stopped with SIGTERM then SIGKILL.
* :mod:`~tradehall.platform.plan` -- which processes ``up`` runs, with which flags, and the URLs of
  the startup summary.
* :mod:`~tradehall.platform.bots` -- the market maker that keeps a few exchange symbols liquid.
"""
