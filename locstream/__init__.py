"""Shared plumbing of locstream: settings, auth (HS256 or an identity provider's JWKS), Kafka adapters, the HTTP
service shell and the server."""
