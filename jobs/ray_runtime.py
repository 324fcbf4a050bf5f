"""Starting or joining Ray, in one place. ``fsnet/`` never calls anything here."""

from __future__ import annotations

import logging
import os

import ray
import ray.data

from fsnet.config import RayConfig


def init_ray(cfg: RayConfig) -> None:
    """Join ``cfg.address`` (a cluster, or 'auto'), or start a local Ray in this process. A Ray already
    running in this process (tests, notebooks, the pipeline job) is used as it is."""
    if not ray.is_initialized():
        kwargs: dict = {"include_dashboard": cfg.dashboard, "logging_level": logging.WARNING}
        if cfg.address is not None:
            kwargs["address"] = cfg.address
        elif os.environ.get("RAY_ADDRESS"):  # inside a submitted job: join its cluster, whose size is not ours to set
            pass
        elif cfg.num_cpus is not None:
            kwargs["num_cpus"] = cfg.num_cpus
        ray.init(**kwargs)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-dataset INFO lines would bury our own output
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": we draw our own
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = cfg.progress_bars
    context.print_on_execution_start = False


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def one_block_each(tables: list) -> "ray.data.Dataset":
    """A dataset with exactly one block per Arrow table, in order. ``from_blocks`` (a DeveloperAPI) promises
    not to re-split blocks and computes their metadata in the driver; ``from_arrow`` runs a remote task per
    table for that, which costs seconds on a small cluster whose CPUs the actor pool is about to take."""
    return ray.data.from_blocks(tables)


def actor_pool(size: int) -> "ray.data.ActorPoolStrategy":
    """The compute strategy of a fixed pool of ``size`` actors (Ray 2.60's spelling; it moved between releases)."""
    return ray.data.ActorPoolStrategy(size=size)
