"""Type stub of the optional C core of the matching engine (sources in ``native/``).

:class:`Core` runs :meth:`Engine.submit <tradehall.exchange.engine.Engine.submit>`,
``cancel`` and ``expire_due`` over the engine's own Python structures; it is created by
:class:`~tradehall.exchange.engine.Engine` when the native build is chosen.
"""

from collections.abc import Mapping

from tradehall.exchange.engine import Engine, OrderRequest
from tradehall.exchange.events import EngineEvent
from tradehall.exchange.model import Order

class Core:
    """The hot commands of one engine, in C, over that engine's structures."""

    def __init__(self, engine: Engine, /) -> None: ...
    def submit(self, request: OrderRequest, /) -> tuple[Order, list[EngineEvent]]:
        """Same as ``Engine._submit_python``: same effects, events and errors."""
        ...
    def cancel(self, order_id: str, /) -> tuple[Order, list[EngineEvent]]:
        """Same as ``Engine._cancel_python``."""
        ...
    def expire_due(self) -> list[EngineEvent]:
        """Same as ``Engine._expire_due_python``."""
        ...

def _check_layout(classes: Mapping[str, type], /) -> None:
    """Raise ImportError unless the classes (by name: ``Order``, ``Trade``, ``TradeExecuted``,
    ``OrderFilled``, ``OrderClosed``, ``_Bucket``, ``Level``) have the field order the core
    builds them with; the import runs it on the real classes."""
    ...

def _direct_structs() -> dict[str, bool]:
    """``{class name: built directly into its slots}`` for Order, Trade and the events."""
    ...

def _make(cls: type, args: tuple[object, ...], /) -> tuple[object, bool]:
    """``(cls(*args), built directly)``, the way the core builds a struct class (a test seam)."""
    ...

def _counts_in_place() -> bool:
    """Whether the listing index's ``array('q')`` count rows are written in place."""
    ...

def _format_uuid4s(raw: bytes, /) -> list[str]:
    """``tradehall.core.ids.format_uuid4s`` in C, as the core refills ``RandomIds`` batches."""
    ...
