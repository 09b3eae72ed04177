"""The dispatch map page (``/map``) and the JavaScript client (``/client/...``), served as files from
``ws_edge/web/`` (docs/client.md). Leaflet, supercluster, topojson-client and world-atlas come from
``ws_edge/web/node_modules``, installed by ``make run`` and ``make test`` with npm, not vendored."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ws_edge.settings import EdgeSettings

WEB = Path(__file__).parent / "web"
CLIENT_FILES = ("locstream-client.js", "locstream-client.d.ts", "react.js", "react.d.ts")
PAGE_FILES = (
    "map.js",
    "map.css",
    "fleet.js",
    "fleet-layer.js",
    "clusters.js",
    "clusters-worker.js",
    "geography.js",
    "search.js",
    "details.js",
    "details-panel.js",
    "status-chips.js",
    "fence-view.js",
    "replay-panel.js",
    "sign-in.js",
    "trail-fetcher.js",
    "page.js",
)
MODULES = WEB / "node_modules"
# Served from npm's install (package-lock): the map library, clustering, and the world's outlines with their reader.
VENDOR = {
    "leaflet": MODULES / "leaflet" / "dist",
    "supercluster": MODULES / "supercluster" / "dist",
    "topojson-client": MODULES / "topojson-client" / "dist",
    "world-atlas": MODULES / "world-atlas",
}

router = APIRouter(include_in_schema=False)


@router.get("/map")
async def map_page() -> FileResponse:
    return FileResponse(WEB / "map" / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/map/config.json")
async def map_config(request: Request) -> dict[str, object]:
    settings: EdgeSettings = request.app.state.edge.settings
    return {
        "feed_url": settings.map_feed_url,
        "api_base": settings.map_api_base,
        "history_base": settings.map_history_base,
        "tile_url": settings.map_tile_url,
        "tile_attribution": settings.map_tile_attribution,
        "center": [20.0, 0.0],
        "zoom": 2,
    }


@router.get("/map/static/{name}")
async def page_file(name: str) -> FileResponse:
    if name not in PAGE_FILES:
        raise HTTPException(404, "no such file")
    return FileResponse(WEB / "map" / name, headers={"Cache-Control": "no-cache"})


@router.get("/client/{name}")
async def client_file(name: str) -> FileResponse:
    if name not in CLIENT_FILES:
        raise HTTPException(404, "no such file")
    media = "text/javascript" if name.endswith(".js") else "text/plain"
    return FileResponse(WEB / name, media_type=media, headers={"Cache-Control": "no-cache"})


def install(app: FastAPI) -> None:
    app.include_router(router)
    # check_dir=False: without npm's install the page still loads and says what is missing.
    for name, directory in VENDOR.items():
        app.mount(f"/map/vendor/{name}", StaticFiles(directory=directory, check_dir=False), name=name)
