"""The native core's layout guard: it refuses to import against classes whose fields moved.

The C core builds ``Order``, ``Trade`` and the events with positional arguments, calls
``_Bucket(first, second)`` and ``Level(price)``, and fills a new Level's slots itself. A field
inserted or reordered in those classes would make it build wrong objects without any error, so
the import compares them with the order the C code assumes. ``_native._check_layout`` runs that
comparison on any ``{name: class}`` mapping: the seam used here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import msgspec
import pytest

from tradehall.core.clock import VirtualClock
from tradehall.core.ids import SequentialIds
from tradehall.exchange import _native, book, events, indexes, model
from tradehall.exchange.engine import Engine


def real_classes() -> dict[str, type]:
    return {
        "Order": model.Order,
        "Trade": model.Trade,
        "TradeExecuted": events.TradeExecuted,
        "OrderFilled": events.OrderFilled,
        "OrderClosed": events.OrderClosed,
        "_Bucket": indexes._Bucket,
        "Level": book.Level,
    }


def struct_with_fields(name: str, fields: list[str]) -> type:
    """A msgspec struct named ``name`` with these (required) fields, in this order."""
    return msgspec.defstruct(name, fields)


def test_the_real_classes_have_the_layout_the_core_assumes() -> None:
    _native._check_layout(real_classes())  # raises ImportError on any difference


def test_swapped_struct_fields_refuse_the_import_naming_the_class_and_both_orders() -> None:
    fields = list(model.Trade.__struct_fields__)
    fields[1], fields[2] = fields[2], fields[1]  # quantity before price
    classes = real_classes() | {"Trade": struct_with_fields("Trade", fields)}
    with pytest.raises(ImportError) as caught:
        _native._check_layout(classes)
    message = str(caught.value)
    assert "layout of Trade changed" in message
    assert "('trade_id', 'price', 'quantity'," in message  # what the C core passes
    assert "('trade_id', 'quantity', 'price'," in message  # what the class now has


def test_a_field_inserted_among_the_positional_ones_is_caught() -> None:
    fields = list(events.OrderClosed.__struct_fields__)
    fields.insert(3, "venue")
    classes = real_classes() | {"OrderClosed": struct_with_fields("OrderClosed", fields)}
    with pytest.raises(ImportError, match=r"layout of OrderClosed changed.*'venue'"):
        _native._check_layout(classes)


def test_a_new_required_field_after_the_positional_ones_is_caught() -> None:
    # The first eleven still match, but Order(...) with eleven arguments could not fill a
    # twelfth required field: the core's call would fail at the first submit instead.
    fields = [*model.Order.__struct_fields__[:11], "venue"]
    classes = real_classes() | {"Order": struct_with_fields("Order", fields)}
    with pytest.raises(ImportError, match=r"layout of Order changed.*required fields.*'venue'"):
        _native._check_layout(classes)


def test_reordered_init_parameters_are_caught() -> None:
    class Bucket:
        __slots__ = ("live", "orders")

        def __init__(self, second: object, first: object) -> None:
            self.orders = [first, second]
            self.live = 2

    with pytest.raises(ImportError, match=r"layout of _Bucket changed.*'second', 'first'"):
        _native._check_layout(real_classes() | {"_Bucket": Bucket})


def test_a_level_with_a_slot_the_core_does_not_fill_is_caught() -> None:
    class Level:  # the core makes levels itself, slot by slot: a new slot would stay unset
        __slots__ = ("count", "dead", "opened_at", "orders", "price", "total")

        def __init__(self, price: int) -> None:
            self.price = price

    with pytest.raises(ImportError, match=r"layout of Level changed.*__slots__.*'opened_at'"):
        _native._check_layout(real_classes() | {"Level": Level})


def test_a_class_the_core_cannot_read_refuses_the_import_too() -> None:
    with pytest.raises(ImportError, match="cannot check the layout of Order"):
        _native._check_layout(real_classes() | {"Order": object})


def test_at_import_a_changed_class_leaves_the_engine_in_pure_python() -> None:
    # A fresh interpreter (an extension module initialises once per process) in which Trade's
    # fields are reordered before anything imports the core.
    script = textwrap.dedent(
        """
        import msgspec
        from tradehall.exchange import model
        fields = list(model.Trade.__struct_fields__)
        fields[1], fields[2] = fields[2], fields[1]
        model.Trade = msgspec.defstruct("Trade", fields)
        from tradehall.core.clock import VirtualClock
        from tradehall.core.ids import SequentialIds
        from tradehall.exchange import engine
        print(engine.Engine(VirtualClock(1), SequentialIds()).build)
        print(engine._native_failure[0])
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRADEHALL_ENGINE"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    build, reason = done.stdout.splitlines()
    assert build == "python"
    assert "layout of Trade changed" in reason


def test_the_core_runs_only_over_an_engine() -> None:
    # It writes the counters at the Engine class's slot offsets: anything else is refused.
    with pytest.raises(TypeError, match="needs an Engine"):
        _native.Core(object())  # type: ignore[arg-type]


def test_the_counters_are_slots_shared_by_both_builds() -> None:
    engine = Engine(VirtualClock(10**18), SequentialIds(), native=True)
    assert not {"_last_ns", "_seq", "trade_count"} & vars(engine).keys()
    assert (engine._last_ns, engine._seq, engine.trade_count) == (0, 0, 0)
