"""The trunk feature cache on a real local Ray: computed once per catalog shard, only missing shards computed again,
and the embed path reading a frozen-trunk model's maps from it gives what decoding and running the trunk gives."""

import numpy as np
import pytest
import torch

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.embedding import EmbedImages
from fsnet.fingerprint import short_fingerprint
from fsnet.model import build_model, save_model
from fsnet.storage import Storage, join
from fsnet.trunk_features import MANIFEST, TrunkCache, TrunkManifest, frozen_trunk
from jobs.pack import pack
from jobs.synth import synth
from jobs.trunk_cache import existing_trunk_cache, trunk_cache

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

SETS = ["synthetic.n=160", "catalog.shard_rows=64"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("trunk-catalog")
    cfg = load_config(["tiny"], SETS)
    synth(cfg, str(root / "synth"), show_progress=False)
    pack(load_config(["tiny"], [*SETS, f"source.path={root / 'synth'}"]), str(root / "catalog"), show_progress=False)
    return Catalog.open(str(root / "catalog"), Storage(cfg.storage))


def test_cache_per_shard_and_the_embed_path_reading_it(catalog, tmp_path):
    cfg = load_config(["tiny"], [*SETS, f"cache.trunk={tmp_path / 'cache'}"])
    storage = catalog.storage
    shards = [short_fingerprint(s.fingerprint) for s in catalog.manifest.shards]
    assert len(shards) == 3 and existing_trunk_cache(cfg, storage, catalog, cfg.model, 64) is None

    cache = trunk_cache(cfg, storage, catalog, 64)
    assert set(cache.manifest.shards) == set(shards) and sum(e.images for e in cache.manifest.shards.values()) == 160
    assert existing_trunk_cache(cfg, storage, catalog, cfg.model, 64).url == cache.url
    ids = catalog.split_ids("gallery").astype(str)
    found, arrays = cache.read(ids, maps=True)
    assert found.all() and arrays["maps"].shape == (len(ids), 64, 4, 4) and arrays["maps"].dtype == np.float16
    assert np.allclose(arrays["pooled"], arrays["maps"].astype(np.float32).mean(axis=(2, 3)), atol=1e-2)

    # a shard the manifest does not list (a re-pack changed it) is computed again, alone
    manifest = cache.manifest.model_copy(update={"shards": {s: cache.manifest.shards[s] for s in shards[1:]}})
    storage.write_text(join(cache.url, MANIFEST), manifest.model_dump_json())
    again = trunk_cache(cfg, storage, catalog, 64)
    assert set(again.manifest.shards) == set(shards)
    assert TrunkManifest.model_validate_json(storage.read_bytes(join(cache.url, MANIFEST))).shards[shards[0]].images
    assert np.array_equal(again.read(ids, maps=True)[1]["maps"], arrays["maps"])

    # a model whose trunk is the cached one: the maps stand in for decoding and the trunk, with the same result
    torch.manual_seed(0)
    model = build_model(cfg.model, catalog.schema)
    model.backbone.trunk.load_state_dict(frozen_trunk(cfg.model).state_dict())
    url = str(tmp_path / "model.pt")
    save_model(model, url, storage)
    batch = catalog.rows(ids[:16].tolist(), ["id", "image"])
    batch["catalog_shard"] = np.array([_shard_of(catalog, i) for i in batch["id"]], dtype=object)
    cached = EmbedImages(url, storage, 64, device="cpu", trunk_cache=cache.url)
    plain = EmbedImages(url, storage, 64, device="cpu")
    assert cached.trunk is not None and plain.trunk is None
    a, b = cached(batch), plain(batch)
    assert a["error"].null_count == 16 and b["error"].null_count == 16
    for column in ("reps", "global"):
        x, y = (t[column].combine_chunks().values.to_numpy() for t in (a, b))
        assert np.allclose(x, y, rtol=1e-2, atol=1e-2), column  # fp16 maps against the fp32 trunk
    assert (
        a["predicted"].combine_chunks().values.to_numpy() == b["predicted"].combine_chunks().values.to_numpy()
    ).mean() > 0.95

    # another trunk (a fine-tuned one): the cache is not used
    with torch.no_grad():
        next(model.backbone.trunk.parameters()).add_(0.01)
    save_model(model, url, storage)
    assert EmbedImages(url, storage, 64, device="cpu", trunk_cache=cache.url).trunk is None
    assert isinstance(TrunkCache.open(cache.url, storage), TrunkCache)


def _shard_of(catalog, image_id):
    for info in catalog.manifest.shards:
        if image_id in catalog.shard_ids(info):
            return short_fingerprint(info.fingerprint)
    raise KeyError(image_id)


def test_an_entry_before_tuned_blocks_serves_a_model_whose_tuned_blocks_trained(catalog, tmp_path):
    """train.tuned_blocks=1: the entry holds the maps before the trunk's last block and the whole trunk's pooled
    features; the embed path reads it for a model whose last block has moved from its pretrained weights."""
    cfg = load_config(["tiny"], [*SETS, f"cache.trunk={tmp_path / 'cache'}"])
    storage = catalog.storage
    cache = trunk_cache(cfg, storage, catalog, 64, tuned_blocks=1)
    whole = trunk_cache(cfg, storage, catalog, 64)
    assert "-64px-tuned1-" in cache.url and cache.url != whole.url
    assert existing_trunk_cache(cfg, storage, catalog, cfg.model, 64, tuned_blocks=1).url == cache.url
    manifest = cache.manifest
    assert (manifest.tuned_blocks, manifest.channels, manifest.map_size, manifest.pooled_channels) == (
        1,
        48,
        (8, 8),
        64,
    )
    ids = catalog.split_ids("gallery").astype(str)
    found, arrays = cache.read(ids, maps=True)
    assert found.all() and arrays["maps"].shape == (len(ids), 48, 8, 8)
    assert np.allclose(arrays["pooled"], whole.read(ids)[1]["pooled"], atol=1e-4)  # the probe reads either

    torch.manual_seed(0)
    model = build_model(cfg.model, catalog.schema)
    model.backbone.trunk.load_state_dict(frozen_trunk(cfg.model).state_dict())
    model.backbone.set_tuned_blocks(1)
    with torch.no_grad():
        next(model.backbone.tuned().parameters()).add_(0.01)  # the tuned block trained; the blocks before did not
    url = str(tmp_path / "model.pt")
    save_model(model, url, storage)
    batch = catalog.rows(ids[:16].tolist(), ["id", "image"])
    batch["catalog_shard"] = np.array([_shard_of(catalog, i) for i in batch["id"]], dtype=object)
    cached = EmbedImages(url, storage, 64, device="cpu", trunk_cache=cache.url)
    assert cached.trunk is not None
    assert EmbedImages(url, storage, 64, device="cpu", trunk_cache=whole.url).trunk is None  # maps after the block
    a, b = cached(batch), EmbedImages(url, storage, 64, device="cpu")(batch)
    for column in ("reps", "global"):
        x, y = (t[column].combine_chunks().values.to_numpy() for t in (a, b))
        assert np.allclose(x, y, rtol=1e-2, atol=1e-2), column
