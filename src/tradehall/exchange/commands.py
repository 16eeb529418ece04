"""The state-changing commands of the Exchange, as journal records.

Everything that changes state goes through one of these, so the journal is a complete history:
replaying the records in order through :meth:`~tradehall.exchange.machine.ExchangeMachine.apply`
rebuilds the exact state. A :class:`Record` carries, besides the command, every clock reading
and every id the command consumed while it ran live, so replay never reads the wall clock or
mints new ids; ``rejected`` keeps the error code a rejected command ended with, and replay checks
it came out the same.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from tradehall.exchange.engine import OrderRequest

__all__ = [
    "CancelOrder",
    "Command",
    "DeleteWebhook",
    "DeliverySettled",
    "ExpireDue",
    "Record",
    "RegisterBroker",
    "SubmitOrder",
    "UpsertWebhooks",
    "decode_record",
    "encode_record",
]


class RegisterBroker(msgspec.Struct, tag="broker", array_like=True, frozen=True, gc=False):
    broker_id: str
    cash: int
    holdings: list[tuple[str, int]]


class SubmitOrder(msgspec.Struct, tag="order", array_like=True, frozen=True, gc=False):
    request: OrderRequest


class CancelOrder(msgspec.Struct, tag="cancel", array_like=True, frozen=True, gc=False):
    order_id: str


class ExpireDue(msgspec.Struct, tag="expire", array_like=True, frozen=True, gc=False):
    pass


class UpsertWebhooks(msgspec.Struct, tag="hooks", array_like=True, frozen=True, gc=False):
    broker_id: str
    url: str
    events: list[str]


class DeleteWebhook(msgspec.Struct, tag="unhook", array_like=True, frozen=True, gc=False):
    webhook_id: str


class DeliverySettled(msgspec.Struct, tag="settled", array_like=True, frozen=True, gc=False):
    """Webhook deliveries that need no further attempt (delivered, rejected or given up)."""

    delivery_ids: list[str]


Command = (
    RegisterBroker
    | SubmitOrder
    | CancelOrder
    | ExpireDue
    | UpsertWebhooks
    | DeleteWebhook
    | DeliverySettled
)


class Record(msgspec.Struct, array_like=True, frozen=True, gc=False):
    seq: int
    command: Command
    clock: list[int]
    ids: list[str]
    rejected: str | None = None


# JSON rather than msgpack: Python integers are unbounded and the contract sets no maximum on
# cash or quantities, while msgpack stops at 64 bits. msgspec's JSON is about as fast.
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)

# The encoder's and decoder's own (C) methods rather than functions calling them: the server
# encodes every command it runs, and a Python frame costs more than the encoding itself.
encode_record: Callable[[Record], bytes] = _encoder.encode
"""The journal bytes of a record."""
decode_record: Callable[[bytes], Record] = _decoder.decode
"""A record from its journal bytes (:class:`msgspec.DecodeError` if they do not hold one)."""
