"""The trunk feature cache (fsnet/trunk_features.py) found or computed: the Ray Data piece that train (``train.trunk:
frozen``) and evaluate (the probe baselines) share, so it lives here and not in a job.

Where: ``cache.trunk`` when set, else ``trunk-features/`` beside the catalog (a catalog is packed once and trained,
indexed and evaluated many times: its cache serves every run, variant and re-run of it). Each entry is a folder named
by its key; a complete one (trunk.json present) is reused as it is, an incomplete one (a run stopped in the middle) is
computed again from the start.
"""

from __future__ import annotations

import posixpath

import pyarrow.dataset as pads

from fsnet.catalog.reader import Catalog
from fsnet.config import Config
from fsnet.storage import Storage, join
from fsnet.timing import timed
from fsnet.trunk_features import MANIFEST, TrunkCache, TrunkFeatures, trunk_key, write_manifest
from jobs.command import console
from jobs.ray_runtime import actor_pool, cluster_cpus

ROWS_PER_CALL = 64  # images per trunk call: the trunk's batch on a CPU; small enough to keep every actor busy


def cache_root(cfg: Config, catalog: Catalog) -> str:
    if cfg.cache.trunk:
        return cfg.cache.trunk
    return join(posixpath.dirname(catalog.url.rstrip("/")), "trunk-features")


def trunk_cache(cfg: Config, storage: Storage, catalog: Catalog, image_size: int) -> TrunkCache:
    """The complete cache entry of (catalog shards, cfg.model's backbone and weights, ``image_size``): found, or
    computed for every image of the catalog (all splits: the probe needs them all) by a pool of Ray Data actors."""
    key = trunk_key(cfg.model, catalog, image_size)
    url = join(cache_root(cfg, catalog), f"{cfg.model.backbone}-{image_size}px-{key}")
    if storage.exists(join(url, MANIFEST)):
        cache = TrunkCache.open(url, storage)
        console.print(f"trunk features: {cache.manifest.images:,} images cached at {url}")
        return cache
    for name in storage.listdir(url):  # a partial earlier attempt
        storage.remove(join(url, name))
    fs, path = storage.arrow_fs(url)
    seconds: dict[str, float] = {}
    with timed(seconds, "trunk"), catalog.reading():  # a shard that cannot be read: one line naming it
        catalog.dataset(None, ["id", "image"]).map_batches(
            TrunkFeatures,
            fn_constructor_kwargs=dict(model=cfg.model, image_size=image_size),
            batch_size=ROWS_PER_CALL,
            batch_format="numpy",
            compute=actor_pool(cfg.index.actors or max(1, cluster_cpus() - 1)),
        ).write_parquet(path, filesystem=fs)
    rejected = _rejected(url, storage)
    manifest = write_manifest(storage, url, key, cfg.model, image_size, catalog, rejected, seconds["trunk"])
    console.print(
        f"trunk features: {manifest.images:,} images ({cfg.model.backbone}, {image_size} px, "
        f"{manifest.channels} x {manifest.map_size[0]} x {manifest.map_size[1]}) in {seconds['trunk']:.0f} s, "
        f"{len(rejected)} rejected; cached at {url}"
    )
    return TrunkCache(url, storage, manifest)


def _rejected(url: str, storage: Storage) -> dict[str, str]:
    fs, path = storage.arrow_fs(url)
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table(
        columns=["id", "error"], filter=~pads.field("error").is_null()
    )
    return dict(zip(table["id"].to_pylist(), table["error"].to_pylist()))
