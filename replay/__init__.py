"""Replaying the location history topic by time (docs/replay.md): exports for analysts and paced replays for maps.

- ``time_range.py``: parsing a range and checking it against the topic's retention;
- ``reader.py``: a tenant's records of a range, by append time, from its (shared) partition; deduplication;
- ``history_record.py``: one record, decoded only as far as needed;
- ``formats.py``: NDJSON, CSV, GeoJSON, GPX and Parquet writers;
- ``export.py``: one export, with progress and a summary (``locstream replay`` and the HTTP export);
- ``pacing.py``: the clock of a paced replay (speed, pause, seek); the WebSocket side is ``ws_edge/replay_session.py``.
"""
