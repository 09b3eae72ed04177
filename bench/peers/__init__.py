"""Peer implementations the benchmark runs beside locstream: same HTTP and WebSocket interface, other designs.

``seed`` is the original design (FastAPI, database write, in-process loop of ``send_json``); ``broadcaster_peer``
is the off-the-shelf choice (encode/broadcaster over its Kafka backend). Both share ``_common`` (auth, body
model, SQLite table, frames) so that they differ from each other only in how an update reaches the sockets.
"""
