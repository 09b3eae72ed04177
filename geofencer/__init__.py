"""The geofence processor (``locstream geofencer``): follows the location topic and the fences topic, and appends a
``geofence_entered`` or ``geofence_exited`` event to the location topic for every crossing (``domain/geofencing.py``).

- ``settings.py``: ``LOCSTREAM_GEOFENCER_*``;
- ``state.py``: what the rule remembers of each technician, with the consumed offsets, in one SQLite transaction;
- ``processor.py``: the loop: fetch, evaluate, append (acks=all), then store state and offsets;
- ``app.py``: the process (``/healthz``, ``/readyz``, ``/metrics``).
"""
