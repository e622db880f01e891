"""The shipped configuration, ``defaults.toml``: package data of ``dato_dist.conf``."""
