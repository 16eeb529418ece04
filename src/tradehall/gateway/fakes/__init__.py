"""Wire-compatible fake venues (REST + WebSocket on loopback) with scriptable faults.

They back the integration tests and the offline ``tradehall gateway --sim`` market.
"""
