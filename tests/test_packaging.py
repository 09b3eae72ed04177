"""pyproject.toml declares what the code needs: every third-party module a package imports is a dependency of the
extra that package belongs to, and the bounds admit only versions the code runs on."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from launch.keycloak import MIN_JAVA
from tests.test_layers import LAYERS

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OURS = set().union(*LAYERS)
RUNTIME = OURS - {"bench"}  # what the image installs (pip install ".[parquet]")
BUILD_TOOLS = {"launch/compile_domain.py": "compile"}  # run by make, never by a service: their extra's


def _requirements(*extras: str) -> dict[str, Requirement]:
    lines = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        lines += PYPROJECT["project"]["optional-dependencies"][extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def _third_party_imports(packages: set[str], files: set[str] | None = None) -> dict[str, set[str]]:
    """Distribution -> the files that import it (at module level or inside a function); the build tools' only when
    ``files`` names them."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            name = str(path.relative_to(ROOT))
            if name not in files if files is not None else name in BUILD_TOOLS:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in OURS or top in sys.stdlib_module_names or top == "__future__":
                        continue
                    for distribution in owners.get(top, [top]):
                        found.setdefault(canonicalize_name(distribution), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_module_the_services_import_is_a_declared_dependency() -> None:
    declared = set(_requirements("parquet"))  # the image's install
    missing = {dist: files for dist, files in _third_party_imports(RUNTIME).items() if dist not in declared}
    assert not missing, f"imported by the services but not in [project.dependencies]: {missing}"


def test_every_module_a_build_tool_imports_is_in_its_extra() -> None:
    for tool, extra in BUILD_TOOLS.items():
        declared = set(_requirements(extra))
        imported = _third_party_imports(RUNTIME, {tool})
        assert imported and set(imported) <= declared, (tool, imported)


def test_every_module_the_benchmarks_import_is_in_the_bench_extra() -> None:
    declared = set(_requirements("parquet", "bench"))
    missing = {dist: files for dist, files in _third_party_imports({"bench"}).items() if dist not in declared}
    assert not missing, f"imported by bench/ but not in the bench extra: {missing}"


def test_uvicorn_is_bounded_to_the_versions_whose_private_classes_serve_subclasses() -> None:
    # locstream/serve.py subclasses uvicorn's httptools and websockets protocols, first shaped as it uses them in 0.35.
    specifier: SpecifierSet = _requirements()["uvicorn"].specifier
    assert not specifier.contains("0.34.3"), "serve.py needs uvicorn >= 0.35"
    assert specifier.contains(version("uvicorn")), "the installed uvicorn is the one tested"
    assert not specifier.contains("1.0.0"), "a new minor may rename what serve.py subclasses: bound it above"


def test_the_readme_asks_for_the_java_keycloak_needs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"for `make test` Java {MIN_JAVA}+" in " ".join(readme.split())  # Keycloak's floor; the broker runs on 17
