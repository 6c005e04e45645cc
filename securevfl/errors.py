"""Exception types the command line turns into one clear error line (exit code 2).

Every user-facing failure (bad config, missing or corrupt data, impossible partition)
derives from :class:`SecureVFLError`, so the CLI can report it without a traceback while
genuine bugs still surface with one.
"""

from __future__ import annotations


class SecureVFLError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class ConfigError(SecureVFLError, ValueError):
    """A configuration is malformed, has unknown keys or asks for an impossible combination."""


class DataError(SecureVFLError, ValueError):
    """A data set is missing, corrupt, or cannot be partitioned as asked."""
