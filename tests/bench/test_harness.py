"""The benchmark harness keeps working: every scenario at --size small against every system.

No timing is asserted (the machine is shared and noisy); what is asserted is that each scenario ran against
each system, produced its headline figure, and that locstream lost no frame while doing it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS
from bench.systems import SYSTEMS

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)  # every scenario in turn (about 4.5 minutes here), not one test's worth
def test_every_scenario_runs_small_against_every_system(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "all", "--size", "small", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [s["name"] for s in results["scenarios"]] == list(SCENARIOS)
    for scenario in results["scenarios"]:
        expected_systems = SCENARIOS[scenario["name"]].systems or SYSTEMS
        for point in scenario["points"]:
            assert set(point["systems"]) == set(expected_systems)
            for name, result in point["systems"].items():
                assert "error" not in result, (scenario["name"], name, result)
                assert scenario["headline"] in result["figures"], (scenario["name"], name)
            locstream_runs = point["systems"]["locstream"]["runs"]
            for run in locstream_runs:
                assert run.get("frames_lost", 0) == 0, (scenario["name"], run)
            if scenario["name"] == "latency":  # every client samples every frame here: the figure rests on them all
                for name, result in point["systems"].items():
                    for run in result["runs"]:
                        frames = run["events_accepted"] * point["params"]["clients"] - run["frames_lost"]
                        assert run["samples"] >= 0.95 * frames, (name, run)
    assert (tmp_path / "results.md").read_text().startswith("# Benchmark results (small)")
