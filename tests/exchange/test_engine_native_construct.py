"""How the native core builds msgspec structs (``native/construct.c``).

The core builds Order, Trade and the events straight into their slots when that makes exactly
what calling the class would, and calls the class otherwise. ``_native._make(cls, args)`` runs
that choice on any class (the seam used here); ``_native._direct_structs()`` says which of the
real classes take the direct path.
"""

from __future__ import annotations

import sys

import msgspec
import pytest

from tradehall.exchange import _native, events, model


class Plain(msgspec.Struct, gc=False):
    a: int
    b: str
    c: int | None = None
    d: str = "pending"
    e: int = 0


class Tracked(msgspec.Struct):  # gc=True: the constructor decides on tracking
    a: int
    b: list[int]


class WithFactory(msgspec.Struct, gc=False):
    a: int
    b: list[int] = msgspec.field(default_factory=list)


class WithPostInit(msgspec.Struct, gc=False):
    a: int
    seen: bool = False

    def __post_init__(self) -> None:
        self.seen = True


def fields_of(obj: msgspec.Struct) -> tuple[object, ...]:
    return tuple(getattr(obj, name) for name in obj.__struct_fields__)


def test_every_struct_the_core_builds_on_the_hot_path_is_built_directly() -> None:
    assert _native._direct_structs() == {
        "Order": True,
        "Trade": True,
        "TradeExecuted": True,
        "OrderFilled": True,
        "OrderClosed": True,
    }


@pytest.mark.parametrize("args", [(1, "x"), (1, "x", 5), (1, "x", 5, "done", 7)])
def test_a_direct_build_equals_the_constructor_defaults_included(args: tuple[object, ...]) -> None:
    built, direct = _native._make(Plain, args)
    assert direct is True
    assert type(built) is Plain
    assert fields_of(built) == fields_of(Plain(*args))
    reference = Plain(*args)
    for name in Plain.__struct_fields__[len(args) :]:  # defaults shared, as the constructor does
        assert getattr(built, name) is getattr(reference, name)


def test_a_direct_build_holds_one_reference_per_field_and_to_its_type() -> None:
    value, type_refs = object(), sys.getrefcount(Plain)
    before = sys.getrefcount(value)
    built, _ = _native._make(Plain, (value, "x"))
    assert sys.getrefcount(value) == before + 1
    assert sys.getrefcount(Plain) == type_refs + 1
    del built
    assert sys.getrefcount(value) == before
    assert sys.getrefcount(Plain) == type_refs


@pytest.mark.parametrize(
    ("cls", "args"),
    [(Tracked, (1, [2])), (WithFactory, (1,)), (WithPostInit, (1,))],
    ids=["gc-tracked", "default-factory", "post-init"],
)
def test_classes_the_shortcut_cannot_build_exactly_are_called(
    cls: type[msgspec.Struct], args: tuple[object, ...]
) -> None:
    built, direct = _native._make(cls, args)
    assert direct is False
    assert built == cls(*args)
    if cls is WithFactory:
        assert built.b == [] and built.b is not WithFactory(1).b
    if cls is WithPostInit:
        assert built.seen is True


def test_wrong_argument_counts_get_the_constructors_error() -> None:
    with pytest.raises(TypeError):
        _native._make(Plain, (1,))
    with pytest.raises(TypeError):
        _native._make(Plain, (1, "x", 3, "d", 5, 6))


def test_a_real_event_built_directly_matches_its_constructor() -> None:
    args = ("SYM", "t-1", 100, 5, "bid", 123)
    built, direct = _native._make(events.TradeExecuted, args)
    assert direct is True and built == events.TradeExecuted(*args)
    order_args = ("o-1", "limit", "b", "D", "bid", "SYM", 5, 100, 999, 1, 5)
    order, direct = _native._make(model.Order, order_args)
    reference = model.Order(*order_args)
    assert direct is True
    assert msgspec.structs.asdict(order) == msgspec.structs.asdict(reference)
