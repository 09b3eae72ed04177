"""``locstream device add|list|revoke``: devices from an operator's terminal, straight on the devices topic (the same
``DeviceRegistry`` as the ingest API's endpoints); ``add`` prints each app's settings and a QR code for OwnTracks,
which imports its whole configuration from one."""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys

import segno

from locstream.devices import DeviceRegistry
from locstream.settings import KafkaSettings
from producers.device_routes import setup


def owntracks_config_url(settings: dict[str, str], technician_id: str) -> str:
    """An ``owntracks:///config?inline=`` URL: scanned, it sets the app to HTTP mode with this device's key."""
    config = {
        "_type": "configuration",
        "mode": 3,
        "url": settings["url"],
        "auth": True,
        "username": settings["username"],
        "password": settings["password"],
        "deviceId": technician_id,
    }
    return "owntracks:///config?inline=" + base64.b64encode(json.dumps(config).encode()).decode()


def qr_text(data: str) -> str:
    """``data`` as a QR code drawn with block characters, for a terminal."""
    out = io.StringIO()
    segno.make(data, error="m").terminal(out=out, compact=True)
    return out.getvalue()


async def run(args: argparse.Namespace) -> int:
    registry = DeviceRegistry(KafkaSettings())
    await registry.start()
    try:
        if args.action == "add":
            device, key = await registry.register(args.tenant, args.technician, args.label)
            apps = setup(args.server.rstrip("/"), key)
            if args.json:
                print(
                    json.dumps(
                        {
                            "device_id": device.device_id,
                            "key": key,
                            "technician_id": device.technician_id,
                            "label": device.label,
                            "setup": apps,
                        }
                    )
                )
                return 0
            print(f"device {device.device_id} for {device.technician_id} of {device.tenant_id}")
            print(f"key (shown once): {key}\n")
            for app, settings in apps.items():
                print(f"{app}:")
                for name, value in settings.items():
                    print(f"  {name}: {value}")
            print("\nOwnTracks: scan to configure")
            print(qr_text(owntracks_config_url(apps["owntracks"], device.technician_id)))
        elif args.action == "list":
            devices = registry.book.of_tenant(args.tenant)
            rows = [
                {
                    "device_id": d.device_id,
                    "technician_id": d.technician_id,
                    "label": d.label,
                    "registered_at": d.registered_at.isoformat(),
                }
                for d in devices
            ]
            print(json.dumps(rows) if args.json else "\n".join(" ".join(str(v) for v in r.values()) for r in rows))
        else:
            found = registry.book.find(args.device_id)
            if found is None or not await registry.revoke(found.tenant_id, found.device_id):
                print(f"error: no active device {args.device_id!r}", file=sys.stderr)
                return 2
            print(f"revoked {found.device_id} ({found.technician_id} of {found.tenant_id})")
        return 0
    finally:
        await registry.stop()
