"""Backfill: turn a private AI fleet into a cloud."""

__version__ = "0.1.0"
