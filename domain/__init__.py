"""The pure domain core: what every service agrees on, with no I/O (docs/architecture.md, "Layers").

- ``position.py``: where an event sits in the log (partition, offset);
- ``identity.py``: an event's identity, what a client's retry repeats;
- ``projection.py``: the apply rule (``apply``) and its state, and ``fold`` over a log;
- ``fix_quality.py``: what can be wrong with a fix, and whether it may become the current position;
- ``geodesy.py``: distances on the Earth;
- ``partitioning.py``: which partition holds a tenant's events;
- ``devices.py``: a tenant's registered devices, folded from the devices topic;
- ``fence_shapes.py``: a fence's polygon, compactly, and which shapes can be fences;
- ``geofencing.py``: fences, the grid that finds those near a fix, and the enter/exit rule;
- ``visits.py``: a job's crossings paired into visits, and its time on site;
- ``stays.py``: stops and trips, and the track that revises them when fixes come late;
- ``presence.py``: online and offline, by a clock of watched time;
- ``derived_facts.py``: the rules above applied to the location log record by record, and the events they make.

It imports the contracts (``schemas``) and nothing else of locstream.

The modules in ``COMPILED_MODULES`` run once per fix in every consumer: ``python -m launch.compile_domain`` (``make
install``) compiles them with mypyc into ``build/mypyc/domain/``, and this package puts that build first on its path
when the build was made from the sources as they are now (``compiled_digest``); otherwise, or with
``LOCSTREAM_COMPILED=0``, the sources here run as they are. ``COMPILED`` says which.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPILED_MODULES = (
    "geodesy",
    "fence_shapes",
    "fix_quality",
    "projection",
    "geofencing",
    "stays",
    "presence",
    "derived_facts",
)
# What the compiled modules are made of, besides themselves: the contracts whose types they were compiled against.
_COMPILED_AGAINST = ("schemas/events.py", "schemas/tenant_rules.py", "schemas/geofences.py")
SOURCES_FILE = "SOURCES"


def compiled_digest() -> str:
    """What a build must have been made from: the interpreter, the compiled modules' sources, their contracts'."""
    digest = hashlib.sha256(sys.version.encode())
    for name in (*(f"domain/{module}.py" for module in COMPILED_MODULES), *_COMPILED_AGAINST):
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    return digest.hexdigest()


def build_is_current(build: Path) -> bool:
    try:
        return (build / SOURCES_FILE).read_text() == compiled_digest()
    except OSError:
        return False


_BUILD = ROOT / "build" / "mypyc" / "domain"
COMPILED = os.environ.get("LOCSTREAM_COMPILED", "1") != "0" and build_is_current(_BUILD)
if COMPILED:
    __path__.insert(0, str(_BUILD))
