"""Where an event sits in the log. Pure."""

from __future__ import annotations

from typing import NamedTuple


class Position(NamedTuple):
    """Kafka partition and offset of an event (a tuple: made and compared at C speed). The projector stores its
    table at positions, the edge's cursors name them, and the ingest API answers with the position Kafka gave."""

    partition: int
    offset: int
