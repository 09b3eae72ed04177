"""The packages' layers (docs/architecture.md, "Layers"): every import, at module level or inside a function, goes
down the layers, never up; services import one another only along the edges listed here, which form no cycle."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom up. A package may import its own layer's packages only as SIDEWAYS allows, and any lower layer.
LAYERS: list[set[str]] = [
    {"schemas"},  # the contracts: events on the topic, WebSocket messages, claims, cursors
    {"domain"},  # the pure core: the apply rule, positions, event identity, partitioning
    {"locstream"},  # the kernel: Kafka, HTTP service shell, settings, lifecycle, readiness, logs, auth, serving
    {
        "replay",
        "producers",
        "projector",
        "ws_edge",
        "geofencer",
        "notifier",
    },  # the services (replay also a library of others)
    {"launch"},  # entry points: the CLI, the dev stack, config docs, the simulator, local broker and PostgreSQL
    {"bench"},  # the benchmark harness, which starts everything below
]
SIDEWAYS = {
    ("projector", "replay"),  # the projector serves the history export
    ("ws_edge", "replay"),  # paced replays read the history
    ("ws_edge", "projector"),  # the edge bootstraps from the projector's table (its store)
}


def _layer_of(package: str) -> int | None:
    return next((index for index, packages in enumerate(LAYERS) if package in packages), None)


def _imports(path: Path) -> set[str]:
    """The top-level packages of locstream's own that ``path`` imports (``from . import`` is its own package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return {name for name in found if _layer_of(name) is not None}


def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for packages in LAYERS:
        for package in packages:
            for path in sorted((ROOT / package).rglob("*.py")):
                for imported in _imports(path) - {package}:
                    edges.setdefault((package, imported), []).append(str(path.relative_to(ROOT)))
    return edges


def test_every_import_goes_down_the_layers_or_along_a_listed_sideways_edge() -> None:
    wrong = []
    for (importer, imported), where in sorted(_edges().items()):
        up, down = _layer_of(importer), _layer_of(imported)
        assert up is not None and down is not None
        if down > up or (down == up and (importer, imported) not in SIDEWAYS):
            wrong.append(f"{importer} -> {imported} ({', '.join(where)})")
    assert wrong == []


def test_the_package_graph_has_no_cycle_and_every_package_has_a_layer() -> None:
    graph: dict[str, set[str]] = {}
    for importer, imported in _edges():
        graph.setdefault(importer, set()).add(imported)
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as cycle:
        raise AssertionError(f"a cycle: {cycle.args[1]}") from cycle
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set().union(*LAYERS)
