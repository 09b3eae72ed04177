"""The pure domain core: what every service agrees on, with no I/O (docs/architecture.md, "Layers").

- ``position.py``: where an event sits in the log (partition, offset);
- ``identity.py``: an event's identity, what a client's retry repeats;
- ``projection.py``: the apply rule (``apply``) and its state, and ``fold`` over a log;
- ``partitioning.py``: which partition holds a tenant's events.

It imports the contracts (``schemas``) and nothing else of locstream.
"""
