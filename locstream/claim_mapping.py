"""Claim mapping: where a token keeps its tenant and roles, and which of the provider's role names are whose.

An identity provider names claims its own way: Keycloak puts realm roles under ``realm_access.roles``, Auth0
wants namespaced custom claims (``https://locstream.example/tenant``), Cognito has ``cognito:groups``. A claim
path is looked up as a key of the payload first, then as dotted segments (``org.id`` is ``payload["org"]["id"]``),
so a namespaced URL with dots still works. Roles may be one string or a list of strings.

With a role map (``fleet-dispatcher=dispatcher,...``) only the mapped names count: a provider's own ``admin``
role does not make a locstream admin unless the map says so. Without one, locstream's role names count as they
are. A token with no known role is refused with the roles it had, so an operator can see what to map.

Pure: no I/O; ``locstream.auth`` applies it to a verified payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas.claims import Role, TokenClaims, claim_id_problem

MAX_ROLES = 256  # names in the roles claim that are looked at; providers put a few, attackers many
_ROLE_NAMES = {role.value for role in Role}


class ClaimError(ValueError):
    """The payload lacks a mapped claim, or has no known role; the message is safe to show."""


def parse_role_map(text: str) -> dict[str, Role]:
    """``fleet-dispatcher=dispatcher, fleet-gateway=device_gateway`` as a dict; ValueError names a bad entry."""
    mapping: dict[str, Role] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, sep, role = (piece.strip() for piece in entry.partition("="))
        if not sep or not name:
            raise ValueError(f"role map entry {entry!r} is not provider-role=locstream-role")
        try:
            mapping[name] = Role(role)
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"role map entry {entry!r}: {role!r} is not a locstream role ({known})") from None
    return mapping


def claim_at(payload: Mapping[str, Any], path: str) -> Any:
    """The value at ``path``: the key itself when the payload has it, else the dotted segments; None if absent."""
    if path in payload:
        return payload[path]
    value: Any = payload
    for segment in path.split("."):
        if not isinstance(value, Mapping) or segment not in value:
            return None
        value = value[segment]
    return value


@dataclass(frozen=True)
class ClaimMapping:
    tenant_claim: str = "tenant_id"
    roles_claim: str = "role"
    role_map: Mapping[str, Role] = field(default_factory=dict)

    def roles(self, payload: Mapping[str, Any]) -> frozenset[Role]:
        value = claim_at(payload, self.roles_claim)
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else None
        if names is None:
            raise ClaimError(f"no roles in claim {self.roles_claim}")
        names = [name for name in names[:MAX_ROLES] if isinstance(name, str)]
        if self.role_map:
            roles = {self.role_map[name] for name in names if name in self.role_map}
        else:
            roles = {Role(name) for name in names if name in _ROLE_NAMES}
        if not roles:
            shown = ", ".join(name[:40] for name in names[:8]) or "none"
            raise ClaimError(f"no locstream role in claim {self.roles_claim} (it has: {shown})")
        return frozenset(roles)

    def claims(self, payload: Mapping[str, Any]) -> TokenClaims:
        """The locstream claims of a verified payload; ``ClaimError`` with the reason otherwise."""
        tenant = claim_at(payload, self.tenant_claim)
        if tenant is None:
            raise ClaimError(f"no tenant in claim {self.tenant_claim}")
        if not isinstance(tenant, str):
            raise ClaimError(f"claim {self.tenant_claim} must be a string")
        if (problem := claim_id_problem(tenant)) is not None:  # refused at the door: CR/LF never reach a header
            raise ClaimError(f"claim {self.tenant_claim}: {problem}")
        subject = payload.get("sub", payload.get("user_id"))  # the seed's tokens name the subject user_id
        try:
            return TokenClaims.model_validate(
                {
                    "sub": subject,
                    "tenant_id": tenant,
                    "roles": self.roles(payload),
                    "exp": payload.get("exp"),
                    "iat": payload.get("iat"),
                }
            )
        except ValidationError as exc:
            fields = ", ".join(str(err["loc"][0]) for err in exc.errors() if err["loc"])
            raise ClaimError(f"invalid claims: {fields or 'malformed'}") from exc
