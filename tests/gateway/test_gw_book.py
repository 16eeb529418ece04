from __future__ import annotations

import json
from decimal import Decimal

from gw_helpers import KRAKEN_DOC_SNAPSHOT

from tradehall.gateway.book import OrderBook, kraken_checksum, kraken_format


def _doc_book() -> tuple[OrderBook, int]:
    msg = json.loads(KRAKEN_DOC_SNAPSHOT, parse_float=Decimal)["data"][0]
    book = OrderBook()
    book.load(
        [(lv["price"], lv["qty"]) for lv in msg["bids"]],
        [(lv["price"], lv["qty"]) for lv in msg["asks"]],
    )
    return book, msg["checksum"]


def test_kraken_doc_vector_3310070434() -> None:
    book, expected = _doc_book()
    assert expected == 3310070434
    assert kraken_checksum(book.top_bids(), book.top_asks(), 1, 8) == 3310070434


def test_kraken_checksum_is_independent_of_wire_trailing_zeros() -> None:
    book, _ = _doc_book()
    normalised = OrderBook()
    normalised.load(
        [(p.normalize(), q.normalize()) for p, q in book.top_bids()],
        [(p.normalize(), q.normalize()) for p, q in book.top_asks()],
    )
    assert normalised.top_asks()[0][1] == Decimal("0.001")
    assert kraken_checksum(normalised.top_bids(), normalised.top_asks(), 1, 8) == 3310070434
    assert kraken_format(Decimal("0.1"), 8) == "10000000"
    assert kraken_format(Decimal("45285.2"), 1) == "452852"


def test_kraken_self_computed_update_vectors() -> None:
    book, _ = _doc_book()
    book.apply([(Decimal("45284.0"), Decimal("0.50000000"))], [])
    book.truncate(10)
    assert Decimal("45276.6") not in book.bids
    assert kraken_checksum(book.top_bids(), book.top_asks(), 1, 8) == 1818405665
    book.apply([], [(Decimal("45285.2"), Decimal(0))])
    assert kraken_checksum(book.top_bids(), book.top_asks(), 1, 8) == 4015869771


def test_order_book_levels_and_crossing() -> None:
    book = OrderBook()
    book.apply(
        [(Decimal("10"), Decimal("1")), (Decimal("9"), Decimal("2"))],
        [(Decimal("11"), Decimal("3")), (Decimal("12"), Decimal("4"))],
    )
    assert book.best_bid() == (Decimal("10"), Decimal("1"))
    assert book.best_ask() == (Decimal("11"), Decimal("3"))
    assert [p for p, _ in book.top_bids()] == [Decimal("10"), Decimal("9")]
    assert not book.is_crossed()
    book.apply([(Decimal("9"), Decimal("0")), (Decimal("5"), Decimal("0"))], [])  # unknown: no-op
    assert len(book.bids) == 1
    book.apply([(Decimal("12"), Decimal("1"))], [(Decimal("11"), Decimal(0))])
    assert book.is_crossed()
    book.truncate(1)
    assert book.top_asks() == ((Decimal("12"), Decimal("4")),)
