"""The published contracts, generated from this package: JSON Schema for every event and WebSocket message, and an
AsyncAPI 3 document for the map feed (protocols v1 and v2) and the Kafka topic.

``python -m schemas.contracts`` writes them to ``docs/contracts/``; ``--check`` exits 1 when the files there differ
from what the code generates (CI runs it through ``tests/schemas/test_contracts.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel

from schemas import ws
from schemas.events import (
    GeofenceEntered,
    GeofenceExited,
    LocationRecorded,
    StayRetracted,
    StopEnded,
    StopStarted,
    TechnicianOffline,
    TechnicianOnline,
    TechnicianUpdated,
    TrackingStopped,
    TripEnded,
    TripStarted,
)

OUT = Path(__file__).resolve().parent.parent / "docs" / "contracts"
FEED_PATH = "/api/v1/field-service/ws/technician-locations"

EVENTS: dict[str, type[msgspec.Struct]] = {
    "LocationRecorded": LocationRecorded,
    "TechnicianUpdated": TechnicianUpdated,
    "GeofenceEntered": GeofenceEntered,
    "GeofenceExited": GeofenceExited,
    "StopStarted": StopStarted,
    "StopEnded": StopEnded,
    "TripStarted": TripStarted,
    "TripEnded": TripEnded,
    "StayRetracted": StayRetracted,
    "TechnicianOffline": TechnicianOffline,
    "TechnicianOnline": TechnicianOnline,
    "TrackingStopped": TrackingStopped,
}
SERVER_MESSAGES: dict[str, type[BaseModel]] = {
    "Connected": ws.Connected,
    "InitialState": ws.InitialState,
    "Resumed": ws.Resumed,
    "LocationUpdate": ws.LocationUpdate,
    "LocationBatch": ws.LocationBatch,
    "TechnicianRemoved": ws.TechnicianRemoved,
    "ReplayDone": ws.ReplayDone,
    "GeofenceEvent": ws.GeofenceEvent,
    "GeofenceUpdated": ws.GeofenceUpdated,
    "GeofenceRemoved": ws.GeofenceRemoved,
    "Error": ws.Error,
    "Pong": ws.Pong,
}
CLIENT_MESSAGES: dict[str, type[BaseModel]] = {
    "Auth": ws.Auth,
    "Subscribe": ws.Subscribe,
    "Fences": ws.Fences,
    "ReplayControl": ws.ReplayControl,
}
V1_ONLY, V2_ONLY = {"LocationUpdate"}, {"LocationBatch"}


def _event_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    schema: dict[str, Any]
    (schema,), components = msgspec.json.schema_components([struct], ref_template="#/$defs/{name}")
    name = schema["$ref"].rsplit("/", 1)[1]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **components[name], "$defs": components}


def _message_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema()}


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for every event of the topic and every WebSocket message."""
    found = {f"events/{name}.json": _event_schema(struct) for name, struct in EVENTS.items()}
    found.update({f"ws/{name}.json": _message_schema(m) for name, m in {**SERVER_MESSAGES, **CLIENT_MESSAGES}.items()})
    return found


