"""``docs/configuration.md``, generated from the settings classes: every environment variable of every service, its
type, default, bounds and meaning (the field's docstring).

``python -m launch.config_docs`` writes it; ``--check`` exits 1 when the file is not current
(``tests/locstream_shared/test_config_docs.py`` runs it in CI).
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from geofencer.settings import GeofencerSettings
from locstream.settings import (
    AuthSettings,
    DataSettings,
    KafkaSettings,
    LogSettings,
    MetricsSettings,
    OutboundSettings,
    ServerSettings,
)
from producers.settings import ProducersSettings
from projector.settings import ProjectorSettings
from ws_edge.settings import EdgeSettings

OUT = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# The services, by the name their settings' "Used by" line gives them.
SERVICES: dict[str, type[BaseSettings]] = {
    "producers": ProducersSettings,
    "projector": ProjectorSettings,
    "ws_edge": EdgeSettings,
    "geofencer": GeofencerSettings,
}
# Title, class, and who else reads it. A shared group held as a field of a service's settings names those services
# first (``reads``), so a service that starts reading a group is listed without anyone remembering to.
GROUPS: list[tuple[str, type[BaseSettings], str]] = [
    ("Kafka", KafkaSettings, "`locstream replay` and the bench"),
    ("Auth", AuthSettings, "`locstream replay`"),
    ("Data", DataSettings, "`locstream dev`"),
    ("Logging", LogSettings, "every service and `locstream dev`"),
    ("Servers", ServerSettings, "every service and `locstream dev` (deadlines and caps against slow peers)"),
    ("Metrics", MetricsSettings, "`locstream dev` (who may read `/metrics`)"),
    ("Outbound calls", OutboundSettings, "where webhooks may reach (docs/alerts.md)"),
    ("Ingest API (`locstream producers`)", ProducersSettings, ""),
    ("Projector (`locstream projector`)", ProjectorSettings, ""),
    ("WebSocket edge (`locstream ws-edge`)", EdgeSettings, ""),
    ("Geofence processor (`locstream geofencer`)", GeofencerSettings, ""),
]


def reads(group: type[BaseSettings]) -> list[str]:
    """The services whose settings hold ``group`` (or are it)."""
    return [
        name
        for name, settings in SERVICES.items()
        if settings is group or any(field.annotation is group for field in settings.model_fields.values())
    ]


SHARED = (KafkaSettings, AuthSettings, DataSettings, LogSettings, ServerSettings, MetricsSettings, OutboundSettings)

HEADER = """# Configuration

Every setting of every service comes from an environment variable (pydantic-settings). This page is generated
from the settings classes by `python -m launch.config_docs`; CI fails when it is not current. The shared groups
(Kafka, Auth, Data) are read by every service that uses them, under their own prefix. `locstream dev` runs all
services in one process with the same variables.
"""

# After the Auth table. tests/test_identity_provider.py configures its Keycloak from this very block.
AUTH_EXAMPLE = """### Example: Keycloak

Tokens from a Keycloak realm, as `deploy/keycloak/locstream-realm.json` sets one up: each user's fleet in a user
attribute `tenant` that a mapper puts in the claim `org.id`, realm roles (`fleet-dispatcher`, ...) in
`realm_access.roles`, an audience mapper adding `locstream` to `aud`; dispatchers sign in on the map's public
client, vehicle gateways with client credentials.

```sh
LOCSTREAM_JWT_JWKS_URL=https://sso.example.com/realms/locstream/protocol/openid-connect/certs
LOCSTREAM_JWT_ISSUER=https://sso.example.com/realms/locstream
LOCSTREAM_JWT_AUDIENCE=locstream
LOCSTREAM_JWT_TENANT_CLAIM=org.id
LOCSTREAM_JWT_ROLES_CLAIM=realm_access.roles
LOCSTREAM_JWT_ROLE_MAP=fleet-dispatcher=dispatcher,fleet-analyst=analyst,fleet-technician=technician,fleet-gateway=device_gateway,fleet-admin=admin
```

A gateway then posts with a token of its own:

```sh
TOKEN=$(curl -s -d grant_type=client_credentials -d client_id=fleet-gateway-a -d client_secret=$SECRET \\
  https://sso.example.com/realms/locstream/protocol/openid-connect/token | jq -r .access_token)
curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{"latitude": 6.52, "longitude": 3.38}' https://fleet.example.com/api/v1/field-service/technicians/van-7/location
```

