"""Starting or joining Ray, in one place. ``fsnet/`` never calls anything here.

Two fsnet commands on one machine (a cron re-index while a training runs) each start a local Ray of their own:
a local Ray lives and dies with the command that started it, so joining another command's Ray would fail when
that command ends. Every process of a local Ray is pinned to it (``RAY_ADDRESS`` set in each worker by
``jobs/worker_setup.py``), because Ray's state API, which Ray Train's controller and placement-group cleaner call from
inside the cluster, otherwise looks for "the" local Ray and fails when it finds two. To share one long-lived
cluster instead, ``ray start --head`` once and pass ``--set ray.address=auto`` (or the head's address).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import socket
import sys
import threading
import time
from typing import Any, Callable

import ray
import ray.data

from fsnet.config import RayConfig
from fsnet.errors import FsnetError
from jobs.progress import RowsDone
from jobs.worker_setup import quiet_logs

_stderr_filtered = False  # filter_driver_stderr() ran in this process
# Lines that Ray's processes write and the driver forwards: its C++ log lines ("[<time> E <pid> <tid>]
# core_worker.cc:<line>: Actor ... has constructor arguments in the object store ..."), the raylet's "N PYTHON
# worker processes have been started" on a small machine, Ray Train's INFO line for every report of every worker
# ("Reporting training result 3: TrainingReport(checkpoint=..., metrics={...}) from rank 1": its logger is named
# after its file, so it reaches the workers' root logger, not "ray.train"), and Ray Data's line at the end of every
# execution in a worker ("✔️  Dataset train_<id>_3 execution finished in 0.27 seconds": Ray Train's data pipeline,
# once per epoch), and the stack dump Ray's C++ failure handler writes when a process of it is killed mid-call at
# shutdown ("*** SIGSEGV received at time=...", "PC: @ 0x...", "    @ 0x7f... (unknown)"), and Python's
# faulthandler dump of a Ray Data task killed the same way ("(_fetch_parquet_file_info pid=N) Fatal Python error:
# Segmentation fault", its "File ..., line N in f" frames, which a traceback writes "line N, in f", and "Extension
# modules: ..."; seen on a loaded machine). They stay in Ray's session logs; fsnet's bars and lines say where a job is.
RAY_INTERNAL_LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWE] \d+ \d+\] \S+\.cc:\d+:|WARNING: \d+ PYTHON worker processes have been started"
    r"|Reporting training result \d+: TrainingReport\(|Dataset \S+ execution finished in [\d.]+ seconds"
    r"|^\*\*\* SIG[A-Z]+ received at time=|^PC: @ +0x[0-9a-f]+|^ +@ +0x[0-9a-f]+ "
    r"|^Fatal Python error: Segmentation fault|^(Current thread|Thread) 0x[0-9a-f]+ \(most recent call first\):"
    r'|^  File ".+", line \d+ in |^Extension modules: '
)
STDERR_DRAIN_S = 1.0  # at exit, what the stderr copier still holds is written within this (Ray's children may
# keep the pipe open, so it is not waited for beyond it)
REACH_TIMEOUT_S = 10  # a cluster's head answers a TCP connect in milliseconds; a busy one within seconds
FORWARDED_LOGS_HANDLER = "ray_print_logs"  # the name Ray 2.60 gives its handler of forwarded worker output


def local_system_config(num_cpus: int | None) -> dict[str, Any]:
    """Ray's settings for a local Ray we start: idle worker processes kept a minute, up to six even on fewer CPUs
    (Ray keeps one per CPU and kills the rest after 1 s). The processes that read and decode a stage's images have
    imported torch and fsnet; the next stage's, the next epoch's and the memory stage's tasks reuse them instead of
    starting new ones (a stage's first batch 11 s -> 5 s on 2 CPUs, docs/experiments.md). Each idle one holds
    ~0.3 GB."""
    return {
        "idle_worker_killing_time_threshold_ms": 60_000,
        "num_workers_soft_limit": max(6, num_cpus or os.cpu_count() or 1),
    }


def local_runtime_env() -> dict[str, Any]:
    """The runtime environment of a local Ray we start: every worker pinned to it (``jobs.worker_setup.pin_worker``),
    and Ray Train's controller polling its workers every 0.2 s instead of 2 s (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``,
    unless set): it notices a stage's start and end that much sooner, which on one machine is much of a short
    stage's overhead (docs/experiments.md); a cluster keeps its own setting."""
    interval = os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    return {
        "worker_process_setup_hook": "jobs.worker_setup.pin_worker",
        "env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": interval},
    }


class RayStartError(FsnetError):
    """Ray could not be started or joined."""


