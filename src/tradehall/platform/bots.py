"""``tradehall bots``: a small market maker that keeps a few exchange symbols liquid.

Two brokers, created on first use through the exchange REST API (``POST /brokers``; a 409 means
they exist from an earlier run and is fine):

* the **maker** (``mm-maker``) holds cash and every listed symbol and quotes both sides of each
  symbol: ``levels`` bids below and asks above a random-walk mid, on a price step of about
  2 basis points, ``quantity`` shares each;
* the **taker** (``mm-taker``) now and then (``cross_probability`` per step and symbol) sends a
  small market order against those quotes, so trades print and the last price moves.

Every ``interval`` the mid of each symbol takes a Gaussian step (one price step per interval on
average) and the maker *replaces* its quotes: quotes no longer wanted are cancelled
(``DELETE /orders/{id}``), missing ones are placed (``POST /orders``). Quotes that did not move
are left alone, so a quiet step costs no requests. At start-up the maker's leftover open orders
from an earlier run are cancelled. Prices are integer cents throughout; the exchange's JSON
numbers are written from :class:`~decimal.Decimal` with exactly two decimals.

An unreachable exchange (or a 5xx) is logged and retried on the next step; the bots never exit
because the exchange restarted.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from tradehall.core import logging as tlog
from tradehall.core.clock import Clock, SystemClock
from tradehall.core.timefmt import format_ns

__all__ = [
    "DEFAULT_LISTINGS",
    "MAKER",
    "TAKER",
    "Listing",
    "MarketMaker",
    "Quote",
    "format_listings",
    "parse_listings",
    "price_step",
    "quotes_around",
    "seed_listings",
]

MAKER = "mm-maker"
TAKER = "mm-taker"
_CASH_CENTS = 10_000_000_000_00  # ten billion dollars each: enough for years of quoting
_HOLDINGS = 1_000_000
_QUOTE_LIFETIME_NS = 600 * 1_000_000_000  # a quote left by a killed bot expires on its own
_encoder = msgspec.json.Encoder(decimal_format="number")
_log = tlog.get_logger("bots")


@dataclass(frozen=True)
class Listing:
    """An exchange symbol the bots keep liquid and the mid (cents) they start from."""

    symbol: str
    mid_cents: int


DEFAULT_LISTINGS: tuple[Listing, ...] = (
    Listing("BTCUSD", 68_000_00),
    Listing("ETHUSD", 3_400_00),
    Listing("AAPL", 190_00),
    Listing("MSFT", 420_00),
)


def parse_listings(text: str) -> tuple[Listing, ...]:
    """``BTCUSD=68000,AAPL=190.50`` -> listings (prices in dollars, at most two decimals)."""
    listings: list[Listing] = []
    for item in text.split(","):
        if not item.strip():
            continue
        symbol, sep, price = item.partition("=")
        symbol = symbol.strip().upper()
        if not sep or not (1 <= len(symbol) <= 10 and symbol.isascii() and symbol.isalpha()):
            raise ValueError("expected SYMBOL=PRICE pairs such as BTCUSD=68000,AAPL=190.50")
        try:
            cents = Decimal(price.strip()) * 100
        except ArithmeticError:
            raise ValueError(f"{symbol}: price {price.strip()!r} is not a number") from None
        if cents != cents.to_integral_value() or cents < 100:
            raise ValueError(f"{symbol}: price must be >= 1.00 with at most two decimals")
        listings.append(Listing(symbol, int(cents)))
    if not listings or len({li.symbol for li in listings}) != len(listings):
        raise ValueError("expected at least one listing and no symbol twice")
    return tuple(listings)


def format_listings(listings: Sequence[Listing]) -> str:
    """The inverse of :func:`parse_listings`."""
    return ",".join(f"{li.symbol}={_dollars(li.mid_cents)}" for li in listings)


def _dollars(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def price_step(mid_cents: int) -> int:
    """The quoting grid of a symbol: about 2 basis points of its price, at least one cent."""
    return max(1, mid_cents // 5000)


@dataclass(frozen=True, order=True)
class Quote:
    """One wanted resting order of the maker."""

    side: str  # "bid" or "ask"
    price_cents: int
    quantity: int


def quotes_around(mid_cents: int, step: int, levels: int, quantity: int) -> list[Quote]:
    """Bids from one step below the mid down, asks from one step above up (never crossed)."""
    best_bid = (mid_cents // step) * step
    if best_bid == mid_cents:
        best_bid -= step
    best_ask = best_bid + 2 * step
    quotes = []
    for i in range(levels):
        bid = best_bid - i * step
        if bid > 0:
            quotes.append(Quote("bid", bid, quantity))
        quotes.append(Quote("ask", best_ask + i * step, quantity))
    return quotes


async def seed_listings(http: httpx.AsyncClient, listings: Sequence[Listing]) -> None:
    """Create the maker and taker brokers with holdings of every listing (existing ones stay).

    Holding a symbol is what lists it on the exchange, so after this every listing has a book.
    Raises :class:`httpx.HTTPStatusError` for any answer other than 201 or 409.
    """
    holdings = [{"symbol": li.symbol, "quantity": _HOLDINGS} for li in listings]
    for broker in (MAKER, TAKER):
        body = {"broker_id": broker, "initial_cash": _dollars(_CASH_CENTS)}
        body["initial_holdings"] = holdings
        response = await http.post(
            "/brokers", content=_encoder.encode(body), headers={"Content-Type": "application/json"}
        )
        if response.status_code not in (201, 409):
            response.raise_for_status()
            raise httpx.HTTPStatusError(
                f"POST /brokers answered {response.status_code}: {response.text}",
                request=response.request,
                response=response,
            )


@dataclass
class _Book:
    listing: Listing
    mid: int
    step: int
    open: dict[Quote, str] = field(default_factory=dict)  # wanted quote -> order id


class MarketMaker:
    """The bots' logic over an exchange HTTP client; see the module docstring."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        listings: Sequence[Listing],
        *,
        interval: float = 1.0,
        levels: int = 2,
        quantity: int = 5,
        cross_probability: float = 0.3,
        seed: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.http = http
        self.books = {
            li.symbol: _Book(li, li.mid_cents, price_step(li.mid_cents)) for li in listings
        }
        self.interval = interval
        self.levels = levels
        self.quantity = quantity
        self.cross_probability = cross_probability
        self.rng = random.Random(seed)
        self.clock = clock or SystemClock()
        self.placed = 0
        self.cancelled = 0
        self.crossed = 0
        self.errors = 0

    # -- REST helpers -------------------------------------------------------------------------

    async def _post_order(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(
            "/orders", content=_encoder.encode(body), headers={"Content-Type": "application/json"}
        )

    def _expiry(self) -> str:
        return format_ns(self.clock.time_ns() + _QUOTE_LIFETIME_NS)

    # -- lifecycle ----------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the brokers if needed and cancel the maker's leftover open orders."""
        await seed_listings(self.http, [b.listing for b in self.books.values()])
        for status in ("pending", "partially_filled"):
            while True:
                response = await self.http.get(
                    f"/brokers/{MAKER}/orders", params={"status": status, "limit": 100}
                )
                response.raise_for_status()
                orders = response.json()["orders"]
                for order in orders:
                    await self.http.delete(f"/orders/{order['order_id']}")
                if len(orders) < 100:
                    break

    async def step(self, symbol: str) -> None:
        """Move the mid of ``symbol``, replace the maker's quotes, maybe cross the spread."""
        book = self.books[symbol]
        book.mid = max(book.step * 4, book.mid + round(self.rng.gauss(0.0, book.step)))
        wanted = set(quotes_around(book.mid, book.step, self.levels, self.quantity))
        for quote in [q for q in book.open if q not in wanted]:
            order_id = book.open.pop(quote)
            response = await self.http.delete(f"/orders/{order_id}")
            if response.status_code == 200:
                self.cancelled += 1
        for quote in sorted(wanted - book.open.keys()):
            response = await self._post_order(
                {
                    "type": "limit",
                    "broker_id": MAKER,
                    "document_number": uuid.uuid4().hex[:32],
                    "side": quote.side,
                    "symbol": symbol,
                    "quantity": quote.quantity,
                    "price": _dollars(quote.price_cents),
                    "expires_at": self._expiry(),
                }
            )
            if response.status_code == 201:
                self.placed += 1
                if response.json()["status"] in ("pending", "partially_filled"):
                    book.open[quote] = response.json()["order_id"]
            else:
                self._refused("quote", symbol, response)
        if self.rng.random() < self.cross_probability:
            response = await self._post_order(
                {
                    "type": "market",
                    "broker_id": TAKER,
                    "document_number": uuid.uuid4().hex[:32],
                    "side": self.rng.choice(("bid", "ask")),
                    "symbol": symbol,
                    "quantity": self.rng.randint(1, self.quantity),
                }
            )
            if response.status_code == 201:
                self.crossed += 1
            elif response.status_code != 409:  # no liquidity / balance: fine, next time
                self._refused("cross", symbol, response)

    def _refused(self, what: str, symbol: str, response: httpx.Response) -> None:
        self.errors += 1
        _log.warning(
            "bots_order_refused", what=what, symbol=symbol, status=response.status_code,
            body=response.text[:200],
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """Set up, then step every symbol each ``interval`` until ``stop`` is set.

        After a failed request (exchange unreachable or 5xx) the next round sets up again, so
        the quotes left on the book meanwhile are cancelled instead of piling up.
        """
        ready = False
        last_report = self.clock.monotonic()
        while not stop.is_set():
            started = self.clock.monotonic()
            try:
                if not ready:
                    await self.setup()
                    ready = True
                    _log.info("bots_started", symbols=list(self.books), maker=MAKER, taker=TAKER)
                await self._step_all()
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                self.errors += 1
                ready = False
                for book in self.books.values():
                    book.open.clear()
                _log.warning("bots_exchange_unavailable", error=str(exc) or type(exc).__name__)
            if started - last_report >= 30.0:
                last_report = started
                _log.info(
                    "bots_status", placed=self.placed, cancelled=self.cancelled,
                    crossed=self.crossed, errors=self.errors,
                )  # fmt: skip
            await self._pause(stop, self.interval - (self.clock.monotonic() - started))

    async def _step_all(self) -> None:
        """One step of every symbol, concurrently; the first failure is raised after all ran."""
        results = await asyncio.gather(
            *(self.step(symbol) for symbol in self.books), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        if seconds <= 0:
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        sleeper.cancel()
        waiter.cancel()
