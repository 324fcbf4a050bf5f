"""Each loss against a plain Python loop on hand-made embeddings, in float32 and float64."""

import math

import pytest
import torch
from torch.testing import assert_close

from fsnet.config import load_config
from fsnet.losses import (
    StageLoss,
    attribute_cross_entropy,
    memory_consistency_loss,
    off_diagonal_penalty,
    region_triplet_loss,
    soft_triplet_loss,
)
from fsnet.model import VARIANTS
from fsnet.sampling import region_triplets

DTYPES = [torch.float32, torch.float64]


def loop_soft_triplet(anchor, positive, negative):
    total = 0.0
    for a, p, n in zip(anchor.tolist(), positive.tolist(), negative.tolist()):
        dp = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, p)))
        dn = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, n)))
        d_plus = math.exp(dp) / (math.exp(dp) + math.exp(dn))
        d_minus = math.exp(dn) / (math.exp(dp) + math.exp(dn))
        total += d_plus**2 + (d_minus - 1) ** 2
    return total / len(anchor)


EMBEDDINGS = [
    [0.0, 1.0, 0.5],
    [0.2, 0.9, 0.4],
    [1.5, -0.3, 0.0],
    [-1.0, 0.0, 2.0],
    [0.3, 0.3, 0.3],
    [2.0, 2.0, -1.0],
    [0.0, 0.0, 0.0],
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_triplet_matches_loop(dtype):
    e = torch.tensor(EMBEDDINGS, dtype=dtype)
    anchor, positive, negative = e[[0, 2, 4, 6, 1]], e[[1, 3, 0, 4, 1]], e[[2, 5, 6, 3, 0]]  # includes a == p
    got = soft_triplet_loss(anchor, positive, negative)
    assert got.dtype == dtype
    assert_close(got, torch.tensor(loop_soft_triplet(anchor, positive, negative), dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_triplet_gradient_finite_when_points_coincide(dtype):
    a = torch.zeros(1, 3, dtype=dtype, requires_grad=True)
    soft_triplet_loss(a, torch.zeros(1, 3, dtype=dtype), torch.ones(1, 3, dtype=dtype)).backward()
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_triplet_no_triplet_is_zero_in_graph(dtype):
    x = torch.zeros(0, 3, dtype=dtype, requires_grad=True)
    loss = soft_triplet_loss(x, x, x)
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None


@pytest.mark.parametrize("dtype", DTYPES)
def test_region_triplet_matches_loop(dtype):
    reps = torch.tensor([EMBEDDINGS[:5], EMBEDDINGS[1:6], EMBEDDINGS[2:7]], dtype=dtype).transpose(
        0, 1
    )  # (B=5, A=3, D=3)
    labels = torch.tensor([[0, 1, 0], [0, 2, 1], [1, 1, -1], [1, -1, 1], [0, 2, 0]])
    triplets = region_triplets(labels, torch.Generator().manual_seed(3))
    expected = 0.0
    for a in range(3):
        rows = [
            (i, p, n)
            for t_a, i, p, n in zip(
                *(x.tolist() for x in (triplets.attribute, triplets.anchor, triplets.positive, triplets.negative))
            )
            if t_a == a
        ]
        for i, p, n in rows:  # the sampled triplets obey the rules
            assert labels[i, a] == labels[p, a] >= 0 and labels[n, a] >= 0 and labels[n, a] != labels[i, a] and i != p
        if rows:
            idx = torch.tensor(rows)
            expected += loop_soft_triplet(reps[idx[:, 0], a], reps[idx[:, 1], a], reps[idx[:, 2], a])
    assert_close(region_triplet_loss(reps, triplets), torch.tensor(expected, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_region_triplet_without_valid_triplet(dtype):
    labels = torch.tensor([[0, -1], [1, -1], [2, 0]])  # every value once: no positive anywhere
    triplets = region_triplets(labels)
    assert len(triplets) == 0
    reps = torch.randn(3, 2, 4, dtype=dtype, requires_grad=True)
    loss = region_triplet_loss(reps, triplets)
    loss.backward()
    assert loss.item() == 0.0 and reps.grad is not None


def test_region_triplets_every_eligible_anchor_gets_one():
    labels = torch.tensor([[0], [0], [1], [1], [1], [-1]])
    t = region_triplets(labels)
    assert sorted(t.anchor.tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_attribute_cross_entropy_matches_loop(dtype, smoothing):
    """Per attribute the mean over known labels of -sum_v q(v) log p(v), q = 1 - s on the label plus s / V on every
    value (s = 0: the plain cross-entropy)."""
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(4, 3, generator=g, dtype=dtype), torch.randn(4, 2, generator=g, dtype=dtype)]
    labels = torch.tensor([[0, 1], [2, -1], [-1, -1], [1, 0]])
    expected = 0.0
    for a, lg in enumerate(logits):
        terms = []
        for i in range(4):
            if labels[i, a] >= 0:
                row = lg[i].tolist()
                log_z = math.log(sum(math.exp(v) for v in row))
                target = [smoothing / len(row) + (1 - smoothing) * (v == int(labels[i, a])) for v in range(len(row))]
                terms.append(-sum(q * (x - log_z) for q, x in zip(target, row)))
        expected += sum(terms) / len(terms)
    assert_close(attribute_cross_entropy(logits, labels, smoothing), torch.tensor(expected, dtype=dtype))


def test_attribute_cross_entropy_all_unknown_is_zero():
    logits = [torch.randn(2, 3, requires_grad=True)]
    loss = attribute_cross_entropy(logits, torch.tensor([[-1], [-1]]))
    assert loss.item() == 0.0 and torch.isfinite(loss)


def test_stage_loss_weights():
    train = load_config().train
    s2 = StageLoss(train.stage2, VARIANTS["full"])
    terms = {"c": torch.tensor(1.0), "t": torch.tensor(2.0), "tc": torch.tensor(4.0)}
    assert s2(terms).item() == pytest.approx(1 * 1 + 1.5 * 2 + 1 * 4)
    wo = StageLoss(train.stage2, VARIANTS["wo_rank"])
    assert not wo.needs("t") and wo({"c": torch.tensor(1.0), "tc": torch.tensor(4.0)}).item() == pytest.approx(5.0)
    s1 = StageLoss(train.stage1, VARIANTS["full"])
    assert [s1.needs(t) for t in ("c", "t", "tc", "g")] == [True, False, False, False]
    s3 = StageLoss(train.stage3, VARIANTS["full"])
    assert s3({"g": torch.tensor(0.25)}).item() == 0.25
    assert not StageLoss(train.stage3, VARIANTS["rank_l"]).needs("g")
    with pytest.raises(ValueError, match="needs the terms"):
        s2({"c": torch.tensor(1.0)})


def test_a_step_smooths_the_classifiers_terms_as_the_run_says():
    """local_step's c and tc terms with the stage loss's label smoothing, which the training job sets from
    train.label_smoothing: the same step's terms equal attribute_cross_entropy at that smoothing, and differ from
    the plain ones."""
    from fsnet.model import build_model
    from fsnet.training import local_step
    from tests.model.helpers import schema_of

    cfg = load_config(["tiny"], ["model.variant=full", "train.label_smoothing=0.2"])
    schema = schema_of([3, 2])
    torch.manual_seed(0)
    model = build_model(cfg.model, schema, pretrained=False).eval()  # eval: no dropout, the same outputs each call
    images = torch.rand(6, 3, cfg.model.image_size, cfg.model.image_size)
    labels = torch.tensor([[0, 1], [1, 0], [2, 1], [0, 0], [1, 1], [2, -1]])
    figures = {}
    for s in (0.0, cfg.train.label_smoothing):
        loss_fn = StageLoss(cfg.train.stage2, model.variant, s)
        _, stats = local_step(model, images, labels, loss_fn, torch.Generator().manual_seed(0))
        figures[s] = stats.terms
    with torch.no_grad():
        out = model(images, heads=True)
    for s, terms in figures.items():
        assert terms["c"] == pytest.approx(float(attribute_cross_entropy(out.logits, labels, s)), rel=1e-5)
        assert terms["tc"] == pytest.approx(float(attribute_cross_entropy(out.rep_logits, labels, s)), rel=1e-5)
    assert figures[0.2]["c"] != pytest.approx(figures[0.0]["c"], rel=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_memory_consistency_matches_loop(dtype):
    g = torch.Generator().manual_seed(0)
    composed, features = torch.randn(3, 2, 4, generator=g, dtype=dtype), torch.randn(3, 2, 4, generator=g, dtype=dtype)
    known = torch.tensor([[True, True], [False, True], [False, False]])
    per_image = []
    for c, f, k in zip(composed.tolist(), features.tolist(), known.tolist()):
        cells = [abs(x - y) for a in range(2) if k[a] for x, y in zip(c[a], f[a])]
        if cells:
            per_image.append(sum(cells) / len(cells))
    got = memory_consistency_loss(composed, features, known)
    assert got.dtype == dtype
    assert_close(got, torch.tensor(sum(per_image) / len(per_image), dtype=dtype))
    nothing = memory_consistency_loss(composed, features.requires_grad_(), torch.zeros(3, 2, dtype=torch.bool))
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_off_diagonal_penalty_matches_loop(dtype):
    from fsnet.model.disentangled_memory import DisentangledMemory

    memory = DisentangledMemory([2, 3], embed_dim=2).to(dtype)  # M: (4, 5); rows 0-1 chunk 0, rows 2-3 chunk 1
    with torch.no_grad():
        memory.weight.copy_(torch.arange(20, dtype=dtype).view(4, 5) - 7)
    w = memory.weight.detach().tolist()
    owner = [0, 0, 1, 1, 1]
    columns = [sum(abs(w[i][c]) for i in range(4) if i // 2 != owner[c]) for c in range(5)]
    assert_close(off_diagonal_penalty(memory.off_diagonal()), torch.tensor(sum(columns) / 5, dtype=dtype))
