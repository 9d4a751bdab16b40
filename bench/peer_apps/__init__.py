"""Peer implementations of the demo composition for bench/peers.py (never imported by the service)."""

__all__: list[str] = []
