"""Tuned blocks (train.tuned_blocks): a frozen trunk's last blocks run on the cached maps of the blocks before them,
train at a fraction of the stage's rate, and are kept by model.pt."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from fsnet.catalog.schema import AttributeSchema
from fsnet.config import load_config
from fsnet.decode import decode_batch
from fsnet.errors import ModelError
from fsnet.model import build_model
from fsnet.model.backbone import ImageNetNormalize, split_trunk
from fsnet.model.checkpoint import model_bytes, model_from_bytes
from fsnet.training import make_optimizer, trainable
from fsnet.trunk_features import TrunkFeatures, frozen_trunk, pretrained_fingerprint

SCHEMA = AttributeSchema.model_validate({"attributes": [{"name": "color", "values": ["red", "blue", "green"]}]})


def _model(tuned: int):
    cfg = load_config(["tiny"], ["train.trunk=frozen", f"train.tuned_blocks={tuned}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, SCHEMA).eval()
    model.backbone.set_tuned_blocks(tuned)
    return cfg, model


@pytest.mark.parametrize("tuned", [0, 1, 2])
def test_from_trunk_runs_the_tuned_blocks_on_the_maps_before_them(tuned):
    _, model = _model(tuned)
    x = torch.randn(3, 3, 64, 64)
    backbone = model.backbone
    with torch.no_grad():
        whole = backbone(x)
        from_maps = backbone(backbone.cached()(x), from_trunk=True)  # maps before the tuned blocks
    assert backbone.cached()(x).shape[1] == [64, 48, 32][tuned]
    for a, b in zip(whole, from_maps):
        assert torch.allclose(a, b, atol=1e-6)


def test_too_many_tuned_blocks_is_one_clear_error():
    _, model = _model(0)
    with pytest.raises(ModelError, match=r"train.tuned_blocks=4: the tiny trunk has 4 blocks; tune 0 to 3 of them"):
        model.backbone.set_tuned_blocks(4)


def test_only_the_tuned_blocks_of_the_trunk_train_at_the_scaled_rate():
    cfg, model = _model(1)
    params = trainable(model, 1, frozen_trunk=True)
    tuned, cached = model.backbone.tuned(), model.backbone.cached()
    ids = {id(p) for p in params}
    assert all(id(p) in ids and p.requires_grad for p in tuned.parameters())
    assert not any(id(p) in ids or p.requires_grad for p in cached.parameters())
    optimizer = make_optimizer(params, cfg.train.stage1, cfg.train, tuned=tuned.parameters())
    rates = sorted((g["lr"], len(g["params"])) for g in optimizer.param_groups)
    tuned_count = len(list(tuned.parameters()))
    assert rates == [
        (pytest.approx(cfg.train.stage1.lr * cfg.train.tuned_lr_scale), tuned_count),
        (cfg.train.stage1.lr, len(params) - tuned_count),
    ]
    untuned = make_optimizer(trainable(_model(0)[1], 1, frozen_trunk=True), cfg.train.stage1, cfg.train)
    assert len(untuned.param_groups) == 1


def test_model_pt_keeps_the_tuned_blocks():
    _, model = _model(2)
    assert model_from_bytes(model_bytes(model)).backbone.tuned_blocks == 2
    assert model_from_bytes(model_bytes(_model(0)[1])).backbone.tuned_blocks == 0


def test_trunk_features_before_tuned_blocks_and_the_whole_trunks_pooled_features():
    cfg = load_config(["tiny"])
    blobs = []
    for seed in range(4):
        buffer = io.BytesIO()
        pixels = np.random.default_rng(seed).integers(0, 255, (40, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="JPEG")
        blobs.append(buffer.getvalue())
    blobs.append(b"not a jpeg")
    batch = {"id": np.array([f"i{n}" for n in range(5)]), "image": np.array(blobs, dtype=object)}
    batch["catalog_shard"] = np.array(["s"] * 5)
    table = TrunkFeatures(cfg.model, 64, tuned_blocks=1)(batch)
    assert table["error"].null_count == 4
    maps = table["maps"].combine_chunks().values.to_numpy(zero_copy_only=False).reshape(5, 48, 8, 8)
    pooled = table["pooled"].combine_chunks().values.to_numpy().reshape(5, 64)
    lower, upper = split_trunk(frozen_trunk(cfg.model), 1)
    with torch.no_grad():
        x = ImageNetNormalize()(decode_batch(blobs[:4], 64))  # (4, 3, 64, 64)
        expected_maps = lower(x)  # (4, 48, 8, 8): the tiny trunk's last block has stride 2
        expected_pooled = upper(expected_maps).mean(dim=(2, 3))  # (4, 64)
    assert np.allclose(maps[:4], expected_maps.numpy(), atol=2e-2)
    assert np.allclose(pooled[:4], expected_pooled.numpy(), atol=1e-4)
    assert not maps[4].any() and not pooled[4].any()
    assert pretrained_fingerprint("tiny", "none", 1) != pretrained_fingerprint("tiny", "none", 0)
