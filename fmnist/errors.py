"""Errors the user can fix.

``train.py`` prints these as a single message and exits non-zero, without a
traceback: the message itself must say what went wrong and what to do.
"""


class FmnistError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class DatasetNotFoundError(FmnistError):
    """Fashion-MNIST is in none of the places we look, and could not be downloaded."""


class CorruptDatasetError(FmnistError):
    """A dataset file exists but is not a valid Fashion-MNIST IDX file."""


class ConfigError(FmnistError):
    """A configuration value is out of range or names an unknown choice."""
