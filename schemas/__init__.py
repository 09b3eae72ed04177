"""Wire contracts of locstream: Kafka events, WebSocket messages, JWT claims.

This package imports nothing from the services; they all import it.
"""
