"""System B: the market-data and order gateway (see ``docs/gateway-adapters.md``).

Part 1 (issue 6) lives here: canonical events (:mod:`.events`), symbol maps (:mod:`.symbols`),
the per-(venue, symbol) book assembler (:mod:`.assembler`), venue adapters (:mod:`.venues`),
wire-compatible fake venues (:mod:`.fakes`) and the ``tradehall gateway`` command (:mod:`.cli`).
"""
