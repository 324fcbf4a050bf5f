"""The model contract over every backbone x variant on 64 px input, with schemas of 3 and 5 attributes: shapes,
every parameter a stage trains gets a finite gradient from that stage's loss, no NaN."""

import numpy as np
import pytest
import torch

from fsnet.config import load_config
from fsnet.losses import StageLoss, attribute_cross_entropy, region_triplet_loss, soft_triplet_loss
from fsnet.model import VARIANTS, build_model
from fsnet.model.backbone import BACKBONES
from fsnet.model.memory import value_sums
from fsnet.sampling import GlobalTripletSampler, region_triplets
from tests.model.helpers import SCHEMA_3, SCHEMA_5, labels_with_manipulations, labels_with_pairs, model_config

BATCH, SIZE = 6, 64


def assert_trained(params, stage):
    assert params, f"stage {stage} trains nothing"
    for p in params:
        assert p.grad is not None, f"stage {stage}: a parameter of shape {tuple(p.shape)} got no gradient"
        assert torch.isfinite(p.grad).all(), f"stage {stage}: non-finite gradient"
    assert sum(float(p.grad.abs().sum()) for p in params) > 0


@pytest.mark.parametrize("schema", [SCHEMA_3, SCHEMA_5], ids=["3attrs", "5attrs"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("backbone", BACKBONES)
def test_model_contract(backbone, variant, schema, device):
    torch.manual_seed(0)
    cfg = model_config(f"model.backbone={backbone}", f"model.variant={variant}")
    train = load_config(["tiny"]).train
    model = build_model(cfg, schema).to(device).train()
    num_values, attrs = schema.num_values, len(schema.num_values)
    images = torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8, device=device)
    labels = labels_with_pairs(BATCH, num_values).to(device)

    # Stage 1: L_C trains the backbone and the GAP classifiers.
    out = model(images)
    assert [lg.shape for lg in out.logits] == [(BATCH, v) for v in num_values]
    assert out.reps.shape == (BATCH, attrs, cfg.embed_dim) and out.boxes.shape == (BATCH, attrs, 4)
    assert torch.isfinite(out.reps).all() and all(torch.isfinite(lg).all() for lg in out.logits)
    loss1 = StageLoss(train.stage1, model.variant)({"c": attribute_cross_entropy(out.logits, labels)})
    model.zero_grad()
    loss1.backward()
    assert_trained(model.stage_parameters(1), 1)

    # Stage 2: (1, 1.5, 1, 0) trains the heads and fc10 classifiers too (no L_T for w/o Rank).
    stage2 = StageLoss(train.stage2, model.variant)
    assert stage2.needs("t") == model.variant.ranking
    out = model(images)
    triplets = region_triplets(labels.cpu())
    assert len(triplets) > 0
    terms = {"c": attribute_cross_entropy(out.logits, labels), "tc": attribute_cross_entropy(out.rep_logits, labels)}
    if stage2.needs("t"):
        terms["t"] = region_triplet_loss(out.reps, triplets)
    model.zero_grad()
    stage2(terms).backward()
    assert_trained(model.stage_parameters(2), 2)

    # Embedding and boxes.
    model.eval()
    with torch.no_grad():
        emb = model.embed(images)
    h, w = emb.map_size
    assert emb.reps.shape == (BATCH, attrs, cfg.embed_dim) and emb.predicted.shape == (BATCH, attrs)
    assert emb.probabilities.shape == (BATCH, sum(num_values))
    assert torch.allclose(emb.probabilities.sum(1), torch.full((BATCH,), float(attrs), device=device), atol=1e-4)
    x0, y0, x1, y1 = emb.boxes.unbind(-1)
    assert (
        (x0 >= 0).all()
        and (y0 >= 0).all()
        and (x1 <= w).all()
        and (y1 <= h).all()
        and (x1 > x0).all()
        and (y1 > y0).all()
    )
    if not model.variant.localization:
        assert (emb.boxes == torch.tensor([0, 0, w, h], device=device, dtype=emb.boxes.dtype)).all()

    # Stage 3: L_G on fixed local features trains lambda, w_r and ("Full") the memory block.
    reps = emb.reps.detach()
    model.memory.set_means(*value_sums(reps, labels, num_values))
    dim = model.global_representation(reps).shape[1]
    assert dim == (cfg.global_dim if model.variant.global_learning else attrs * cfg.embed_dim)
    if not model.variant.global_learning:
        assert model.stage_parameters(3) == []
        return
    model.train()
    sampler = GlobalTripletSampler(labels_with_manipulations(BATCH, num_values).numpy(), num_values)
    g = sampler.sample(np.arange(BATCH), np.random.default_rng(0))
    assert len(g) > 0
    manipulation = torch.as_tensor(g.manipulation, device=device)
    f_q = model.global_representation(reps[g.query], manipulation)
    loss3 = StageLoss(train.stage3, model.variant)(
        {
            "g": soft_triplet_loss(
                f_q, model.global_representation(reps[g.positive]), model.global_representation(reps[g.negative])
            )
        }
    )
    model.zero_grad()
    loss3.backward()
    assert_trained(model.stage_parameters(3), 3)
    assert (model.memory.table.grad is not None) == model.variant.memory_updatable
