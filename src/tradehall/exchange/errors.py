"""Every failure the Exchange reports to a client, one class per contract error code.

The hierarchy mirrors HTTP semantics so adapters map an error to a response without a table::

    ExchangeError                      status, code, message (the exact contract text)
    ├── InvalidRequest          400    invalid_request   -- body is not JSON / wrong Content-Type
    ├── ValidationError         400    validation_error  -- a field or query rule failed
    ├── NotFound                404
    │   ├── BrokerNotFound             broker_not_found
    │   ├── OrderNotFound              order_not_found
    │   ├── SymbolNotFound             symbol_not_found
    │   ├── WebhookNotFound            webhook_not_found
    │   └── RouteNotFound              not_found          -- no such path
    ├── MethodNotAllowed        405    method_not_allowed
    ├── RequestTimeout          408    request_timeout     -- body not received in time
    ├── PayloadTooLarge         413    payload_too_large
    ├── ServiceUnavailable      503    service_unavailable -- journal down: nothing is accepted
    └── Conflict                409
        ├── BrokerAlreadyExists        broker_already_exists
        ├── InsufficientBalance        insufficient_balance
        ├── InsufficientHoldings       insufficient_holdings
        ├── NoLiquidity                no_liquidity
        └── OrderNotCancellable        order_not_cancellable

Errors say who caused the failure: each carries the offending identifier in its message (and as
attributes where useful). Raising one never leaves partial state behind: the engine checks
everything before it mutates anything.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BrokerAlreadyExists",
    "BrokerNotFound",
    "Conflict",
    "ExchangeError",
    "InsufficientBalance",
    "InsufficientHoldings",
    "InvalidRequest",
    "MethodNotAllowed",
    "NoLiquidity",
    "NotFound",
    "OrderNotCancellable",
    "OrderNotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "RouteNotFound",
    "ServiceUnavailable",
    "SymbolNotFound",
    "ValidationError",
    "WebhookNotFound",
]

INVALID_JSON_MESSAGE = "Request body must be valid JSON with Content-Type: application/json"
MONEY_PRECISION_MESSAGE = "Monetary values must have at most 2 decimal places"


class ExchangeError(Exception):
    """Base of all client-visible errors: HTTP ``status``, stable ``code``, exact ``message``."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidRequest(ExchangeError):
    """The request body is not a JSON object sent as ``application/json``."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str = INVALID_JSON_MESSAGE) -> None:
        super().__init__(message)


class ValidationError(ExchangeError):
    """A field or query parameter broke a rule; the message names the field."""

    status = 400
    code = "validation_error"


class NotFound(ExchangeError):
    """A referenced resource does not exist."""

    status = 404
    code = "not_found"


class BrokerNotFound(NotFound):
    code = "broker_not_found"

    def __init__(self, broker_id: str) -> None:
        super().__init__(f"Broker {broker_id} does not exist")
        self.broker_id = broker_id


class OrderNotFound(NotFound):
    code = "order_not_found"

    def __init__(self, order_id: str) -> None:
        super().__init__(f"Order {order_id} does not exist")
        self.order_id = order_id


class SymbolNotFound(NotFound):
    code = "symbol_not_found"

    def __init__(self, symbol: str) -> None:
        super().__init__(f"Symbol {symbol} is not listed on this exchange")
        self.symbol = symbol


class WebhookNotFound(NotFound):
    code = "webhook_not_found"

    def __init__(self, webhook_id: str) -> None:
        super().__init__(f"Webhook {webhook_id} does not exist")
        self.webhook_id = webhook_id


class RouteNotFound(NotFound):
    code = "not_found"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"No route for {method} {path}")


class MethodNotAllowed(ExchangeError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Method {method} is not allowed on {path}")


class RequestTimeout(ExchangeError):
    """The client did not send its request body within the read timeout."""

    status = 408
    code = "request_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Request body not received within {seconds:g}s")


class PayloadTooLarge(ExchangeError):
    """The request body exceeds the size limit."""

    status = 413
    code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body must be at most {limit} bytes")


class ServiceUnavailable(ExchangeError):
    """The exchange cannot make commands durable, so it accepts none (the server's fault)."""

    status = 503
    code = "service_unavailable"


class Conflict(ExchangeError):
    """The request is well-formed but the current state forbids it."""

    status = 409
    code = "conflict"


class BrokerAlreadyExists(Conflict):
    code = "broker_already_exists"

    def __init__(self, broker_id: str) -> None:
        super().__init__(f"Broker {broker_id} is already registered")


class InsufficientBalance(Conflict):
    code = "insufficient_balance"

    def __init__(self, broker_id: str) -> None:
        super().__init__(f"Broker {broker_id} has insufficient available cash for this order")


class InsufficientHoldings(Conflict):
    code = "insufficient_holdings"

    def __init__(self, broker_id: str, symbol: str) -> None:
        super().__init__(
            f"Broker {broker_id} has insufficient available quantity of {symbol} for this order"
        )


class NoLiquidity(Conflict):
    code = "no_liquidity"

    def __init__(self, symbol: str) -> None:
        super().__init__(f"No matching orders available for market order on {symbol}")


class OrderNotCancellable(Conflict):
    code = "order_not_cancellable"

    _TEXT: ClassVar[dict[str, str]] = {
        "filled": "Order {id} is already filled and cannot be cancelled",
        "cancelled": "Order {id} is already cancelled",
        "expired": "Order {id} is already expired and cannot be cancelled",
    }

    def __init__(self, order_id: str, status: str) -> None:
        super().__init__(self._TEXT[status].format(id=order_id))
        self.status_name = status
