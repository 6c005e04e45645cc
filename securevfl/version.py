"""The version of securevfl, in a module of its own so that any layer can record it without importing the API."""

__version__ = "0.1.0"
"""The installed version, recorded in every ``result.json`` (``version``)."""
