"""Entry points: what starts things, at the top of the layers (docs/architecture.md, "Layers"). Nothing imports it.

- ``cli.py``: the ``locstream`` command; ``device_cli.py``: its ``device`` subcommand;
- ``dev.py``: ``locstream dev``, every service in one process; ``simulate.py``: its simulated fleet;
- ``config_docs.py``: writes docs/configuration.md from the settings classes;
- ``broker.py``: local Kafka brokers from Maven Central's jars (``broker_config.py``: their configuration);
  ``postgres_local.py``: a throwaway PostgreSQL; ``keycloak.py``: a local Keycloak; ``certificates.py``: a CA and
  certificates for TLS on loopback.
"""
