"""A figure of the edge against the number of connections, as an SVG written without a plotting library.

``python -m bench.plot RESULTS.json [RESULTS.json ...] --out FIGURE.svg``: from the results of the ``edge-scale``
scenario (and ``connections``, when given), two panels side by side, one line per system: the fan-out process's RSS
per connection, and its CPU-µs per delivery beside the paced ``send()`` floor of the same runs. Pure: the SVG is a
function of the figures (``figure``); ``main`` reads and writes the files.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

Series = dict[str, list[tuple[float, float]]]  # system -> (connections, value), in order of connections

COLOURS = {"locstream": "#1f77b4", "seed": "#d62728", "broadcaster": "#2ca02c", "send() floor, paced": "#7f7f7f"}
WIDTH, HEIGHT, PANEL = 900, 380, 400


def _median(figure: Any) -> float | None:
    """A figure of results.json: ``{"median": ..., "min": ..., ...}`` (a number in older files)."""
    value = figure.get("median") if isinstance(figure, dict) else figure
    return None if value is None else float(value)


def series(results: list[dict[str, Any]]) -> tuple[Series, Series]:
    """(RSS bytes per connection, CPU-µs per delivery) by system, from results.json documents."""
    memory: dict[str, dict[float, float]] = defaultdict(dict)
    cpu: dict[str, dict[float, float]] = defaultdict(dict)
    for document in results:
        for scenario in document["scenarios"]:
            if scenario["name"] not in ("edge-scale", "connections"):
                continue
            for point in scenario["points"]:
                clients = float(point["params"]["clients"])
                for system, result in point["systems"].items():
                    figures = {name: _median(value) for name, value in result.get("figures", {}).items()}
                    rss, per_delivery = figures.get("rss_bytes_per_connection"), figures.get("cpu_us_per_delivery")
                    if rss is not None and (scenario["name"] == "connections" or clients not in memory[system]):
                        memory[system][clients] = rss  # idle (connections) over connected-before-the-load (scale)
                    if scenario["name"] == "edge-scale" and per_delivery is not None:
                        cpu[system][clients] = per_delivery
                        paced = figures.get("paced_floor_us_per_send")
                        if paced is not None:
                            cpu["send() floor, paced"][clients] = paced
    ordered = ({name: sorted(points.items()) for name, points in found.items()} for found in (memory, cpu))
    return next(ordered), next(ordered)


def _panel(x0: float, title: str, unit: str, data: Series) -> list[str]:
    top, left, width, height = 40.0, x0 + 70, PANEL - 90, HEIGHT - 100
    xs = [x for points in data.values() for x, _ in points] or [1.0]
    ys = [y for points in data.values() for _, y in points] or [1.0]
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    span = hi - lo or 1.0
    top_y = max(ys) * 1.15 or 1.0

    def px(x: float) -> float:
        return left + (math.log10(x) - lo) / span * width

    def py(y: float) -> float:
        return top + height - y / top_y * height

    out = [
        f'<text x="{x0 + PANEL / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
        f'<line x1="{left}" y1="{top + height}" x2="{left + width}" y2="{top + height}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + height}" stroke="#333"/>',
        f'<text x="{x0 + 6}" y="{top + height / 2}" font-size="11" transform="rotate(-90 {x0 + 6} '
        f'{top + height / 2})" text-anchor="middle">{unit}</text>',
        f'<text x="{left + width / 2}" y="{top + height + 36}" font-size="11" text-anchor="middle">'
        "connections to one edge process (log scale)</text>",
    ]
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.1f}" y="{top + height + 16}" font-size="10" text-anchor="middle">{x:,.0f}</text>')
    for step in range(5):
        y = top_y * step / 4
        label = f"{y:,.0f}" if top_y >= 100 else f"{y:.3g}"
        out.append(f'<text x="{left - 6}" y="{py(y) + 3:.1f}" font-size="10" text-anchor="end">{label}</text>')
        out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{left + width}" y2="{py(y):.1f}" stroke="#eee"/>')
    for row, (name, points) in enumerate(sorted(data.items())):
        colour = COLOURS.get(name, "#9467bd")
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        dash = ' stroke-dasharray="4 3"' if "floor" in name else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in points]
        out.append(f'<text x="{left + 8}" y="{top + 12 + row * 14}" font-size="11" fill="{colour}">{name}</text>')
    return out


def figure(memory: Series, cpu: Series, caption: str) -> str:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        *_panel(20, "RSS per connection (fan-out process)", "bytes", memory),
        *_panel(20 + PANEL + 40, "CPU per delivery (v1, ~50,000 deliveries/s)", "CPU-µs", cpu),
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" font-size="10" text-anchor="middle" fill="#555">{caption}</text>',
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--caption", default="")
    args = parser.parse_args()
    memory, cpu = series([json.loads(path.read_text()) for path in args.results])
    args.out.write_text(figure(memory, cpu, args.caption))


if __name__ == "__main__":
    main()
