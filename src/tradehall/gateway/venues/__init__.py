"""Venue adapters: one module per venue, each turning a wire protocol into canonical events."""
