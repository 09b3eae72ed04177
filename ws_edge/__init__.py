"""The WebSocket edge: a per-tenant live view fed by Kafka, fanned out to dispatch maps.

- ``view.py``: the in-memory view per tenant (the projector's apply rule);
- ``live_feed.py``: bootstrap from the projector's table and offsets, then its own Kafka consumer;
- ``fanout.py``: the registry of subscribers per tenant with a bounded queue each;
- ``auth_handshake.py``: the token check before any data frame;
- ``session.py``: one client connection from handshake to close.
"""
