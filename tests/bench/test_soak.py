"""The soak scenario's verdict and figure, from curves made up here (the scenario itself runs in test_harness)."""

from __future__ import annotations

from typing import Any

from bench.soak import plateaus, svg

MB = 2**20


def _curve(edge: list[float], api: list[float]) -> list[dict[str, Any]]:
    return [
        {"t": 30.0 * i, "ws-edge": e * MB, "producers": a * MB} for i, (e, a) in enumerate(zip(edge, api, strict=True))
    ]


def test_a_curve_that_levels_off_is_a_plateau_and_one_that_keeps_growing_is_not() -> None:
    figures = plateaus(_curve([80, 90, 95, 96, 96, 97, 96, 97], [70, 80, 90, 100, 110, 120, 130, 140]))
    assert figures["ws-edge_plateau"] is True and figures["producers_plateau"] is False  # still climbing at the end
    assert figures["producers_rss_end_mb"] == 140 and figures["producers_rss_third_quarter_max_mb"] == 120
    peaked = plateaus(_curve([80, 90, 120, 100, 95, 96, 97, 96], [70, 71, 72, 73, 74, 74, 74, 74]))
    assert peaked["ws-edge_plateau"] is True and peaked["producers_plateau"] is True


def test_the_figure_draws_one_line_per_service_over_the_whole_run() -> None:
    drawn = svg(_curve([80, 90, 95], [70, 71, 72]))
    assert drawn.startswith("<svg") and drawn.count("<polyline") == 2
    assert ">ws-edge<" in drawn and ">producers<" in drawn and ">1.0<" in drawn  # the last tick: a minute
