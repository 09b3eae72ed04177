"""A small simulated fleet for ``locstream dev``: technicians of two tenants moving along tracks.

It posts through the public ingest API with device-gateway tokens, exactly as a real gateway would.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from locstream.auth import issue_token
from locstream.lifecycle import cancel_and_wait
from locstream.settings import AuthSettings
from schemas.claims import Role

log = logging.getLogger(__name__)

# Tenant -> (city centre, technicians); positions move around the centre.
FLEET: dict[str, tuple[tuple[float, float], list[tuple[str, str]]]] = {
    "acme-fiber": ((6.5244, 3.3792), [("tech-ada", "Ada Obi"), ("tech-bola", "Bola Ade"), ("tech-chi", "Chi Eze")]),
    "globex-isp": ((52.5200, 13.4050), [("tech-dora", "Dora Weber"), ("tech-emil", "Emil Frank")]),
}
STATUSES = ("available", "en_route", "on_job")


@dataclass
class _Walker:
    """A technician driving a loop around its tenant's centre."""

    tenant_id: str
    technician_id: str
    centre: tuple[float, float]
    radius_deg: float
    angle: float
    step: float

    def advance(self) -> tuple[float, float, float]:
        self.angle = (self.angle + self.step) % (2 * math.pi)
        lat = self.centre[0] + self.radius_deg * math.sin(self.angle) + random.uniform(-1e-4, 1e-4)  # GPS noise
        lon = self.centre[1] + self.radius_deg * math.cos(self.angle) + random.uniform(-1e-4, 1e-4)
        heading = (math.degrees(-self.angle) + 360.0) % 360.0
        return lat, lon, heading


class FleetSimulator:
    """Owns the simulation task: ``start()`` spawns it, ``stop()`` cancels and awaits it."""

    def __init__(
        self, base_url: str, auth: AuthSettings, interval_seconds: float = 2.0, summary_every: float = 10.0
    ) -> None:
        self.base_url = base_url
        self.auth = auth
        self.interval = interval_seconds
        self.summary_every = summary_every  # one log line that long, instead of a line per POST
        self.answers: Counter[int] = Counter()  # status -> how many, since the last summary (0: no answer)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        assert self._task is None
        self._task = asyncio.create_task(self._run(), name="fleet-simulator")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        walkers = [
            _Walker(
                tenant,
                tech,
                centre,
                random.uniform(0.01, 0.03),
                random.uniform(0, 2 * math.pi),
                # An arc of at most 0.03 degrees x 0.015 rad (50 m) a fix, 2 s apart, plus the noise: under 150 km/h,
                # so no simulated fix is a jump to the quality rule (docs/fix-quality.md).
                random.uniform(0.005, 0.015),
            )
            for tenant, (centre, techs) in FLEET.items()
            for tech, _ in techs
        ]
        tokens = {
            tenant: issue_token(
                self.auth, tenant_id=tenant, sub="simulator", role=Role.DEVICE_GATEWAY, ttl_seconds=7 * 24 * 3600
            )
            for tenant in FLEET
        }
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10.0) as client:
            await self._name_everyone(client, tokens)
            summarised = time.monotonic()
            while True:
                if time.monotonic() - summarised >= self.summary_every:
                    self._summarise(time.monotonic() - summarised)
                    summarised = time.monotonic()
                for walker in walkers:
                    lat, lon, heading = walker.advance()
                    body = {
                        "latitude": lat,
                        "longitude": lon,
                        "heading": heading,
                        "speed_kmh": 30.0,
                        "accuracy_meters": 5.0,
                    }
                    await self._send(
                        client,
                        "POST",
                        f"/api/v1/field-service/technicians/{walker.technician_id}/location",
                        tokens[walker.tenant_id],
                        body,
                    )
                await asyncio.sleep(self.interval)

    async def _name_everyone(self, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        for tenant, (_, techs) in FLEET.items():
            for tech, name in techs:
                body = {"name": name, "status": random.choice(STATUSES)}
                path = f"/api/v1/field-service/technicians/{tech}"
                for _ in range(60):  # the API may still be starting: a bounded number of tries
                    if await self._send(client, "PUT", path, tokens[tenant], body):
                        break
                    await asyncio.sleep(1.0)

    def _summarise(self, seconds: float) -> None:
        posted = sum(self.answers.values())
        refused = posted - self.answers[202]
        log.info(
            "simulated fleet: %d requests in the last %.0f s, %d accepted, %d not",
            posted,
            seconds,
            self.answers[202],
            refused,
        )
        self.answers.clear()

    async def _send(
        self, client: httpx.AsyncClient, method: str, path: str, token: str, body: Mapping[str, object]
    ) -> bool:
        try:
            response = await client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            log.debug("simulator: %s %s failed: %s", method, path, exc)
            self.answers[0] += 1
            return False
        self.answers[response.status_code] += 1
        if response.status_code != 202:
            log.warning("simulator: %s %s answered %d: %s", method, path, response.status_code, response.text)
        return response.status_code == 202
