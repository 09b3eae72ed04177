"""The JavaScript client installs as docs/client.md says: ``npm pack`` of ws_edge/web, ``npm install`` of the
tarball into an app (offline: npm's cache, filled by ``npm ci``), then both entry points import in Node; the React
entry point needs ``react`` resolvable, as a bundler or an import map provides."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "ws_edge" / "web"
NPM_QUIET = ["--no-audit", "--no-fund", "--loglevel=error", "--offline"]


def _run(*argv: str, cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


def _import(app: Path, specifier: str) -> subprocess.CompletedProcess[str]:
    script = f"import({json.dumps(specifier)}).then((m) => console.log(JSON.stringify(Object.keys(m).sort())))"
    return subprocess.run(
        ["node", "--input-type=module", "-e", script], cwd=app, capture_output=True, text=True, check=False
    )


def test_the_packed_client_installs_and_both_entry_points_import(tmp_path: Path) -> None:
    guide = (ROOT / "docs/client.md").read_text()
    assert "npm pack ./ws_edge/web" in guide and "npm install ./locstream-client-" in guide
    packed = _run("npm", "pack", str(WEB), "--pack-destination", str(tmp_path), "--loglevel=error", cwd=tmp_path)
    tarball = tmp_path / packed.strip().splitlines()[-1]
    assert re.fullmatch(r"locstream-client-[\d.]+\.tgz", tarball.name) and tarball.exists()

    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "dispatch-app", "private": True, "type": "module"}))
    _run("npm", "install", *NPM_QUIET, str(tarball), cwd=app)
    client = _import(app, "locstream-client")
    assert client.returncode == 0, client.stderr
    assert "LocstreamClient" in json.loads(client.stdout)

    # The hook without React to resolve: refused by its bare specifier, as a browser without an import map would.
    hook = _import(app, "locstream-client/react")
    assert hook.returncode != 0 and "react" in hook.stderr and "ERR_MODULE_NOT_FOUND" in hook.stderr
    react = WEB / "node_modules/react"
    assert react.exists(), "npm ci --prefix ws_edge/web (make test does) installs React for this test"
    (app / "node_modules/react").symlink_to(react)  # what a React app has already
    hook = _import(app, "locstream-client/react")
    assert hook.returncode == 0, hook.stderr
    assert "useTechnicianLocations" in json.loads(hook.stdout)
