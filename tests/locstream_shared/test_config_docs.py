"""docs/configuration.md is generated from the settings classes and current; the names it gives are the ones the
services read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from launch.config_docs import GROUPS, OUT, render
from ws_edge.settings import EdgeSettings

ROOT = Path(__file__).resolve().parents[2]


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


def test_every_variable_the_code_reads_directly_is_documented() -> None:
    reads = re.compile(r"""(?:environ\.get|getenv|environ\[)\(?\s*["']([A-Z][A-Z0-9_]+)["']""")
    found: set[str] = set()
    for path in ROOT.rglob("*.py"):
        if {".venv", "node_modules", "target"} & set(path.parts):
            continue
        found.update(reads.findall(path.read_text()))
    ours = {name for name in found if name.startswith(("LOCSTREAM_", "KAFKA_", "NEIGHBOURS_"))}
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", render(), flags=re.M))
    assert "LOCSTREAM_BROKER_LIB" in ours and ours - documented == set(), ours - documented
