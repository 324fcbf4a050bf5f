"""Stage 3's step and figures (fsnet/training.py): the negative each global triplet keeps (train.negatives), checked
against the sampler's own draws and a plain loop over the distances; and how far stage 3 moved w_r, lambda and M."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsnet.config import load_config
from fsnet.losses import StageLoss, soft_triplet_loss
from fsnet.model import build_model
from fsnet.model.memory import value_sums
from fsnet.sampling import NEGATIVE_CANDIDATES, GlobalTripletSampler
from fsnet.training import global_step, stage3_movement
from tests.model.helpers import SCHEMA_3, model_config

N = 60  # images with fixed features


@pytest.fixture(scope="module")
def stage3():
    """A "full" model whose memory holds the mean features, random fixed features (N, A, D), their sampler."""
    torch.manual_seed(0)
    model = build_model(model_config("model.variant=full"), SCHEMA_3)
    rng = np.random.default_rng(0)
    labels = np.stack([rng.integers(0, v, N) for v in SCHEMA_3.num_values], axis=1)
    reps = torch.randn(N, len(SCHEMA_3.num_values), model.cfg.embed_dim)
    model.memory.set_means(*value_sums(reps, torch.as_tensor(labels), SCHEMA_3.num_values))
    loss_fn = StageLoss(load_config(["tiny"]).train.stage3, model.variant)
    return model, reps, GlobalTripletSampler(labels, SCHEMA_3.num_values), loss_fn


def triplet_loss(model, reps, t, negative):
    """L_G of the sampler's triplets ``t`` with the given negative per triplet, computed directly."""
    f_query = model.global_representation(reps[t.query], torch.as_tensor(t.manipulation))
    f_neg = model.global_representation(reps[torch.as_tensor(negative)])
    return soft_triplet_loss(f_query, model.global_representation(reps[t.positive]), f_neg)


def test_random_negatives_are_the_samplers_plain_draws(stage3):
    model, reps, sampler, loss_fn = stage3
    queries = np.arange(N)
    rng, replay = np.random.default_rng(3), np.random.default_rng(3)
    loss, stats = global_step(model, reps, sampler, queries, rng, loss_fn, negatives="random")
    t = sampler.sample(queries, replay)  # one candidate: the draws of a plain random negative
    assert stats.triplets == len(t) > 40
    torch.testing.assert_close(loss, triplet_loss(model, reps, t, t.negative), rtol=0, atol=0)
    assert rng.integers(1 << 30) == replay.integers(1 << 30)  # and no more draws than that


@pytest.mark.parametrize("rule", ["hardest", "semihard"])
def test_mined_negatives_follow_the_rule(stage3, rule):
    model, reps, sampler, loss_fn = stage3
    queries = np.arange(N)
    loss, _ = global_step(model, reps, sampler, queries, np.random.default_rng(3), loss_fn, negatives=rule)
    t = sampler.sample(queries, np.random.default_rng(3), negatives=NEGATIVE_CANDIDATES)
    assert t.candidates.shape[1] == NEGATIVE_CANDIDATES

    chosen = []
    with torch.no_grad():
        for q, m, p, row in zip(t.query, t.manipulation, t.positive, t.candidates):
            f_q = model.global_representation(reps[[q]], torch.as_tensor(m[None]))[0]
            d_pos = float((f_q - model.global_representation(reps[[p]])[0]).norm())
            d = [float((f_q - model.global_representation(reps[[c]])[0]).norm()) for c in row]
            farther = [i for i in range(len(row)) if d[i] > d_pos]
            hardest = min(range(len(row)), key=lambda i: d[i])
            pick = min(farther, key=lambda i: d[i]) if rule == "semihard" and farther else hardest
            chosen.append(int(row[pick]))
    assert chosen != t.negative.tolist()  # the rule chose other negatives than the random first candidates
    torch.testing.assert_close(loss, triplet_loss(model, reps, t, chosen))
    if rule == "hardest":  # the closest negative is the hardest: the loss can only grow over the random one
        assert float(loss.detach()) > float(triplet_loss(model, reps, t, t.negative).detach())


def test_stage3_movement_relative_to_the_start():
    torch.manual_seed(0)
    before = build_model(model_config("model.variant=full"), SCHEMA_3)
    before.memory.set_means(torch.randn(sum(SCHEMA_3.num_values), before.cfg.embed_dim), torch.ones(10, dtype=int))
    after = copy.deepcopy(before)
    with torch.no_grad():
        after.global_rep.w_r.mul_(1.25)
        after.global_rep.rho.add_(torch.tensor([0.5, 0.0, -0.5]))
        after.memory.table.mul_(1.1)
    moved = stage3_movement(before, after)
    with torch.no_grad():
        lambda_0 = F.softplus(before.global_rep.rho)
        expected_lambda = float((F.softplus(after.global_rep.rho) - lambda_0).norm() / lambda_0.norm())
    assert moved["w_r"] == pytest.approx(0.25, rel=1e-5)
    assert moved["lambda"] == pytest.approx(expected_lambda, rel=1e-5) and moved["lambda"] > 0.1
    assert moved["memory"] == pytest.approx(0.1, rel=1e-5)
    assert stage3_movement(before, before) == {"w_r": 0.0, "lambda": 0.0, "memory": 0.0}


def test_stage3_movement_only_where_stage_3_trains_it():
    rank_lg = build_model(model_config("model.variant=rank_lg"), SCHEMA_3)  # a fixed memory block
    moved = stage3_movement(rank_lg, rank_lg)
    assert moved == {"w_r": 0.0, "lambda": 0.0, "memory": None}
    for sets in (["model.variant=rank_l"], ["model.kind=adde"]):  # no stage on the fixed features
        model = build_model(model_config(*sets), SCHEMA_3)
        assert stage3_movement(model, model) is None
