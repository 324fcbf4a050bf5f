"""Errors a user can act on. The CLI prints their message as one line and exits non-zero."""

from __future__ import annotations

from collections.abc import Iterator


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


def exception_chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what it wraps, outermost first: causes, contexts, an ExceptionGroup's members, and Ray's
    wrappers (a RayTaskError's ``cause``, a Ray Train WorkerGroupError's ``worker_failures``, a ControllerError's
    ``controller_failure``), read by attribute so that nothing here imports Ray."""
    seen: set[int] = set()
    todo: list[object] = [err]
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        failures = getattr(e, "worker_failures", None)
        todo += list(failures.values()) if isinstance(failures, dict) else []
        todo += list(getattr(e, "exceptions", None) or [])
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None), getattr(e, "controller_failure", None)]
