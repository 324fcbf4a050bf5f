"""The trunk feature cache (fsnet/trunk_features.py) found or brought up to date: the Ray Data piece that train
(``train.trunk: frozen``), the embed path and evaluate (the probe baselines) share, so it lives here and not in a job.

Where: ``cache.trunk`` when set, else ``trunk-features/`` beside the catalog (a catalog is packed once and trained,
indexed and evaluated many times: its cache serves every run, variant and re-run of it). The catalog's shards that
the entry does not list yet (all of them the first time; a re-pack's changed ones later) are computed by a pool of
Ray Data actors and written one folder per shard; then the manifest lists them.
"""

from __future__ import annotations

import posixpath
import time

from fsnet.catalog.reader import Catalog
from fsnet.config import Config, ModelConfig
from fsnet.fingerprint import short_fingerprint
from fsnet.storage import Storage, join
from fsnet.trunk_features import (
    MANIFEST,
    PARTITION,
    TrunkCache,
    TrunkFeatures,
    TrunkManifest,
    pretrained_fingerprint,
    shard_entries,
    trunk_shapes,
)
from jobs.command import console
from jobs.progress import pipeline_bar
from jobs.ray_runtime import actor_pool, model_actors

READ_CPUS = 0.25  # reading a shard and writing its features are I/O and little CPU
ROWS_PER_CALL = 32  # images per trunk call: the channels-last trunk's fastest CPU batch (bench/trunk_bench.py)

_announced: set[str] = set()  # cache entries this process has named already


def cache_url(cfg: Config, catalog: Catalog, model: ModelConfig, image_size: int, tuned_blocks: int = 0) -> str:
    """The entry of ``model``'s pretrained trunk at ``image_size`` for ``catalog`` (which may not exist yet); with
    ``tuned_blocks``, the one whose maps stop before the trunk's last blocks."""
    root = cfg.cache.trunk or join(posixpath.dirname(catalog.url.rstrip("/")), "trunk-features")
    tuned = f"tuned{tuned_blocks}-" if tuned_blocks else ""
    fingerprint = pretrained_fingerprint(model.backbone, model.weights, tuned_blocks)
    return join(root, f"{model.backbone}-{image_size}px-{tuned}{fingerprint}")


def existing_trunk_cache(
    cfg: Config, storage: Storage, catalog: Catalog, model: ModelConfig, image_size: int, tuned_blocks: int = 0
) -> TrunkCache | None:
    """The entry when it holds every shard of ``catalog``, else None (nothing is computed)."""
    url = cache_url(cfg, catalog, model, image_size, tuned_blocks)
    if not storage.exists(join(url, MANIFEST)):
        return None
    cache = TrunkCache.open(url, storage)
    wanted = {short_fingerprint(s.fingerprint) for s in catalog.manifest.shards}
    return cache if wanted <= set(cache.manifest.shards) else None


def trunk_cache(
    cfg: Config,
    storage: Storage,
    catalog: Catalog,
    image_size: int,
    model: ModelConfig | None = None,
    tuned_blocks: int = 0,
) -> TrunkCache:
    """The entry of (``model`` or cfg.model's pretrained trunk, ``image_size``, ``tuned_blocks``) holding every
    shard of ``catalog``: found, or its missing shards computed now."""
    model = model or cfg.model
    url = cache_url(cfg, catalog, model, image_size, tuned_blocks)
    manifest = TrunkCache.open(url, storage).manifest if storage.exists(join(url, MANIFEST)) else None
    done = set(manifest.shards) if manifest else set()
    missing = [s.fingerprint for s in catalog.manifest.shards if short_fingerprint(s.fingerprint) not in done]
    if not missing:
        if url not in _announced:  # once per command: every stage and the validation set ask for it
            _announced.add(url)
            console.print(f"trunk features: {sum(manifest.shards[s].images for s in done):,} images cached at {url}")
        return TrunkCache(url, storage, manifest)
    short = [short_fingerprint(f) for f in missing]
    for shard in short:  # what a stopped earlier attempt left of these shards
        for name in storage.listdir(join(url, f"{PARTITION}={shard}")):
            storage.remove(join(url, f"{PARTITION}={shard}", name))
    fs, path = storage.arrow_fs(url)
    gpus, actors, threads = model_actors(cfg.index.actors)
    start = time.perf_counter()
    images = sum(s.rows for s in catalog.manifest.shards if s.fingerprint in missing)
    with catalog.reading(), pipeline_bar("trunk pass", images, TrunkFeatures.__name__):  # a bad shard: one line
        catalog.dataset(None, ["id", "image"], read_cpus=READ_CPUS, shards=missing, with_shard=True).map_batches(
            TrunkFeatures,
            fn_constructor_kwargs=dict(model=model, image_size=image_size, threads=threads, tuned_blocks=tuned_blocks),
            batch_size=ROWS_PER_CALL,
            batch_format="numpy",
            compute=actor_pool(actors),
            num_gpus=1 if gpus else 0,
        ).write_parquet(path, filesystem=fs, partition_cols=[PARTITION], ray_remote_args={"num_cpus": READ_CPUS})
    seconds = time.perf_counter() - start
    entries = shard_entries(storage, url, short)
    channels, size, pooled = trunk_shapes(model, image_size, tuned_blocks)
    manifest = TrunkManifest(
        backbone=model.backbone,
        weights=model.weights,
        trunk_fingerprint=url.rsplit("-", 1)[-1],
        image_size=image_size,
        tuned_blocks=tuned_blocks,
        channels=channels,
        map_size=size,
        pooled_channels=pooled,
        shards={**(manifest.shards if manifest else {}), **entries},
        seconds=round(seconds, 1),
    )
    storage.write_text(join(url, MANIFEST), manifest.model_dump_json(indent=1))
    images = sum(e.images for e in entries.values())
    rejected = sum(len(e.rejected) for e in entries.values())
    console.print(
        f"trunk features: {images:,} images of {len(short)} shard(s) ({model.backbone}, {image_size} px, "
        f"{f'before its last {tuned_blocks} block(s), ' if tuned_blocks else ''}"
        f"{channels} x {size[0]} x {size[1]}) in {seconds:.0f} s, {rejected} rejected; cached at {url}"
    )
    return TrunkCache(url, storage, manifest)