def asyncapi() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for name, model in {**SERVER_MESSAGES, **CLIENT_MESSAGES}.items():
        summary = (model.__doc__ or "").strip().split("\n")[0] or name
        payload = {"$ref": f"./schemas/ws/{name}.json"}
        messages[name] = {"name": name, "summary": summary, "contentType": "application/json", "payload": payload}
    messages["Ping"] = {
        "name": "Ping",
        "summary": "The text ping; answered with pong",
        "contentType": "text/plain",
        "payload": {"type": "string", "const": ws.PING_TEXT},
    }
    for name in EVENTS:
        messages[name] = {
            "name": name,
            "contentType": "application/json",
            "payload": {"$ref": f"./schemas/events/{name}.json"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "tenant_id"}}},
        }
    server_names = list(SERVER_MESSAGES)
    client_names = [*CLIENT_MESSAGES, "Ping"]

    def feed(version: int) -> dict[str, Any]:
        skip = V2_ONLY if version == 1 else V1_ONLY
        names = [n for n in server_names if n not in skip] + client_names
        return {
            "address": FEED_PATH,
            "title": f"Map feed, protocol v{version}",
            "description": (ws.__doc__ or "").strip(),
            "servers": [{"$ref": "#/servers/edge"}],
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
            "bindings": {
                "ws": {
                    "query": {
                        "type": "object",
                        "properties": {
                            "token": {
                                "type": "string",
                                "description": "seed compatibility; redacted from every log line",
                            },
                            "cursor": {"type": "string", "description": "resume from this cursor"},
                            "protocol": {"type": "string", "enum": ["1", "2"]},
                            "replay_from": {"type": "string", "format": "date-time"},
                            "replay_to": {"type": "string", "format": "date-time"},
                            "speed": {"type": "number", "minimum": 0, "maximum": 1000},
                        },
                    },
                    "headers": {
                        "type": "object",
                        "properties": {
                            "Sec-WebSocket-Protocol": {
                                "type": "string",
                                "description": f"locstream.v{version}; optionally locstream.bearer.<jwt>",
                            }
                        },
                    },
                }
            },
        }

    def ops(channel: str, version: int) -> dict[str, Any]:
        skip = V2_ONLY if version == 1 else V1_ONLY
        receive = [n for n in server_names if n not in skip]
        ref = f"#/channels/{channel}"
        return {
            f"{channel}Receive": {
                "action": "receive",
                "channel": {"$ref": ref},
                "messages": [{"$ref": f"{ref}/messages/{n}"} for n in receive],
            },
            f"{channel}Send": {
                "action": "send",
                "channel": {"$ref": ref},
                "messages": [{"$ref": f"{ref}/messages/{n}"} for n in client_names],
            },
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "locstream",
            "version": "1",
            "description": "Live technician locations: the Kafka topic of location events (key = tenant id) and "
            "the edge's map feed over WebSocket. Generated by `python -m schemas.contracts`.",
        },
        "servers": {
            "edge": {"host": "localhost:8003", "protocol": "ws", "description": "a ws_edge node (or the proxy)"},
            "kafka": {"host": "localhost:9092", "protocol": "kafka", "description": "the broker"},
        },
        "channels": {
            "mapFeedV1": feed(1),
            "mapFeedV2": feed(2),
            "locations": {
                "address": "locations.v1",
                "title": "Location events (KAFKA_TOPIC)",
                "description": "Appended by the producers (acks=all, idempotent), LogAppendTime; consumed by the "
                "projector, every edge and the replay/export.",
                "servers": [{"$ref": "#/servers/kafka"}],
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in EVENTS},
            },
        },
        "operations": {
            **ops("mapFeedV1", 1),
            **ops("mapFeedV2", 2),
            "appendEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/locations"},
                "messages": [{"$ref": f"#/channels/locations/messages/{n}"} for n in EVENTS],
            },
            "consumeEvents": {
                "action": "receive",
                "channel": {"$ref": "#/channels/locations"},
                "messages": [{"$ref": f"#/channels/locations/messages/{n}"} for n in EVENTS],
            },
        },
        "components": {"messages": messages},
    }


def rendered() -> dict[str, str]:
    """Relative path -> file content, for every generated contract."""
    files = {
        f"schemas/{name}": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for name, schema in json_schemas().items()
    }
    files["asyncapi.json"] = json.dumps(asyncapi(), indent=2) + "\n"
    return files


def differences(out: Path = OUT) -> list[str]:
    """Generated files that are missing, different or extra in ``out``."""
    files = rendered()
    found = {str(p.relative_to(out)) for p in out.rglob("*.json")} if out.exists() else set()
    stale = [name for name, text in files.items() if not (out / name).exists() or (out / name).read_text() != text]
    return sorted(stale + sorted(found - set(files)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/contracts/ is not current")
    args = parser.parse_args()
    if args.check:
        stale = differences()
        for name in stale:
            print(f"not current: docs/contracts/{name} (run: python -m schemas.contracts)", file=sys.stderr)
        return 1 if stale else 0
    for name, text in rendered().items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
