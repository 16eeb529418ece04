"""WebSocket fan-out: channels, per-user routing, and dropping a client that falls behind."""

from __future__ import annotations

from tradehall.tap.hub import BROADCAST, Client, Hub, MemoryBus, envelope, user_channel


def test_routing_and_slow_client_drop() -> None:
    hub = Hub()
    fast, slow, other = Client(), Client(maxsize=2), Client()
    for c in (fast, slow, other):
        hub.add(c)
    hub.bind_user(fast, "u1")
    hub.bind_user(other, "u2")
    bus = MemoryBus(hub)
    bus.publish(user_channel("u1"), b"mine")
    assert fast.queue.get_nowait() == b"mine"
    assert other.queue.empty() and slow.queue.empty()
    for i in range(3):
        bus.publish(BROADCAST, f"p{i}".encode())
    assert slow.dropped
    assert slow.queue.get_nowait() is None  # the writer loop sees the close marker
    assert [fast.queue.get_nowait() for _ in range(3)] == [b"p0", b"p1", b"p2"]
    hub.remove(fast)
    bus.publish(user_channel("u1"), b"gone")
    assert fast.queue.empty()
    assert hub.count == 2


def test_envelope() -> None:
    assert envelope("price", {"price": 1}) == b'{"type":"price","data":{"price":1}}'
