"""The ingest API: turns authenticated location fixes into events on the Kafka topic."""
