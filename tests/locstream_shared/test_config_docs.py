"""docs/configuration.md is generated from the settings classes and current; the names it gives are the ones the
services read."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from launch.config_docs import GROUPS, OUT, render
from ws_edge.settings import EdgeSettings


def test_the_configuration_reference_is_current() -> None:
    assert OUT.read_text() == render(), "run: python -m launch.config_docs"


def test_every_setting_of_every_service_is_documented_with_a_meaning() -> None:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| .* \| (.*) \|$", render(), flags=re.M)
    documented = {name: meaning for name, meaning in rows}
    for _, settings, _ in GROUPS:
        prefix = str(settings.model_config.get("env_prefix", ""))
        for name, field in settings.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                continue  # a nested group
            assert documented.get(f"{prefix}{name.upper()}", "").strip(), f"{prefix}{name.upper()} has no meaning"


def test_the_documented_names_are_the_ones_the_services_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCSTREAM_EDGE_RESUME_BUFFER_SIZE", "123")
    monkeypatch.setenv("KAFKA_TOPIC", "elsewhere")
    monkeypatch.setenv("LOCSTREAM_DEV", "1")
    settings = EdgeSettings()
    assert settings.resume_buffer_size == 123 and settings.kafka.topic == "elsewhere"
    assert "`LOCSTREAM_EDGE_RESUME_BUFFER_SIZE`" in render() and "`KAFKA_TOPIC`" in render()
