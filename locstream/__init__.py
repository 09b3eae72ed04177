"""Shared plumbing of locstream: CLI, settings, auth, Kafka adapters and the local broker."""