def init_ray(cfg: RayConfig) -> None:
    """Join ``cfg.address`` (a cluster, or 'auto'), or start a local Ray in this process. A Ray already
    running in this process (tests, notebooks, the pipeline job) is used as it is."""
    quiet_logs()
    if not ray.is_initialized():
        kwargs: dict = {"include_dashboard": cfg.dashboard, "logging_level": logging.ERROR, "log_to_driver": True}
        if cfg.address is not None:
            _check_reachable(cfg.address)
            kwargs["address"] = cfg.address
        elif os.environ.get("RAY_ADDRESS"):  # inside a submitted job: join its cluster, whose size is not ours to set
            pass
        else:  # a local Ray of our own, every worker pinned to it
            kwargs["runtime_env"] = local_runtime_env()
            kwargs["_system_config"] = local_system_config(cfg.num_cpus)
            if cfg.num_cpus is not None:
                kwargs["num_cpus"] = cfg.num_cpus
        filter_driver_stderr()
        local = cfg.address is None and not os.environ.get("RAY_ADDRESS")
        start_with_retries(lambda: ray.init(**kwargs), ray.shutdown, cfg.start_timeout_s if local else 0.0, cfg)
    filter_forwarded_logs()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = cfg.progress_bars
    context.print_on_execution_start = False
    context.use_datasource_v2 = cfg.parquet_datasource_v2  # Ray: read_parquet's reader (configs/default.yaml)
    follow_pipelines(context)


def follow_pipelines(context: "ray.data.DataContext") -> None:
    """Let fsnet's bars follow the Ray Data pipelines this process runs (jobs/progress.py ``rows_of``)."""
    if RowsDone not in context.custom_execution_callback_classes:
        context.custom_execution_callback_classes.append(RowsDone)  # Ray: called at each scheduling step


STARTUP_TIMEOUT = "timed out during startup"  # Ray's words when its raylet missed its fixed 30 s to register


def start_with_retries(
    start: Callable[[], Any],
    stop: Callable[[], Any],
    timeout_s: float,
    cfg: RayConfig,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """``start()`` (ray.init), tried again after Ray's own start-up timeout until ``timeout_s`` has passed (a local
    Ray: ray.start_timeout_s; 0 when joining a cluster, which one attempt answers); what did start is stopped after
    each failure. Any other failure, or the last timeout, is one RayStartError naming the setting."""
    began, attempts = clock(), 0
    while True:
        attempts += 1
        try:
            start()
            return
        except Exception as err:  # noqa: BLE001 - Ray's start-up timeout is a bare Exception
            stop()  # what did start (GCS, dashboard) goes with the failed start
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            waited = clock() - began
            if STARTUP_TIMEOUT in first and waited < timeout_s:
                continue
            where = f"ray.address={cfg.address}" if cfg.address else os.environ.get("RAY_ADDRESS") or "a local Ray"
            tried = (
                f" ({attempts} attempt(s) in {waited:.0f} s, ray.start_timeout_s={timeout_s:g}: raise it on a busy "
                f"machine, e.g. --set ray.start_timeout_s={max(2 * timeout_s, 300):g})"
                if STARTUP_TIMEOUT in first
                else ""
            )
            raise RayStartError(
                f"could not start or join {where}: {first[:300]}{tried} — or give Ray fewer CPUs (--set "
                "ray.num_cpus=1); to join a running cluster set ray.address (e.g. --set ray.address=auto)"
            ) from None


def _check_reachable(address: str) -> None:
    """An address of host:port (or ray://host:port) must accept a connection: Ray itself retries an unreachable
    GCS for many minutes, printing a warning every few seconds."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address.strip())
    if match is None:  # "auto", or a form Ray resolves itself
        return
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as err:
        raise RayStartError(
            f"ray.address={address}: nothing answers at {host}:{port} ({err.strerror or type(err).__name__}); "
            "is the cluster up (ray start --head / ray up)? Leave ray.address unset to start a local Ray"
        ) from None


def start_local_ray(num_cpus: int, dashboard: bool) -> None:
    """A local Ray of ``num_cpus`` CPUs for tests and benchmarks, pinned like the jobs' own."""
    quiet_logs()
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        logging_level=logging.ERROR,
        runtime_env=local_runtime_env(),
        _system_config=local_system_config(num_cpus),
    )
    filter_forwarded_logs()
    follow_pipelines(ray.data.DataContext.get_current())


