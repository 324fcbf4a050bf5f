"""Catalog rows -> embedding rows on a pool of Ray Data actors: the one Ray pipeline piece that train (memory block,
stage-3 features), index and evaluate (queries) all run. It lives here, not in a job, so that a job
imports ``fsnet/``, ``eval/`` and the shared modules of ``jobs/``, never another job.

The piece takes a Ray Dataset and returns one (lazy: nothing runs until the job writes or iterates it); the callable
class it maps with lives in ``fsnet/`` (``fsnet.embedding.EmbedImages``), which never starts Ray. A few images (up to
``index.in_process_max``: a re-index's delta, a small training split's memory stage), and any number on a cluster where
the pool would be one CPU actor, are embedded by the same class in the job's own process instead (``embed_here``,
``embeds_here``): Ray's and the pool's start cost more than they do.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import ray

from fsnet.catalog.manifest import ShardInfo
from fsnet.catalog.reader import Catalog
from fsnet.config import Config
from fsnet.embedding import EmbedImages
from fsnet.fingerprint import short_fingerprint
from fsnet.model import load_model
from fsnet.storage import Storage
from jobs.ray_runtime import actor_pool, init_ray, model_actors, pool_is_one_cpu_actor
from jobs.trunk_cache import existing_trunk_cache


def embed_rows(
    cfg: Config,
    storage: Storage,
    model_url: str,
    catalog: Catalog,
    rows: "ray.data.Dataset",
    with_shard: bool = False,
    image_size: int | None = None,
) -> "ray.data.Dataset":
    """Catalog rows (id, image, labels, ...) -> embedding rows, on a pool of EmbedImages actors (one model load
    each; their count and threads: ``model_actors``).
    ``image_size``: the trained model's (index, evaluate), so that a re-index run with another config (the default
    224 px on a 64 px model) embeds as the first run did; cfg.model.image_size when None (training). Rows with
    ``catalog_shard`` (``Catalog.dataset(with_shard=True)``) of a model whose trunk is the cached frozen trunk are
    embedded from the cached maps (fsnet/trunk_features.py): the same figures, without decoding or the trunk."""
    gpus, actors, threads = model_actors(cfg.index.actors)
    return rows.map_batches(
        EmbedImages,
        fn_constructor_kwargs=embed_images_kwargs(cfg, storage, model_url, catalog, with_shard, image_size, threads),
        batch_size=cfg.index.batch_size,
        batch_format="numpy",
        compute=actor_pool(actors),
        num_gpus=gpus_per_actor(gpus, actors),
    )


def embeds_here(cfg: Config, images: int) -> bool:
    """Whether a job embeds ``images`` in its own process (``embed_here``) rather than on the actor pool: up to
    index.in_process_max of them, whose pool would take longer to start than to finish, and any number where the pool
    would be one actor on CPUs (a cluster of two CPUs and no GPU: this process's work on its own threads, plus the
    pool's start). It starts Ray to ask the second. index.in_process_max 0: always the pool."""
    if images <= cfg.index.in_process_max:
        return True
    if not cfg.index.in_process_max:
        return False
    init_ray(cfg.ray)
    return pool_is_one_cpu_actor(cfg.index.actors)


def embed_here(
    cfg: Config,
    storage: Storage,
    model_url: str,
    catalog: Catalog,
    split: str | None,
    shards: Sequence[ShardInfo],
    image_size: int | None = None,
    keep: np.ndarray | None = None,
    advance: Callable[[int], None] = lambda rows: None,
) -> Iterator[tuple[ShardInfo, pa.Table]]:
    """(shard, its embedding rows) for each of ``shards`` with rows of ``split`` (all rows when None; ``keep``: only
    these ids), embedded in this process by one EmbedImages, without Ray: the rows embed_rows' pool would write (their
    ``catalog_shard`` is the shard's, and left out). ``advance``: told each batch's row count (a progress bar)."""
    embed = EmbedImages(**embed_images_kwargs(cfg, storage, model_url, catalog, True, image_size, threads=None))
    columns = ["id", "image", *catalog.schema.names]
    for shard in shards:
        tables = []
        for batch in catalog.batches(split, columns, cfg.index.batch_size, [shard.fingerprint]):
            if keep is not None:
                wanted = np.isin(batch["id"].astype(str), keep)
                batch = {name: values[wanted] for name, values in batch.items()}
            if not len(batch["id"]):
                continue
            batch["catalog_shard"] = np.full(len(batch["id"]), short_fingerprint(shard.fingerprint), object)
            tables.append(embed(batch))
            advance(len(batch["id"]))
        if tables:
            yield shard, pa.concat_tables(tables).drop_columns(["catalog_shard"])


def embed_images_kwargs(
    cfg: Config,
    storage: Storage,
    model_url: str,
    catalog: Catalog,
    with_shard: bool,
    image_size: int | None,
    threads: int | None,
) -> dict:
    """EmbedImages' arguments, the same on a pool's actors and in a process that embeds a few images itself: a
    frozen-trunk model reads its trunk's maps from the cache instead of decoding (EmbedImages checks the weights)."""
    size = image_size or cfg.model.image_size
    model = load_model(model_url, storage)
    trunk = existing_trunk_cache(cfg, storage, catalog, model.cfg, size, tuned_blocks=model.backbone.tuned_blocks)
    return dict(
        model_url=model_url,
        storage=storage,
        image_size=size,
        passthrough=[*catalog.schema.names, *(["catalog_shard"] if with_shard else [])],
        gpu_decode=cfg.index.gpu_decode,
        trunk_cache=trunk.url if trunk is not None else None,
        threads=threads,
    )


def gpus_per_actor(gpus: int, actors: int) -> float:
    """A whole GPU per embed actor, or an equal share where index.actors asks for more actors than there are GPUs
    (two on one GPU overlap one's CPU work, reading batches and building the output table, with the other's decode
    and model); without the share such a pool waits for GPUs that never come. 0 on a CPU cluster."""
    if not gpus:
        return 0
    return 1 / math.ceil(actors / gpus) if actors > gpus else 1
