"""The pure core's per-fix rules run compiled (mypyc, ``launch/compile_domain.py``) wherever ``make`` built them, only
from the sources as they are, and the same sources pass the same tests uncompiled."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import domain
from domain import COMPILED_MODULES, ROOT, SOURCES_FILE, build_is_current, compiled_digest


def test_the_rules_run_compiled_here() -> None:
    # make builds them before any test (Makefile: compile); a run without the build fails here, saying so.
    assert domain.COMPILED, "no current build of the compiled rules: run make compile"
    for name in COMPILED_MODULES:
        module = importlib.import_module(f"domain.{name}")
        assert module.__file__ is not None and module.__file__.endswith(".so"), module.__file__
        assert Path(module.__file__).is_relative_to(ROOT / "build" / "mypyc"), module.__file__


def test_a_build_is_used_only_when_made_from_the_sources_as_they_are(tmp_path: Path) -> None:
    assert not build_is_current(tmp_path)  # no build
    (tmp_path / SOURCES_FILE).write_text("0" * 64)
    assert not build_is_current(tmp_path)  # a build of other sources (an edited module): never shadows it
    (tmp_path / SOURCES_FILE).write_text(compiled_digest())
    assert build_is_current(tmp_path)


def test_the_same_rules_uncompiled_pass_the_domain_tests() -> None:
    env = {**os.environ, "LOCSTREAM_COMPILED": "0"}
    check = "import domain, domain.stays; assert not domain.COMPILED and domain.stays.__file__.endswith('.py')"
    subprocess.run([sys.executable, "-c", check], check=True, env=env, cwd=ROOT)
    tests = [
        str(path) for path in sorted((ROOT / "tests" / "domain").glob("test_*.py")) if path.name != Path(__file__).name
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *tests],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
