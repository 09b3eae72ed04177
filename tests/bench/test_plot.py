"""The edge figure is drawn from the results as they are: one line per system and panel, points in order."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from bench.plot import figure, series


def _point(clients: int, systems: dict[str, dict[str, float]]) -> dict[str, object]:
    """A point as results.json has it: each figure's median, min, max and spread."""
    figures = {
        name: {key: {"median": value, "min": value, "max": value} for key, value in f.items()}
        for name, f in systems.items()
    }
    return {"params": {"clients": clients}, "systems": {name: {"figures": f} for name, f in figures.items()}}


def test_each_system_gets_a_line_per_panel_from_the_scale_and_connections_results() -> None:
    scale = {
        "scenarios": [
            {
                "name": "edge-scale",
                "points": [
                    _point(
                        5000,
                        {
                            "locstream": {
                                "rss_bytes_per_connection": 3000,
                                "cpu_us_per_delivery": 9.0,
                                "paced_floor_us_per_send": 6.5,
                            },
                            "seed": {"rss_bytes_per_connection": 41000, "cpu_us_per_delivery": 20.0},
                        },
                    ),
                    _point(
                        1000,
                        {
                            "locstream": {
                                "rss_bytes_per_connection": 3500,
                                "cpu_us_per_delivery": 9.5,
                                "paced_floor_us_per_send": 6.0,
                            }
                        },
                    ),
                ],
            },
            {"name": "latency", "points": [_point(1000, {"locstream": {"rss_bytes_per_connection": 1.0}})]},
        ]
    }
    connections = {
        "scenarios": [
            {"name": "connections", "points": [_point(15000, {"locstream": {"rss_bytes_per_connection": 2800}})]}
        ]
    }
    memory, cpu = series([scale, connections])
    assert memory["locstream"] == [(1000.0, 3500.0), (5000.0, 3000.0), (15000.0, 2800.0)]  # latency is not read
    assert cpu["locstream"] == [(1000.0, 9.5), (5000.0, 9.0)] and cpu["send() floor, paced"][0] == (1000.0, 6.0)
    assert "seed" in cpu and "seed" in memory
    svg = ET.fromstring(figure(memory, cpu, "caption"))
    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == len(memory) + len(cpu) == 5
