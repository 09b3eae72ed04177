"""The pure domain core: what every service agrees on, with no I/O (docs/architecture.md, "Layers").

- ``position.py``: where an event sits in the log (partition, offset);
- ``identity.py``: an event's identity, what a client's retry repeats;
- ``projection.py``: the apply rule (``apply``) and its state, and ``fold`` over a log;
- ``fix_quality.py``: what can be wrong with a fix, and whether it may become the current position;
- ``geodesy.py``: distances on the Earth;
- ``partitioning.py``: which partition holds a tenant's events;
- ``devices.py``: a tenant's registered devices, folded from the devices topic;
- ``fence_shapes.py``: a fence's polygon, compactly, and which shapes can be fences;
- ``geofencing.py``: fences, the grid that finds those near a fix, and the enter/exit rule;
- ``visits.py``: a job's crossings paired into visits, and its time on site.

It imports the contracts (``schemas``) and nothing else of locstream.
"""
