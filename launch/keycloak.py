"""A real Keycloak (the identity provider the JWKS tests and the docs' example use), from Maven Central.

``org.keycloak:keycloak-quarkus-dist`` is a zip of about 160 MB; ``mvn dependency:copy`` fetches it into the local
Maven repository once, and it is unpacked under ``deploy/keycloak/target``. Keycloak needs Java 21 or newer:
``LOCSTREAM_KEYCLOAK_JAVA_HOME``, else ``JAVA_HOME``, else the newest JDK under ``/usr/lib/jvm`` that is new enough.

It runs ``start-dev`` on 127.0.0.1 with an in-memory database, so instances share nothing and leave nothing; the
realm is imported through the admin API from ``deploy/keycloak/locstream-realm.json`` (under another name too,
for a second realm whose tokens must be refused).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VERSION = "26.4.0"
REALM_FILE = PROJECT_ROOT / "deploy" / "keycloak" / "locstream-realm.json"
TARGET = PROJECT_ROOT / "deploy" / "keycloak" / "target"
MIN_JAVA = 21


class KeycloakError(RuntimeError):
    """Keycloak could not be resolved, started or configured."""


def java_major(java_home: Path) -> int | None:
    """The major version of the JDK at ``java_home``, or None when there is none."""
    java = java_home / "bin" / "java"
    if not java.exists():
        return None
    result = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)', result.stderr)
    return int(found.group(1)) if found else None


def java_home() -> Path:
    """A JDK new enough for Keycloak (see the module's docstring); ``KeycloakError`` naming what was tried."""
    named = [os.environ.get("LOCSTREAM_KEYCLOAK_JAVA_HOME"), os.environ.get("JAVA_HOME")]
    candidates = [Path(p) for p in named if p]
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        candidates += sorted((p for p in jvm.iterdir() if p.is_dir()), reverse=True)
    for candidate in candidates:
        major = java_major(candidate)
        if major is not None and major >= MIN_JAVA:
            return candidate
    tried = ", ".join(str(c) for c in candidates) or "nothing"
    raise KeycloakError(f"Keycloak needs Java {MIN_JAVA}+; set LOCSTREAM_KEYCLOAK_JAVA_HOME (tried: {tried})")


def resolve_dist() -> Path:
    """The unpacked distribution (its ``bin/kc.sh``), fetched and unpacked on first use."""
    home = TARGET / f"keycloak-{VERSION}"
    if (home / "bin" / "kc.sh").exists():
        return home
    if shutil.which("mvn") is None:
        raise KeycloakError("Maven (mvn) is needed to fetch Keycloak from Maven Central")
    TARGET.mkdir(parents=True, exist_ok=True)
    artifact = f"org.keycloak:keycloak-quarkus-dist:{VERSION}:zip"
    result = subprocess.run(
        ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={TARGET}"],
        capture_output=True,
        text=True,
        check=False,
    )
    archive = TARGET / f"keycloak-quarkus-dist-{VERSION}.zip"
    if result.returncode != 0 or not archive.exists():
        raise KeycloakError(f"mvn could not fetch {artifact}:\n{result.stdout}\n{result.stderr}")
    partial = TARGET / f"unpacking-{os.getpid()}"
    with zipfile.ZipFile(archive) as dist:
        dist.extractall(partial)
    (partial / f"keycloak-{VERSION}" / "bin" / "kc.sh").chmod(0o755)
    os.replace(partial / f"keycloak-{VERSION}", home)  # whole or not at all, should two runs race
    shutil.rmtree(partial, ignore_errors=True)
    archive.unlink()
    return home


@dataclass(frozen=True)
class KeycloakConfig:
    port: int
    management_port: int
    log_file: Path
    admin_user: str = "admin"
    admin_password: str = "admin-password-for-tests-only"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def issuer(self, realm: str = "locstream") -> str:
        return f"{self.url}/realms/{realm}"

    def jwks_url(self, realm: str = "locstream") -> str:
        return f"{self.issuer(realm)}/protocol/openid-connect/certs"

    def token_url(self, realm: str = "locstream") -> str:
        return f"{self.issuer(realm)}/protocol/openid-connect/token"


def start(config: KeycloakConfig, *, timeout: float = 180.0) -> subprocess.Popen[bytes]:
    """Start Keycloak and wait until its master realm answers; ``KeycloakError`` (the process stopped) if not."""
    home, jdk = resolve_dist(), java_home()
    env = {
        **os.environ,
        "JAVA_HOME": str(jdk),
        "PATH": f"{jdk / 'bin'}:{os.environ.get('PATH', '')}",
        "KC_BOOTSTRAP_ADMIN_USERNAME": config.admin_user,
        "KC_BOOTSTRAP_ADMIN_PASSWORD": config.admin_password,
    }
    args = [
        str(home / "bin" / "kc.sh"),
        "start-dev",
        "--http-host=127.0.0.1",
        f"--http-port={config.port}",
        f"--http-management-port={config.management_port}",
        "--db=dev-mem",
    ]
    log = config.log_file.open("ab")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise KeycloakError(f"Keycloak exited with {process.returncode}; see {config.log_file}")
        try:
            if httpx.get(f"{config.url}/realms/master", timeout=2.0).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(process)
    raise KeycloakError(f"Keycloak did not answer within {timeout:.0f} s; see {config.log_file}")


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


class Admin:
    """The few admin-API calls the tests and ``locstream keycloak`` make, as the bootstrap admin."""

    def __init__(self, config: KeycloakConfig) -> None:
        self.config = config

    def _headers(self) -> dict[str, str]:
        response = httpx.post(
            self.config.token_url("master"),
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": self.config.admin_user,
                "password": self.config.admin_password,
            },
            timeout=30.0,
        )
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def import_realm(self, realm: str = "locstream") -> None:
        """The example realm from ``REALM_FILE``, under the name ``realm``."""
        representation: dict[str, Any] = json.loads(REALM_FILE.read_text())
        representation["realm"] = realm
        response = httpx.post(
            f"{self.config.url}/admin/realms", json=representation, headers=self._headers(), timeout=60.0
        )
        if response.status_code != 201:
            raise KeycloakError(f"importing realm {realm}: HTTP {response.status_code} {response.text[:300]}")

    def set_token_lifespan(self, seconds: int, realm: str = "locstream") -> None:
        """Access tokens of ``realm`` issued from now on live ``seconds``."""
        response = httpx.put(
            f"{self.config.url}/admin/realms/{realm}",
            json={"accessTokenLifespan": seconds},
            headers=self._headers(),
            timeout=30.0,
        )
        if response.status_code != 204:
            raise KeycloakError(f"setting the token lifespan of {realm}: HTTP {response.status_code}")

    def rotate_keys(self, realm: str = "locstream", priority: int = 1000) -> None:
        """A new RSA signing key of higher priority than the realm's others: new tokens are signed with it."""
        component = {
            "name": f"rsa-rotated-{priority}",
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "config": {"priority": [str(priority)], "enabled": ["true"], "active": ["true"], "algorithm": ["RS256"]},
        }
        response = httpx.post(
            f"{self.config.url}/admin/realms/{realm}/components", json=component, headers=self._headers(), timeout=30.0
        )
        if response.status_code != 201:
            raise KeycloakError(f"rotating the keys of {realm}: HTTP {response.status_code} {response.text[:300]}")


def password_token(config: KeycloakConfig, username: str, password: str, realm: str = "locstream") -> str:
    """An access token for a user of the example realm (its public map client, password grant)."""
    form = {"grant_type": "password", "client_id": "locstream-map", "username": username, "password": password}
    response = httpx.post(config.token_url(realm), data=form, timeout=30.0)
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def client_token(config: KeycloakConfig, client_id: str, secret: str, realm: str = "locstream") -> str:
    """An access token for a confidential client of the example realm (client credentials grant)."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    response = httpx.post(config.token_url(realm), data=form, timeout=30.0)
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token
