"""What runs in every worker process of a local Ray that fsnet starts (``worker_process_setup_hook``), and in the
driver: the process pinned to its own cluster, Ray's notes kept out of the terminal.

Kept apart from jobs/ray_runtime.py so that a worker imports only this: every process of a local Ray runs the hook
at its start (Ray Train's controller and helpers, Ray Data's tasks and actors: ~60 processes in one small training
run), and ray_runtime's imports (Ray Data, the config tree) would cost each of them ~0.7 s of CPU it never uses.
"""

from __future__ import annotations

import logging
import os
import warnings

import ray

QUIET_LOGGERS = {
    # start-up notes (token authentication, dashboard URL, worker counts) that ask nothing of the user
    "ray": logging.ERROR,
    "ray.data._internal.progress": logging.ERROR,  # "progress bars disabled": we draw our own
    "ray.train": logging.WARNING,
    "faiss.loader": logging.WARNING,  # "Could not load library with AVX2 support" is how faiss picks its build
}


def pin_worker() -> None:
    """Runs in every worker process of a local Ray we started (worker_process_setup_hook): anything in it that
    looks for "the" Ray cluster (the state API) finds this one, not another command's; and the same loggers
    are quiet there as in the driver."""
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    quiet_logs()


def quiet_logs() -> None:
    """Ray's notes below ERROR stay out of the user's terminal (they remain in Ray's session logs); errors, and
    everything fsnet prints, still show."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    # Ray Data logs to its own file (session_latest/logs/ray-data.log) and to the console. On the console its
    # per-dataset INFO lines would bury our own output, and a failed task's traceback (logged by the driver's
    # executor and by the worker, ~180 lines for one damaged shard) reaches the user anyway as the job's exception,
    # which jobs/command.py prints as one line: the console handler shows nothing, the file keeps everything.
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and "File" not in type(handler).__name__:
            handler.setLevel(logging.CRITICAL)
    for logger in (logging.getLogger(), logging.getLogger("ray")):
        for handler in logger.handlers:
            if not any(isinstance(f, RayNotesFilter) for f in handler.filters):
                handler.addFilter(RayNotesFilter())
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")  # Ray's deprecations of its own calls


class RayNotesFilter(logging.Filter):
    """Drops records below ERROR logged from Ray's own package: inside the cluster Ray names some loggers after
    their file (Ray Train's "Reporting training result ..." and "Failed to send resource request", safe to ignore
    in its own words), so a level on the "ray" logger does not reach them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or f"{os.sep}ray{os.sep}" not in record.pathname