def filter_driver_stderr() -> None:
    """Keep Ray's C++ log lines that this process itself writes (its core worker's errors, such as Ray Data's
    "Actor ... has constructor arguments in the object store" once per actor pool) out of the terminal: they go to
    file descriptor 2 directly, below Python. From here on fd 2 is a pipe that a thread copies to the terminal
    without the lines RAY_INTERNAL_LINE matches; Python's own writers (``sys.stderr``: rich, warnings, tracebacks)
    get the terminal itself, so that what they print and whether they see a terminal stay as they were. Once per
    process; undone at exit."""
    global _stderr_filtered
    if _stderr_filtered:
        return
    _stderr_filtered = True
    sys.stderr.flush()
    terminal = os.dup(2)  # the real stderr, kept for both sides
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(terminal, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)

    def copy() -> None:
        with open(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                kept = [line for line in lines if not RAY_INTERNAL_LINE.search(line.decode("utf-8", "replace"))]
                if kept:
                    os.write(terminal, b"\n".join(kept) + b"\n")
            if pending:
                os.write(terminal, pending)

    thread = threading.Thread(target=copy, name="fsnet-stderr", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # the pipe's last write end here closes: the thread copies what is left and ends
        thread.join(STDERR_DRAIN_S)

    atexit.register(restore)


def filter_forwarded_logs() -> None:
    """Keep what Ray's workers print (fsnet's own lines, Python tracebacks) but drop Ray's internal log lines
    (RAY_INTERNAL_LINE) from the driver's terminal. Two private paths of Ray 2.60 carry them: the dispatcher of
    forwarded worker output, and ``print_to_stdstream``, which the raylet's messages ("N PYTHON worker processes")
    reach directly; where a Ray release lacks either, its output is shown as before."""
    from ray._private import worker as ray_worker

    dispatcher = getattr(ray_worker, "global_worker_stdstream_dispatcher", None)
    handlers = dict(getattr(dispatcher, "handlers", None) or [])  # [(name, handler), ...]
    show = handlers.get(FORWARDED_LOGS_HANDLER)
    if show is not None and not getattr(show, "fsnet_filtered", False):
        dispatcher.remove_handler(FORWARDED_LOGS_HANDLER)
        dispatcher.add_handler(FORWARDED_LOGS_HANDLER, without_ray_lines(show))
    direct = getattr(ray_worker, "print_to_stdstream", None)
    if direct is not None and not getattr(direct, "fsnet_filtered", False):
        ray_worker.print_to_stdstream = without_ray_lines(direct)


def without_ray_lines(show: Any) -> Any:
    """``show(data, ...)`` of forwarded output ({"lines": [...], ...}) without the lines RAY_INTERNAL_LINE matches."""

    def filtered(data: dict, *args: Any, **kwargs: Any) -> None:
        # (blank ones too: fsnet's workers print nothing, Ray's dumps are spaced with them)
        lines = [line for line in data.get("lines", []) if line.strip() and not RAY_INTERNAL_LINE.search(line)]
        if lines:
            show({**data, "lines": lines}, *args, **kwargs)

    filtered.fsnet_filtered = True  # type: ignore[attr-defined]
    return filtered


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def model_actors(actors: int | None) -> tuple[int, int, int | None]:
    """(GPUs, actors, torch threads per actor) of a pool of actors that run a model over catalog rows (the embed
    pool, the trunk pass): one actor per GPU, or ``actors`` (index.actors; more than the GPUs share them); on CPU one
    per CPU but one, since the read tasks need a CPU or the pool starves them, and as they take little CPU (decoding
    runs in the actors) the actors' torch threads may use the core they leave: the CPUs over the actors each
    (2 cores: 1 actor x 2 threads). Threads None on GPUs: torch's own."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = actors or gpus or max(1, cluster_cpus() - 1)
    return gpus, count, None if gpus else max(1, cluster_cpus() // count)


def pool_is_one_cpu_actor(actors: int | None) -> bool:
    """Whether ``model_actors`` would make the pool one actor on CPUs (no GPU in the cluster; a machine of two
    cores, or index.actors 1): the work of this process on its own threads, plus the pool's start. Ray started."""
    gpus, count, _ = model_actors(actors)
    return not gpus and count == 1


def one_block_each(tables: list) -> "ray.data.Dataset":
    """A dataset with exactly one block per Arrow table, in order. ``from_blocks`` (a DeveloperAPI) promises
    not to re-split blocks and computes their metadata in the driver; ``from_arrow`` runs a remote task per
    table for that, which costs seconds on a small cluster whose CPUs the actor pool is about to take."""
    return ray.data.from_blocks(tables)


def actor_pool(size: int) -> "ray.data.ActorPoolStrategy":
    """The compute strategy of a fixed pool of ``size`` actors (Ray 2.60's spelling; it moved between releases)."""
    return ray.data.ActorPoolStrategy(size=size)
