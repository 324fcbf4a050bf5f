"""The ADDE-style model: the contract over every backbone on 64 px input with schemas of 3 and 5 attributes
(shapes, every parameter a stage trains gets a finite gradient, no NaN), its memory's manipulation math against a
plain loop (indicator -1/+1, an unknown old value, several attributes at once), and its in-batch triplets."""

import pytest
import torch
from torch.testing import assert_close

from fsnet.config import load_config
from fsnet.losses import StageLoss, attribute_cross_entropy
from fsnet.model import build_model
from fsnet.model.backbone import BACKBONES
from fsnet.model.disentangled_memory import DisentangledMemory
from fsnet.model.memory import value_sums
from fsnet.sampling import manipulation_triplets
from fsnet.training import manipulation_step, trainable
from tests.model.helpers import SCHEMA_3, SCHEMA_5, labels_with_pairs, model_config, schema_of
from tests.model.test_contract import assert_trained

BATCH, SIZE = 6, 64


@pytest.mark.parametrize("schema", [SCHEMA_3, SCHEMA_5], ids=["3attrs", "5attrs"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_adde_contract(backbone, schema, device):
    torch.manual_seed(0)
    cfg = model_config(f"model.backbone={backbone}", "model.kind=adde")
    train = load_config(["tiny"]).train
    model = build_model(cfg, schema).to(device).train()
    num_values, attrs, d = schema.num_values, len(schema.num_values), cfg.embed_dim
    images = torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), dtype=torch.uint8, device=device)
    labels = labels_with_pairs(BATCH, num_values).to(device)

    # Stage 1: chunk classification trains the backbone, the per-attribute MLPs and the chunk classifiers.
    out = model(images, heads=False)
    assert out.reps.shape == (BATCH, attrs, d) and [lg.shape for lg in out.logits] == [(BATCH, v) for v in num_values]
    assert torch.isfinite(out.reps).all() and all(torch.isfinite(lg).all() for lg in out.logits)
    model.zero_grad()
    StageLoss(train.stage1, model.variant)({"c": attribute_cross_entropy(out.logits, labels)}).backward()
    assert_trained(model.stage_parameters(1), 1)
    assert model.memory.weight.grad is None

    # Embedding: chunks, predictions, whole-image boxes (no localization); F is the concatenation.
    model.eval()
    with torch.no_grad():
        emb = model.embed(images)
    h, w = emb.map_size
    assert emb.reps.shape == (BATCH, attrs, d) and emb.predicted.shape == (BATCH, attrs)
    assert torch.allclose(emb.probabilities.sum(1), torch.full((BATCH,), float(attrs), device=device), atol=1e-4)
    assert (emb.boxes == torch.tensor([0, 0, w, h], device=device, dtype=emb.boxes.dtype)).all()
    assert model.global_representation(emb.reps).shape == (BATCH, model.global_dim) and model.global_dim == attrs * d

    # Stage 2: the memory from mean chunk features per value, block-diagonal; nothing is trained.
    sums, counts = value_sums(emb.reps, labels, num_values)
    model.memory.set_means(sums, counts)
    assert model.stage_parameters(2) == []
    assert float(model.memory.off_diagonal().detach().abs().sum()) == 0.0
    a, v = 1, int(labels[1, 1])
    column = model.memory.weight[:, sum(num_values[:a]) + v].view(attrs, d)
    assert_close(column[a], emb.reps[labels[:, a] == v, a].mean(0))

    # Stage 3: manipulation training on images trains everything, the memory block included.
    model.train()
    trainable(model, 3)
    model.zero_grad()
    loss, stats = manipulation_step(model, model, images, labels, StageLoss(train.adde, model.variant))
    assert stats.triplets > 0 and torch.isfinite(loss)
    assert {"c", "t", "m", "l1", "off"} == set(stats.terms)
    loss.backward()
    assert_trained(model.stage_parameters(3), 3)
    assert float(model.memory.weight.grad.abs().sum()) > 0


def loop_manipulate(weight, offsets, features, values, manipulation):
    """f + sum over changed a of (M[:, new] - M[:, old]), one number at a time."""
    out = []
    for f, vals, change in zip(features.tolist(), values.tolist(), manipulation.tolist()):
        f = list(f)
        for a, (old, new) in enumerate(zip(vals, change)):
            if new < 0:
                continue
            for i in range(len(f)):
                f[i] += float(weight[i, offsets[a] + new])
                if old >= 0:
                    f[i] -= float(weight[i, offsets[a] + old])
        out.append(f)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_manipulation_matches_a_plain_loop(dtype):
    num_values, d = [3, 2, 4], 2
    memory = DisentangledMemory(num_values, d).to(dtype)
    with torch.no_grad():
        memory.weight.copy_(torch.randn(memory.weight.shape, generator=torch.Generator().manual_seed(0), dtype=dtype))
    values = torch.tensor([[0, 1, 2], [2, 0, -1], [1, 1, 3], [0, 0, 0]])
    manipulation = torch.tensor(
        [[2, -1, -1], [0, 1, 0], [-1, -1, 1], [-1, -1, -1]]
    )  # one; three (old c unknown); one; none
    indicator = memory.indicator(values, manipulation)
    # row 1: a 2 -> 0, b 0 -> 1, c unknown -> 0: +1 on the new values, -1 on the known old ones only
    assert indicator[1].tolist() == [1, 0, -1, -1, 1, 1, 0, 0, 0]
    assert indicator[3].abs().sum() == 0 and indicator.sum(1).tolist() == [0, 1, 0, 0]
    features = torch.randn(4, 3 * d, generator=torch.Generator().manual_seed(1), dtype=dtype)
    got = memory.manipulate(features, indicator)
    assert got.dtype == dtype
    expected = loop_manipulate(memory.weight.detach(), [0, 3, 5], features, values, manipulation)
    assert_close(got, torch.tensor(expected, dtype=dtype))

    model = build_model(model_config("model.kind=adde", "model.embed_dim=2"), schema_of(num_values)).to(dtype)
    model.memory.load_state_dict(memory.state_dict())
    reps = features.view(4, 3, d)
    assert_close(model.global_representation(reps, manipulation, values), got)
    with pytest.raises(ValueError, match="current values"):
        model.global_representation(reps, manipulation)


def test_manipulation_triplets():
    labels = torch.tensor(
        [
            [0, 0, 0],
            [0, 0, 1],  # differs from row 0 in one attribute
            [1, 1, 1],  # from row 1 in two
            [0, -1, 0],  # incomplete: never an anchor, positive or negative
            [2, 1, 1],  # from row 2 in one
        ]
    )
    found = manipulation_triplets(labels, torch.Generator().manual_seed(0))
    assert sorted(found.anchor.tolist()) == [0, 1, 2, 4]
    for anchor, change, positive, negative in zip(
        found.anchor.tolist(), found.manipulation.tolist(), found.positive.tolist(), found.negative.tolist()
    ):
        target = [c if c >= 0 else x for c, x in zip(change, labels[anchor].tolist())]
        assert labels[positive].tolist() == target and positive != anchor
        changed = sum(c >= 0 for c in change)
        others = [int((labels[j] != labels[anchor]).sum()) for j in (0, 1, 2, 4) if j != anchor]
        assert changed == min(others)  # the fewest differences
        assert negative != 3 and labels[negative].tolist() != target
    alone = manipulation_triplets(torch.tensor([[0, 0], [1, -1]]))
    assert len(alone) == 0  # no two complete images: no triplet
