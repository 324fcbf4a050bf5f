"""The probe expert (train.probe_expert): a fitted linear probe folded into one linear map gives the probe's own
probabilities, joined with the model's classifiers it gives the weighted product of experts that the weight was
chosen with, the boxes stay the model's, and model.pt keeps it."""

import numpy as np
import pytest
import torch

from eval.linear_probe import fit_linear_probe
from fsnet.catalog.schema import AttributeSchema
from fsnet.config import load_config
from fsnet.model import build_model
from fsnet.model.checkpoint import model_bytes, model_from_bytes
from fsnet.model.probe_expert import ProbeExpert, joined, mean_nll
from fsnet.trunk_features import frozen_trunk, pretrained_tuned_blocks

SCHEMA = AttributeSchema.model_validate(
    {
        "attributes": [
            {"name": "color", "values": ["red", "blue", "green", "black"]},  # black: no fit image has it
            {"name": "sleeve", "values": ["short", "long"]},
        ]
    }
)
NUM_VALUES = [4, 2]


def _frozen_model(kind: str, tuned: int):
    cfg = load_config(["tiny"], [f"model.kind={kind}", "train.trunk=frozen", f"train.tuned_blocks={tuned}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, SCHEMA)
    model.backbone.trunk.load_state_dict(frozen_trunk(cfg.model).state_dict())
    model.backbone.set_tuned_blocks(tuned)
    if tuned:  # "trained" away from the pretrained weights, which the expert keeps
        torch.nn.init.normal_(model.backbone.tuned()[0][0].weight)
    return cfg, model.eval()


def _expert(cfg, model, images: torch.Tensor, weight: float):
    """A probe fitted on the pretrained trunk's pooled maps of ``images`` (labels from a seeded draw)."""
    with torch.no_grad():
        pooled = frozen_trunk(cfg.model)(model.normalize(images)).mean(dim=(2, 3)).numpy()  # (N, P)
    rng = np.random.default_rng(0)
    labels = np.stack([rng.integers(0, 3, len(images)), rng.integers(0, 2, len(images))], axis=1)
    probe = fit_linear_probe(pooled, labels, pooled[:4], labels[:4], ["color", "sleeve"], NUM_VALUES, [1.0])
    blocks = pretrained_tuned_blocks(cfg.model, model.backbone.tuned_blocks)
    expert = ProbeExpert.fitted(blocks, probe.mean, probe.scale, probe.weights, probe.biases, weight)
    return probe, pooled, expert.eval()


@pytest.mark.parametrize(("kind", "tuned"), [("fsn", 0), ("fsn", 1), ("adde", 1)])
def test_the_joined_experts_are_what_the_weight_was_chosen_with(kind, tuned):
    cfg, model = _frozen_model(kind, tuned)
    images = torch.randint(0, 256, (24, 3, 64, 64), dtype=torch.uint8)
    probe, pooled, expert = _expert(cfg, model, images, weight=0.3)
    with torch.no_grad():
        alone = model.embed(images)
        cached = model.backbone.cached()(model.normalize(images))  # (N, C, h, w) what a frozen run caches
        from_probe = torch.cat([lp.exp() for lp in expert.log_probabilities(cached)], dim=1).numpy()
        model.probe_expert = expert
        both = model.embed(images)
        from_maps = model.embed(cached, from_trunk=True)
    # folded into one map through the pretrained copy of the tuned blocks: the probe's own probabilities
    np.testing.assert_allclose(from_probe, probe.probabilities(pooled), atol=1e-4)
    assert (from_probe[:, 3] == 0).all()  # a value no fit image had
    expected = joined(alone.probabilities.numpy(), from_probe, NUM_VALUES, 0.3)
    np.testing.assert_allclose(both.probabilities.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(from_maps.probabilities.numpy(), expected, atol=1e-5)
    assert torch.equal(
        both.predicted, torch.from_numpy(np.stack([expected[:, :4].argmax(1), expected[:, 4:].argmax(1)], 1))
    )
    assert torch.equal(both.reps, alone.reps) and torch.equal(both.boxes, alone.boxes)  # the model's own
    assert not torch.allclose(both.probabilities, alone.probabilities)


def test_model_pt_keeps_the_expert():
    cfg, model = _frozen_model("fsn", 1)
    images = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    _, _, model.probe_expert = _expert(cfg, model, images, weight=0.45)
    model.probe_expert.weight = np.float64(0.45)  # as a numpy grid gives it: model.pt still loads with weights_only
    loaded = model_from_bytes(model_bytes(model)).eval()
    assert loaded.probe_expert is not None and loaded.probe_expert.weight == 0.45
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(images).probabilities, model.embed(images).probabilities)
    model.probe_expert = None  # a model without one loads without one
    assert model_from_bytes(model_bytes(model)).probe_expert is None


def test_mean_nll_and_the_product_at_its_ends():
    p_model = np.array([[0.7, 0.2, 0.1, 0.0, 0.9, 0.1]], np.float32)
    p_probe = np.array([[0.1, 0.8, 0.1, 0.0, 0.5, 0.5]], np.float32)
    np.testing.assert_allclose(joined(p_model, p_probe, NUM_VALUES, 0.0), p_model, atol=1e-6)
    np.testing.assert_allclose(joined(p_model, p_probe, NUM_VALUES, 1.0), p_probe, atol=1e-6)
    labels = np.array([[1, -1]])  # sleeve unknown: only color counts
    assert mean_nll(p_model, labels, NUM_VALUES) == pytest.approx(-np.log(0.2))