What is refused, and how: a token of another realm or issuer, a key the JWKS does not hold (after one refetch at
most every `LOCSTREAM_JWT_JWKS_REFETCH_SECONDS`), an algorithm not listed or not fitting its key, an HS256 token,
a token whose roles map to none of locstream's (`no locstream role in claim realm_access.roles (it has: ...)`):
401 with the reason on HTTP, close 1008 on a WebSocket. A JWKS that is down, slow or garbage refuses tokens it
has no key for, never accepts one. The realm's keys can rotate at will: a new `kid` is fetched on its first token.
Auth0: [edge.md](edge.md#identity-providers).
"""


def _type(annotation: Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    text = re.sub(r"typing\.|pydantic\.types\.|pathlib\.|<class '([^']+)'>", lambda m: m.group(1) or "", text)
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    return f"`{text.replace('|', chr(92) + '|')}`"


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[]`" if not value else f"`{value!r}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`" if value != "" else "empty"


def _bounds(field: Any) -> str:
    found = []
    for item in field.metadata:
        for kind, attribute, symbol in ((Ge, "ge", ">="), (Gt, "gt", ">"), (Le, "le", "<="), (Lt, "lt", "<")):
            if isinstance(item, kind):
                bound = getattr(item, attribute)
                found.append(f"{symbol} {bound:,}" if isinstance(bound, int) else f"{symbol} {bound}")
    return ", ".join(found)


def _table(settings: type[BaseSettings]) -> list[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, field in settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            continue  # a shared group, documented on its own
        meaning = " ".join((field.description or "").split())
        bounds = _bounds(field)
        if bounds:
            meaning = f"{meaning} ({bounds})" if meaning else f"({bounds})"
        rows.append(
            f"| `{prefix}{name.upper()}` | {_type(kind)} | {_default(field)} | {meaning.replace('|', chr(92) + '|')} |"
        )
    return rows


# Read from the environment directly, not through a settings class: the tools around the services, and the tests.
# tests/locstream_shared/test_config_docs.py finds every such read in the code and looks for it here.
TOOLS: list[tuple[str, str, str]] = [
    ("LOCSTREAM_TOKEN", "`locstream replay`", "the bearer token, when `--token` is not given"),
    (
        "LOCSTREAM_COMPILED",
        "every service (`domain/__init__.py`)",
        "`0`: run the pure core's per-fix rules as Python even when `make compile` built them (`build/mypyc/`)",
    ),
    (
        "LOCSTREAM_BROKER_LIB",
        "`locstream broker`, the tests",
        "a directory of the Kafka broker's jars to use instead of fetching them with Maven into `broker/target/lib`",
    ),
    (
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "`locstream broker`, the tests",
        "the broker JVM's collector and compiler options, as Kafka's own scripts read them (default"
        " `-XX:+UseG1GC -Djava.awt.headless=true`); the tests choose the client compiler alone, for JVMs that live"
        " minutes",
    ),
    (
        "LOCSTREAM_PREFORK_SOCKET",
        "`python -m bench`",
        "the address of a fork server (`launch/prefork.py`) to fork the services from instead of starting new"
        " interpreters; the tests hand the bench theirs",
    ),
    (
        "LOCSTREAM_KEYCLOAK_JAVA_HOME",
        "`launch/keycloak.py` (the identity-provider tests)",
        "a JDK 21+ for Keycloak; else `JAVA_HOME`, else the newest JDK under `/usr/lib/jvm`",
    ),
    (
        "LOCSTREAM_CHROMIUM",
        "the browser tests, `bench map-page`",
        "the Chromium binary Playwright drives (default `/usr/bin/chromium`; nothing is downloaded)",
    ),
    (
        "LOCSTREAM_TEST_POSTGRES_DSN",
        "the tests",
        "an admin DSN of a PostgreSQL server to use instead of starting a throwaway cluster",
    ),
    ("LOCSTREAM_TEST_ARTIFACTS", "the tests", "where screenshots and measurements go (default `test-artifacts/`)"),
    (
        "LOCSTREAM_FAULT_COMMAND",
        "`tests/faults`",
        "a command that hurts the brokers of the cluster at `KAFKA_BOOTSTRAP_SERVERS` ([operations.md](operations.md))"
        " instead of a local three-node cluster",
    ),
    ("KAFKA_BOOTSTRAP_SERVERS", "the tests", "a broker already running, instead of one the tests start"),
    (
        "NEIGHBOURS_ONLY",
        "`tests/neighbours`",
        "run only the noisy-neighbour phases named, separated by `\\|` (to measure or profile one)",
    ),
]


def render() -> str:
    parts = [HEADER]
    for title, settings, used_by in GROUPS:
        prefix = settings.model_config.get("env_prefix", "")
        doc = " ".join((settings.__doc__ or "").split()).replace("``", "`") if settings in SHARED else ""
        parts.append(f"## {title}: prefix `{prefix}`\n")
        users = ", ".join([*reads(settings), *([used_by] if used_by else [])])
        parts.append(f"Used by {users}.{' ' + doc if doc else ''}\n")
        parts.append("\n".join(_table(settings)) + "\n")
        if settings is AuthSettings:
            parts.append(AUTH_EXAMPLE)
    parts.append("## Tools and tests: read from the environment directly\n")
    rows = [f"| `{name}` | {reader} | {meaning} |" for name, reader, meaning in TOOLS]
    parts.append("\n".join(["| variable | read by | meaning |", "|---|---|---|", *rows]) + "\n")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is not current")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUT.exists() and OUT.read_text() == text
        if not current:
            sys.stderr.write("docs/configuration.md is not current: run python -m launch.config_docs\n")
        return 0 if current else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
