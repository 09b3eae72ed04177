"""The ``soak`` scenario: an hour (``--size full``; 2 minutes at ``small``) of an ordinary working day, and whether
every service's memory reaches a plateau.

The load: ``technicians`` technicians posting a fix a second each, ``dispatchers`` dispatchers watching the map,
``reconnecting`` of them dropping their socket and coming back every 10 s, an export of the last hour and a paced
replay of the last minutes every minute. Every ``sample_seconds`` each service's RSS is sampled (``bench.procstats``).
The figures: the curve, each service's RSS at the start and the end, and whether it levelled off (the last
quarter's largest sample within ``PLATEAU_TOLERANCE`` of the third quarter's), and an SVG of the curve
(``svg``): ``python -m bench.soak RESULTS.json --out FIGURE.svg`` draws it from what ``make bench SCENARIO=soak``
wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench.procstats import rss_bytes
from bench.scenario import BenchContext, Metrics, scenario
from bench.systems import RunningSystem, token
from schemas.claims import Role

PLATEAU_TOLERANCE = 0.05  # the last quarter may reach 5% above the third quarter's largest sample: a plateau
WIDTH, HEIGHT = 760, 360
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


@scenario(
    "soak",
    {
        "small": [
            {
                "duration": 60,
                "sample_seconds": 5,
                "history_seconds": 20,
                "technicians": 50,
                "dispatchers": 100,
                "reconnecting": 2,
            }
        ],
        "full": [
            {
                "duration": 3600,
                "sample_seconds": 30,
                "history_seconds": 60,
                "technicians": 50,
                "dispatchers": 100,
                "reconnecting": 2,
            }
        ],
    },
    headline="ws-edge_rss_end_mb",
    higher_is_better=False,
    once=True,
    what="an hour (small: a minute) of 50 technicians at a fix a second, 100 dispatchers (2 reconnecting every"
    " 10 s), an export and a paced replay every minute (small: 20 s); each service's RSS every 30 s (small: 5 s) and"
    " whether"
    " it reached a plateau; soak.svg beside the results draws the curve",
    notes=[
        "the caches that fill with the history are sized to fill within the hour at this load, so that the"
        " curve shows their ceiling: 60,000 recent fixes in the ingest API (20 minutes of fixes), a 16 MiB"
        " SQLite page cache in the projector (docs/operations.md, 'Limits and timeouts')"
    ],
    systems=("locstream",),
    settings={"LOCSTREAM_PRODUCERS_RECENT_FIXES": "60000", "LOCSTREAM_SQLITE_CACHE_MIB": "16"},
)
async def measure(system: RunningSystem, p: dict[str, Any], ctx: BenchContext) -> Metrics:
    """An ordinary working day at a fixed load, and every service's memory over it."""
    duration, every = float(p["duration"]), float(p["sample_seconds"])
    projector_url = f"http://127.0.0.1:{system.processes['projector'].port}"
    deadline = time.monotonic() + duration
    counts: dict[str, int] = {"fixes": 0, "fix_errors": 0, "frames": 0, "reconnects": 0, "exports": 0, "replays": 0}
    curve: list[dict[str, Any]] = []
    tasks = [
        *(asyncio.create_task(_technician(system, f"soak-{i}", deadline, counts)) for i in range(p["technicians"])),
        *(
            asyncio.create_task(_dispatcher(system, i < p["reconnecting"], deadline, counts))
            for i in range(p["dispatchers"])
        ),
        asyncio.create_task(_history(system, projector_url, deadline, float(p["history_seconds"]), counts)),
    ]
    began = time.monotonic()
    try:
        while time.monotonic() < deadline:
            curve.append(
                {"t": round(time.monotonic() - began, 1), **{r: rss_bytes(pid) for r, pid in system.pids().items()}}
            )
            await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))
        curve.append(
            {"t": round(time.monotonic() - began, 1), **{r: rss_bytes(pid) for r, pid in system.pids().items()}}
        )
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return {**counts, **plateaus(curve), "curve": curve}


def _sample(system: RunningSystem, began: float) -> dict[str, Any]:
    return {"t": round(time.monotonic() - began, 1), **{role: rss_bytes(pid) for role, pid in system.pids().items()}}


