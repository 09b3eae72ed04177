"""Entry points: what starts things, at the top of the layers (docs/architecture.md, "Layers"). Nothing imports it.

- ``cli.py``: the ``locstream`` command;
- ``dev.py``: ``locstream dev``, the three services in one process; ``simulate.py``: its simulated fleet;
- ``config_docs.py``: writes docs/configuration.md from the settings classes;
- ``broker.py``: a local Kafka broker from Maven Central's jars; ``postgres_local.py``: a throwaway PostgreSQL.
"""
