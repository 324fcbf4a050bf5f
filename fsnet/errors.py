"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""


class FsnetError(Exception):
    """Base class: the message names the file, key or value at fault."""


class ConfigError(FsnetError):
    """A config file or --set override is wrong (unknown key, wrong type, bad value)."""


class StorageError(FsnetError):
    """A URL cannot be reached or read."""


class SourceError(FsnetError):
    """A source catalog (folder + table, CelebA files) cannot be packed as given."""


class CatalogError(FsnetError):
    """A packed catalog is missing, inconsistent or does not hold what was asked for."""


class ModelError(FsnetError):
    """A model cannot be built or loaded as configured (weights missing, wrong checkpoint)."""
