"""results.json and the Markdown table: medians and spread over runs, and ratios against the peers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.stats import summarize


def numeric_figures(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median and spread of every top-level number the runs reported."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    return {key: summarize([run[key] for run in runs if isinstance(run.get(key), int | float)]) for key in keys}


def ratio(ours: float | None, theirs: float | None, higher_is_better: bool) -> float | None:
    """How many times better locstream is (>1 better, <1 worse)."""
    if not ours or not theirs:
        return None
    return round(ours / theirs if higher_is_better else theirs / ours, 2)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark results ({results['size']})",
        "",
        f"Machine: {results['machine']['cpu_model']}, {results['machine']['cores']} cores. "
        f"Runs per point: {results['runs']} (after {results['warmup_runs']} warm-up). "
        f"Started {results['started_at']}; took {results['seconds']:.0f} s.",
        "",
    ]
    for scenario in results["scenarios"]:
        lines += [f"## {scenario['name']}", "", scenario["what"], ""]
        for note in scenario["notes"]:
            lines += [f"- {note}"]
        if scenario["notes"]:
            lines.append("")
        systems = scenario["systems"]
        peers = [name for name in systems if name != "locstream"]
        header = ["point", "figure", *systems, *(f"locstream vs {peer}" for peer in peers)]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for point in scenario["points"]:
            figures: set[str] = set()
            for result in point["systems"].values():
                figures |= set(result.get("figures", {}))
            for figure in sorted(figures, key=lambda f: (f != scenario["headline"], f)):
                medians = {
                    name: point["systems"][name].get("figures", {}).get(figure, {}).get("median") for name in systems
                }
                spread = {
                    name: point["systems"][name].get("figures", {}).get(figure, {}).get("spread") for name in systems
                }
                cells = [
                    point["label"],
                    f"**{figure}**" if figure == scenario["headline"] else figure,
                    *(
                        (_fmt(medians[n]) + (f" ±{spread[n] * 100:.0f}%" if spread[n] else ""))
                        if "error" not in point["systems"][n]
                        else "failed"
                        for n in systems
                    ),
                    *(
                        _fmt(ratio(medians.get("locstream"), medians.get(peer), scenario["higher_is_better"]))
                        if figure == scenario["headline"]
                        else ""
                        for peer in peers
                    ),
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for point in scenario["points"]:
            for name, result in point["systems"].items():
                if "error" in result:
                    lines.append(f"- {point['label']}, {name}: failed: {result['error']}")
        lines.append("")
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(markdown(results))
