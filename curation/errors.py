"""Typed errors with the exit code the `curate` command line maps them to.

Exit codes: 0 success, 2 bad usage or bad input (the user can fix it), 1 any other failure.
"""

from __future__ import annotations


class CurateError(Exception):
    """Base class of every error this tool raises on purpose."""

    exit_code = 1


class InputError(CurateError):
    """Bad input or bad usage: a file, a row, an argument or a setting the user must fix."""

    exit_code = 2


class ConfigError(InputError):
    """The configuration file or a setting in it is invalid."""


class UnreadableFileError(InputError):
    """A whole input file cannot be read (missing, wrong format, no `text` column)."""


class StoreError(CurateError):
    """The store is unusable (newer schema than this code, corrupt vector shard)."""
