"""A stand-in identity provider for the corpus tests: real RSA and EC keys, a real JWKS served over HTTP on
loopback, and misbehaviour on demand (down, slow, garbage, an empty set, a redirect, a body too large).

Keycloak itself is in ``tests/test_identity_provider.py``; this one is for the hostile cases a real provider
cannot be made to produce, and for running the HS256 corpus in JWKS mode without a JVM.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from schemas.claims import Role

Mode = Literal["ok", "down", "slow", "garbage", "empty", "redirect", "huge", "not-json-object"]


class JwksProvider:
    """Serves ``/certs``; ``mode`` says how; ``requests`` counts the fetches it answered (or dropped)."""

    def __init__(self, audience: str = "locstream") -> None:
        self.mode: Mode = "ok"
        self.requests = 0
        self.audience = audience
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_kid = f"rsa-{uuid.uuid4().hex[:8]}"
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self.ec_kid = f"ec-{uuid.uuid4().hex[:8]}"
        self.retired: list[tuple[str, rsa.RSAPrivateKey]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/certs"

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """What a service is configured with to take this provider's tokens, at its own fetch deadline (5 s): this
        server is a thread of the test process, and on a loaded machine a deadline of 1 s was missed once by a
        provider that was up (the edge then refused a valid token). The tests that measure the deadline set it."""
        return {
            "LOCSTREAM_JWT_JWKS_URL": self.url,
            "LOCSTREAM_JWT_ISSUER": self.issuer,
            "LOCSTREAM_JWT_AUDIENCE": self.audience,
        }

    def public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in [(self.rsa_kid, self.rsa_key), *self.retired]:
            keys.append({**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig", "alg": "RS256"})
        keys.append({**json.loads(ECAlgorithm.to_jwk(self.ec_key.public_key())), "kid": self.ec_kid, "use": "sig"})
        keys.append({"kty": "RSA", "kid": "enc-1", "use": "enc", "n": keys[0]["n"], "e": "AQAB"})  # never a signer
        return {"keys": keys}

    def rotate(self, keep_old: bool = True) -> None:
        """A new RSA signing key; the old one stays published (a provider's grace period) unless not ``keep_old``."""
        if keep_old:
            self.retired.append((self.rsa_kid, self.rsa_key))
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_kid = f"rsa-{uuid.uuid4().hex[:8]}"

    def claims(self, tenant: str, role: Role | str, sub: str = "someone", ttl: int = 600) -> dict[str, Any]:
        now = int(time.time())
        role_name = role.value if isinstance(role, Role) else role
        return {
            "sub": sub,
            "tenant_id": tenant,
            "role": role_name,
            "iat": now,
            "exp": now + ttl,
            "iss": self.issuer,
            "aud": self.audience,
        }

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None, *, algorithm: str = "RS256") -> str:
        """``claims`` signed with the provider's current RSA key (or its EC key for ES256), its ``kid`` in the
        header unless ``headers`` says otherwise."""
        key: Any = self.ec_key if algorithm == "ES256" else self.rsa_key
        kid = self.ec_kid if algorithm == "ES256" else self.rsa_kid
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid, **(headers or {})})

    def token(self, tenant: str, role: Role = Role.DISPATCHER, sub: str = "someone", ttl: int = 600) -> str:
        return self.sign(self.claims(tenant, role, sub, ttl))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                provider.requests += 1
                mode = provider.mode
                if mode == "down":
                    self.send_response(503)
                    self.end_headers()
                    return
                if mode == "slow":
                    time.sleep(5)  # past the verifier's 1 s deadline
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.end_headers()
                    return
                body = {
                    "ok": json.dumps(provider.jwks()).encode(),
                    "slow": json.dumps(provider.jwks()).encode(),
                    "garbage": b"<html>login required</html>",
                    "empty": b'{"keys": []}',
                    "not-json-object": b"[1, 2, 3]",
                    "huge": b'{"keys": [' + b'{"kty": "RSA"},' * 40_000 + b"{}]}",
                }[mode]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the verifier stopped reading: what it should do with a body too large

        return Handler

    @contextmanager
    def running(self) -> Iterator[JwksProvider]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
