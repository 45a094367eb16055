"""Glue of kenshin-hub: typed settings, the CLI composition root and the local Kafka/registry runtime."""

__version__ = "0.1.0"
