"""An identity provider's signing keys, fetched from its JWKS and cached (``LOCSTREAM_JWT_JWKS_URL``).

``signing_key(kid, alg)`` gives the key a token names, ready to verify with, or raises:

- the set is fetched on first use, again when it is older than ``max_age``, and again when a token names a
  ``kid`` the set lacks (a rotation), but never twice within ``refetch_interval``: a flood of made-up ``kid``s
  costs the provider one request per interval. Concurrent callers share one fetch.
- a fetch has one deadline for connecting, the headers and the body, reads at most ``MAX_JWKS_BYTES``, follows
  no redirect, and takes only signing keys (``use`` absent or ``sig``) of type RSA or EC with a ``kid``. A set
  that is down, slow, garbage or empty is an ``UnavailableKeysError`` when no keys are at hand: the token is
  refused, never accepted. When keys are at hand, they stay in use and the failure is logged.
- a token's algorithm must be one of the configured ones and fit its key: RS*/PS* an RSA key, ES* an EC key of
  the matching curve, and the key's own ``alg`` when it names one. Nothing in a token's header but ``kid`` and
  ``alg`` is read: ``jku``, ``x5u`` and an embedded ``jwk`` are never followed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from jwt import PyJWK
from jwt.exceptions import PyJWTError

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 256 * 1024
MAX_KID_CHARS = 256
_CURVE_OF = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class UnavailableKeysError(Exception):
    """No signing keys at hand: the JWKS could not be fetched (``reason`` says why, for the log)."""


class UnknownKeyError(Exception):
    """The token's key is not in the set, or does not fit its algorithm; ``reason`` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def usable_keys(document: object) -> dict[str, Mapping[str, Any]]:
    """The signing keys of a JWKS document by ``kid``; ValueError when it is not a set with one."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError('not a JWKS (no "keys" list)')
    usable: dict[str, Mapping[str, Any]] = {}
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC") or key.get("use", "sig") != "sig":
            continue
        kid = key.get("kid")
        if isinstance(kid, str) and 0 < len(kid) <= MAX_KID_CHARS:
            usable[kid] = key
    if not usable:
        raise ValueError("the JWKS has no RSA or EC signing key with a kid")
    return usable


def secure_enough(url: str) -> bool:
    """HTTPS, or plain HTTP to this machine's loopback (a sidecar, a test)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.hostname or "") in ("127.0.0.1", "::1", "localhost")


def fits(key: Mapping[str, Any], alg: str) -> bool:
    """Whether ``alg`` may verify with ``key``: the key type (and curve) the algorithm needs, and the key's
    ``alg`` when it names one."""
    if key.get("alg") not in (None, alg):
        return False
    if alg.startswith(("RS", "PS")):
        return bool(key.get("kty") == "RSA")
    return key.get("kty") == "EC" and key.get("crv") == _CURVE_OF.get(alg)


async def fetch_jwks(url: str, seconds: float) -> object:
    """The parsed JWKS at ``url``; raises on a status other than 200, a body too large or not JSON, or time out."""
    async with asyncio.timeout(seconds), httpx.AsyncClient(timeout=seconds, follow_redirects=False) as client:
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
    return orjson.loads(body)


class JwksKeys:
    def __init__(
        self,
        url: str,
        algorithms: list[str],
        *,
        timeout: float,
        refetch_interval: float,
        max_age: float,
        fetch: Callable[[str, float], Awaitable[object]] = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, self.algorithms, self.timeout = url, frozenset(algorithms), timeout
        self.refetch_interval, self.max_age = refetch_interval, max_age
        self._fetch, self._clock = fetch, clock
        self._keys: dict[str, Mapping[str, Any]] = {}
        self._prepared: dict[tuple[str, str], PyJWK] = {}
        self._fetched_at: float | None = None  # of the keys at hand
        self._attempted_at: float | None = None
        self._fetching: asyncio.Task[None] | None = None
        self.fetches = 0  # attempts, for tests and the log

    async def signing_key(self, kid: str, alg: str) -> PyJWK:
        """The key to verify a token of ``kid`` and ``alg`` with; ``UnknownKeyError`` or ``UnavailableKeysError``."""
        if alg not in self.algorithms:
            raise UnknownKeyError(f"algorithm {alg} is not accepted")
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > self.max_age
        if stale or kid not in self._keys:
            await self._refresh()
        if not self._keys:
            raise UnavailableKeysError("no signing keys")
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKeyError("unknown signing key (kid)")
        if not fits(key, alg):
            raise UnknownKeyError(f"algorithm {alg} does not fit the signing key")
        prepared = self._prepared.get((kid, alg))
        if prepared is None:
            try:
                prepared = PyJWK(dict(key), algorithm=alg)
            except PyJWTError as exc:
                raise UnknownKeyError("the signing key is unusable") from exc
            self._prepared[(kid, alg)] = prepared
        return prepared

    async def _refresh(self) -> None:
        """Fetch the set unless one was tried within the refetch interval; one fetch for concurrent callers."""
        if self._fetching is None:
            if self._attempted_at is not None and self._clock() - self._attempted_at < self.refetch_interval:
                return
            self._attempted_at = self._clock()
            self._fetching = asyncio.create_task(self._replace_keys(), name="jwks-fetch")
            self._fetching.add_done_callback(self._fetched)
        await asyncio.shield(self._fetching)  # a caller that goes away does not cancel the others' fetch

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._fetching = None

    async def _replace_keys(self) -> None:
        self.fetches += 1
        try:
            keys = usable_keys(await self._fetch(self.url, self.timeout))
        except Exception as exc:  # any failure of the provider's: logged, the keys at hand kept
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)[:200] or type(exc).__name__
            log.warning("JWKS fetch from %s failed (%s); %d key(s) at hand", self.url, reason, len(self._keys))
            return
        if keys.keys() != self._keys.keys():
            log.info("JWKS from %s: %d signing key(s): %s", self.url, len(keys), ", ".join(sorted(keys)))
        self._prepared = {k: v for k, v in self._prepared.items() if keys.get(k[0]) == self._keys.get(k[0])}
        self._keys, self._fetched_at = keys, self._clock()
