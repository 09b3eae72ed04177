"""``python -m launch.compile_domain``: the pure core's hot modules compiled to C with mypyc (part of mypy, which
the project already type-checks with), into ``build/mypyc/domain/``; ``make install`` runs it.

The rules that run once per fix in the derived-facts processor, the projector and the edge (the quality verdict,
the fences, stops and trips) are plain typed Python; compiled, the same source runs about twice as fast
(docs/benchmarks.md). Nothing changes in the source tree: ``domain/__init__.py`` puts the build first on the
package's path only when the build's ``SOURCES`` digest is that of the sources now (``domain.compiled_digest``), so
an edited module is never shadowed by a stale build; ``LOCSTREAM_COMPILED=0`` ignores the build altogether.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from domain import COMPILED_MODULES, ROOT, SOURCES_FILE, compiled_digest

BUILD = ROOT / "build" / "mypyc"


def compile_domain(out: Path = BUILD, force: bool = False) -> bool:
    """Build (or keep, when current) the compiled modules; True when a build was made."""
    digest = compiled_digest()
    manifest = out / "domain" / SOURCES_FILE
    if not force and manifest.is_file() and manifest.read_text() == digest:
        manifest.touch()  # current: make need not ask again until a source changes
        return False
    from mypyc.build import mypycify  # only the build needs mypyc's compiler
    from setuptools import setup  # type: ignore[import-untyped]

    os.chdir(ROOT)  # mypyc finds the modules, and what they import, from the repository's root
    with tempfile.TemporaryDirectory(prefix="locstream-mypyc-") as work:
        scratch = Path(work)
        sources = [f"domain/{name}.py" for name in COMPILED_MODULES]
        extensions = mypycify(sources, separate=True, target_dir=str(scratch / "c"), opt_level="3")
        setup(
            name="locstream-domain-compiled",
            ext_modules=extensions,
            script_args=["-q", "build_ext", "--build-lib", str(scratch / "lib"), "--build-temp", str(scratch / "tmp")],
        )
        (scratch / "lib" / "domain" / SOURCES_FILE).write_text(digest)
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(scratch / "lib"), out)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="build even when the build is current")
    args = parser.parse_args(argv)
    built = compile_domain(force=args.force)
    sys.stderr.write(f"domain: {'compiled' if built else 'the compiled build is current'} ({BUILD})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