def plateaus(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """Per service: its RSS at the start, the largest of the run's third and last quarters, at the end, and whether
    it levelled off: the last quarter's largest sample no more than ``PLATEAU_TOLERANCE`` above the third quarter's
    (a curve still climbing at the end is no plateau, however high it has climbed)."""
    roles = [key for key in curve[0] if key != "t"]
    quarter = max(1, len(curve) // 4)
    third, last = curve[-2 * quarter : -quarter] or curve[:1], curve[-quarter:]
    figures: dict[str, Any] = {}
    for role in roles:
        before, after = max(sample[role] for sample in third), max(sample[role] for sample in last)
        figures[f"{role}_rss_start_mb"] = round(curve[0][role] / 2**20, 1)
        figures[f"{role}_rss_third_quarter_max_mb"] = round(before / 2**20, 1)
        figures[f"{role}_rss_last_quarter_max_mb"] = round(after / 2**20, 1)
        figures[f"{role}_rss_end_mb"] = round(curve[-1][role] / 2**20, 1)
        figures[f"{role}_plateau"] = after <= before * (1 + PLATEAU_TOLERANCE)
    return figures


def svg(curve: list[dict[str, Any]]) -> str:
    """Each service's RSS (MB) over time (minutes), one line each. Pure."""
    roles = [key for key in curve[0] if key != "t"]
    t_max = max(curve[-1]["t"], 1.0)
    top = max(max(sample[role] for sample in curve) for role in roles) / 2**20 * 1.1 or 1.0
    left, bottom, right, upper = 60, HEIGHT - 40, WIDTH - 160, 20

    def x(t: float) -> float:
        return float(left + (right - left) * t / t_max)

    def y(mb: float) -> float:
        return float(bottom - (bottom - upper) * mb / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{bottom}" x2="{left}" y2="{upper}" stroke="black"/>',
        f'<text x="{(left + right) / 2}" y="{HEIGHT - 8}" text-anchor="middle">minutes</text>',
        f'<text x="14" y="{(upper + bottom) / 2}" transform="rotate(-90 14 {(upper + bottom) / 2})" '
        'text-anchor="middle">RSS, MB</text>',
    ]
    for tick in range(5):
        mb, t = top * tick / 4, t_max * tick / 4
        parts.append(f'<text x="{left - 6}" y="{y(mb) + 4:.1f}" text-anchor="end">{mb:.0f}</text>')
        parts.append(f'<text x="{x(t):.1f}" y="{bottom + 16}" text-anchor="middle">{t / 60:.1f}</text>')
    for index, role in enumerate(roles):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(f"{x(sample['t']):.1f},{y(sample[role] / 2**20):.1f}" for sample in curve)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{right + 10}" y="{upper + 16 * (index + 1)}" fill="{colour}">{role}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


async def _technician(system: RunningSystem, technician: str, deadline: float, counts: dict[str, int]) -> None:
    headers = {"Authorization": f"Bearer {token(Role.TECHNICIAN, sub=technician)}"}
    url = f"{system.api_url}/api/v1/field-service/technicians/{technician}/location"
    rng = random.Random(technician)
    lat, lon = 6.4 + rng.random() * 0.2, 3.3 + rng.random() * 0.2
    async with httpx.AsyncClient(timeout=10) as http:
        while time.monotonic() < deadline:
            began = time.monotonic()
            lat, lon = lat + rng.uniform(-1e-4, 1e-4), lon + rng.uniform(-1e-4, 1e-4)
            try:
                answer = await http.post(url, json={"latitude": lat, "longitude": lon}, headers=headers)
                counts["fixes" if answer.status_code == 202 else "fix_errors"] += 1
            except httpx.HTTPError:
                counts["fix_errors"] += 1
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))


async def _dispatcher(system: RunningSystem, reconnecting: bool, deadline: float, counts: dict[str, int]) -> None:
    url = f"{system.ws_url}?token={token(Role.DISPATCHER)}"
    while time.monotonic() < deadline:
        stay = min(10.0 if reconnecting else deadline - time.monotonic(), deadline - time.monotonic())
        with contextlib.suppress(OSError, websockets.ConnectionClosed, TimeoutError):
            async with websockets.connect(url, open_timeout=30) as ws:
                until = time.monotonic() + stay
                while time.monotonic() < until:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(ws.recv(), max(0.05, until - time.monotonic()))
                        counts["frames"] += 1
                if reconnecting:
                    ws.transport.abort()  # dropped, as a phone losing coverage would
        counts["reconnects"] += reconnecting


async def _history(
    system: RunningSystem, projector_url: str, deadline: float, every: float, counts: dict[str, int]
) -> None:
    """An export of the last hour and a paced replay of the last 5 minutes, every ``every`` seconds."""
    analyst = token(Role.ANALYST)
    async with httpx.AsyncClient(timeout=120) as http:
        while time.monotonic() < deadline:
            began = time.monotonic()
            now = datetime.now(UTC)
            params = {"from": (now - timedelta(hours=1)).isoformat(), "to": now.isoformat(), "format": "geojson"}
            with contextlib.suppress(httpx.HTTPError):
                answer = await http.get(
                    f"{projector_url}/api/v1/field-service/history/export",
                    params=params,
                    headers={"Authorization": f"Bearer {analyst}"},
                )
                counts["exports"] += answer.status_code == 200
            start, end = (now - timedelta(minutes=5)).isoformat(), now.isoformat()
            query = f"replay_from={start}&replay_to={end}&speed=0".replace("+", "%2B")
            with contextlib.suppress(OSError, websockets.ConnectionClosed, TimeoutError):
                async with websockets.connect(f"{system.ws_url}?token={analyst}&{query}", open_timeout=30) as ws:
                    while '"replay_done"' not in str(await asyncio.wait_for(ws.recv(), 60)):
                        pass
                    counts["replays"] += 1
            await asyncio.sleep(max(0.0, every - (time.monotonic() - began)))


def main() -> None:
    parser = argparse.ArgumentParser(description="Draw the soak scenario's RSS curve from results.json")
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    document = json.loads(args.results.read_text())
    (scenario,) = [scenario for scenario in document["scenarios"] if scenario["name"] == "soak"]
    run = scenario["points"][0]["systems"]["locstream"]["runs"][0]
    args.out.write_text(svg(run["curve"]))


if __name__ == "__main__":
    main()
