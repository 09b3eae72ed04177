"""FastAPI dependencies of the ingest API, as ``Annotated`` aliases."""

from __future__ import annotations

from locstream.http import Claims as Claims
