"""Ray entry points, one file per job. Each job starts (or joins) Ray and wires the fsnet library into it.

Importing this package makes ``fsnet``, ``eval`` and ``cluster`` this project's packages from then on, in the driver
and in every Ray worker (a worker imports ``jobs`` first: its setup hook lives here, and a job's functions are
imported by reference). Ray puts the driver's working directory first on a worker's ``sys.path``, before each
task, and a plain folder there named like one of them (the checkout itself, cloned as ``fsnet``, when a command runs
beside it; an ``eval/`` folder of results) would otherwise be imported as an empty namespace package, and the job
would fail on its first ``fsnet.<name>``. So a finder placed before Python's own looks for these names where ``jobs``
itself was found, beside it, whatever ``sys.path`` says.
"""

import importlib.machinery as _machinery
import os as _os
import sys as _sys

_PACKAGES = ("fsnet", "eval", "cluster")
_HOME = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))  # the folder holding jobs/ and the others


class ProjectPackages:
    """A meta path finder: this project's top-level packages from ``_HOME``, before ``sys.path`` is searched."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in _PACKAGES:
            return None
        return _machinery.PathFinder.find_spec(name, [_HOME])


if not any(getattr(finder, "__name__", "") == ProjectPackages.__name__ for finder in _sys.meta_path):
    _sys.meta_path.insert(0, ProjectPackages)
for _name in _PACKAGES:  # imported already as a namespace package (it has no file): imported again, from _HOME
    if _name in _sys.modules and getattr(_sys.modules[_name], "__file__", None) is None:
        for _module in [m for m in _sys.modules if m == _name or m.startswith(f"{_name}.")]:
            del _sys.modules[_module]
