"""The benchmark harness keeps working: every scenario at --size small against every system (``python -m bench all``
runs exactly these, ``bench/scenarios.py`` asserts that every registered scenario is in its order).

No timing is asserted (the machine is shared and noisy); what is asserted is that each scenario ran against
each system, produced its headline figure, and that locstream lost no frame while doing it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS
from bench.systems import SYSTEMS
from launch.prefork import ADDRESS_ENV, shared_launcher

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_scenario_runs_small_against_every_system(name: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    """One scenario a test (so that parallel test processes share them out), on the test broker; the services are
    forked from this test process's fork server (``launch/prefork.py``), as the other tests' are."""
    command = [sys.executable, "-m", "bench", name, "--size", "small", "--out", str(tmp_path)]
    done = subprocess.run(
        [*command, "--bootstrap", kafka_bootstrap],
        env={**os.environ, ADDRESS_ENV: shared_launcher().address},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    (scenario,) = results["scenarios"]
    assert scenario["name"] == name
    expected_systems = SCENARIOS[name].systems or SYSTEMS
    assert scenario["points"], name
    for point in scenario["points"]:
        assert set(point["systems"]) == set(expected_systems)
        for system, result in point["systems"].items():
            assert "error" not in result, (system, result)
            assert scenario["headline"] in result["figures"], system
        for run in point["systems"]["locstream"]["runs"]:
            assert run.get("frames_lost", 0) == 0, run
        if name == "latency":  # every client samples every frame here: the figure rests on them all
            for system, result in point["systems"].items():
                for run in result["runs"]:
                    frames = run["events_accepted"] * point["params"]["clients"] - run["frames_lost"]
                    assert run["samples"] >= 0.95 * frames, (system, run)
    assert (tmp_path / "results.md").read_text().startswith("# Benchmark results (small)")
