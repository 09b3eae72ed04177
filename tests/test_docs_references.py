"""The code the design docs name exists: a dotted name that starts with one of locstream's packages, modules or
top-level functions and classes resolves, a ``name()`` is a function of the code, and a file named is in the repo.
Names that are strings on the wire (topics, headers, subprotocols) are the code's string literals."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from bench.scenarios import SCENARIOS
from schemas.claims import Role
from tests.test_layers import LAYERS

ROOT = Path(__file__).resolve().parent.parent
# The design pages. (edge.md and devices.md also name JSON paths and runtime attributes, `setup.owntracks.url`,
# `app.state.websocket_takeover`, which read like code but are not names in it.)
PAGES = ["architecture.md", "projector.md", "geofences.md", "replay.md", "ingest.md"]
PACKAGES = set().union(*LAYERS)
SOURCES = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")]
FILE_SUFFIXES = (".py", ".md", ".json", ".js", ".mjs", ".conf", ".yaml", ".toml", ".sqlite3", ".pem", ".html")


def _code_names() -> tuple[dict[str, list[str]], set[str], str]:
    """Module basename -> dotted modules; every top-level and method ``def``/``class`` name; all the source text."""
    modules: dict[str, list[str]] = {}
    defined: set[str] = set()
    for path in SOURCES:
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules.setdefault(dotted.rsplit(".", 1)[-1], []).append(dotted)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
    return modules, defined, "\n".join(path.read_text() for path in SOURCES)


MODULES, DEFINED, SOURCE_TEXT = _code_names()


def _resolves(reference: str) -> bool:
    first, *rest = reference.split(".")
    candidates = [first] if first in PACKAGES else MODULES.get(first, [])
    for module_name in candidates:
        module = importlib.import_module(module_name)
        target: object = module
        for index, part in enumerate(rest):
            if hasattr(target, part):
                target = getattr(target, part)
                continue
            try:  # a submodule not imported by its package
                target = importlib.import_module(".".join([module_name, *rest[: index + 1]]))
            except ImportError:
                break
        else:
            return True
    return False  # a top-level function or class (no candidates): the rest would be an attribute it does not have


@pytest.mark.parametrize("page", PAGES)
def test_the_code_a_design_doc_names_exists(page: str) -> None:
    text = (ROOT / "docs" / page).read_text()
    dangling: list[str] = []
    for reference in set(re.findall(r"`([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)`", text)):
        if reference.endswith(FILE_SUFFIXES):
            if not any(path.name == reference.rsplit("/", 1)[-1] for path in ROOT.rglob(reference)):
                dangling.append(reference)
            continue
        if f'"{reference}"' in SOURCE_TEXT:
            continue  # a name on the wire (a topic, a header, a subprotocol)
        first = reference.split(".")[0]
        if (first in PACKAGES or first in MODULES or first in DEFINED) and not _resolves(reference):
            dangling.append(reference)
    for name in set(re.findall(r"`([a-z_][a-z0-9_]*)\(\)`", text)):
        if name not in DEFINED:
            dangling.append(f"{name}()")
    assert not dangling, f"docs/{page} names code that does not exist: {sorted(dangling)}"


ROLE_CHECKS = {"require_role", "refusal", "_may_write_for"}


def _role_checks() -> dict[str, set[str]]:
    """Action -> the roles allowed, from every role check in the code whose action is a literal."""
    checks: dict[str, set[str]] = {}
    for path in SOURCES:
        if path.relative_to(ROOT).parts[0] == "bench":
            continue  # the benchmark's peers check roles of their own
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ROLE_CHECKS):
                continue
            action = node.args[-1]
            if not (isinstance(action, ast.Constant) and isinstance(action.value, str)):
                continue  # the check's own definition, passing its argument on
            module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
            try:
                allowed = eval(ast.unparse(node.args[-2]), vars(module))  # a name or a | of names, ours
            except NameError:
                continue  # the roles are its caller's (a fresh token keeps the session's own roles)
            checks.setdefault(action.value, set()).update(role.value for role in allowed)
    return checks


def test_the_roles_table_is_the_role_checks_of_the_code() -> None:
    text = (ROOT / "docs/architecture.md").read_text()
    section = text[text.index("## Roles") :].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|`][^|]*?) \| (.*) \|$", section, flags=re.M)
    names = {role.value for role in Role}
    documented = {action: set(re.findall(r"`([a-z_]+)`", roles)) & names for action, roles in rows if action != "may"}
    checks = _role_checks()
    assert len(checks) >= 15
    assert documented == checks


def test_the_readme_names_every_package_every_bench_scenario_and_the_services_as_they_are() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    assert {package for package in PACKAGES if f"`{package}/`" not in layout} == set()
    bench = readme[readme.index("## Benchmarks") :].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([a-z0-9-]+)`", bench[bench.index("runs one scenario") : bench.index("against")]))
    assert listed == {*SCENARIOS, "all"}
    flat = " ".join(readme.split())
    for stale in ("three services", "all three", "two of each"):
        assert stale not in flat, stale
