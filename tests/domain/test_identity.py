"""The derived events' ids: ``domain.identity.uuid5`` is ``uuid.uuid5``, value for value (ids already on the topic
must come out the same), in less time."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from domain.geofencing import crossing_id
from domain.identity import uuid5


@given(namespace=st.uuids(), name=st.text(max_size=200))
def test_it_is_uuid5_value_for_value(namespace: uuid.UUID, name: str) -> None:
    made, expected = uuid5(namespace.bytes, name), uuid.uuid5(namespace, name)
    assert made == expected and hash(made) == hash(expected)
    assert (str(made), made.version, made.variant, made.is_safe) == (str(expected), 5, uuid.RFC_4122, expected.is_safe)
    assert uuid.UUID(str(made)) == made  # and it behaves as one: parsed back, compared, formatted


def test_a_crossing_id_is_the_one_made_before() -> None:
    # Made by uuid.uuid5 before this function: a repeated crossing must repeat the id already on the topic.
    fix = uuid.UUID("8b0f7e52-3a55-4f0c-9d0e-6f1b2c3d4e5f")
    assert str(crossing_id(fix, "site-1", "enter")) == "b014ac0d-2a62-556a-a2c0-01c8fa9a0d9c"
