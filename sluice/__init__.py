"""sluice: a self-hosted pipeline for email engagement data."""

__version__ = "0.1.0"
