"""The estimate fsnet train prints before its stages on images start (jobs/training_estimate.py): a rate measured on
a few real steps of each stage, the images x epochs it has to train, and a readable duration."""

import numpy as np
import pytest
import torch

from fsnet.config import load_config
from fsnet.model import build_model, model_class
from fsnet.validation_set import ValidationSet
from jobs.training_estimate import StageEstimate, duration, estimate, estimate_lines
from tests.model.helpers import SCHEMA_3, labels_with_pairs


def sample(images: int) -> ValidationSet:
    x = torch.randint(0, 256, (images, 3, 64, 64), dtype=torch.uint8).numpy()
    y = labels_with_pairs(images, list(SCHEMA_3.num_values)).numpy().astype(np.int16)
    return ValidationSet(x, y, x, y, from_trunk=False)


def test_every_stage_on_images_is_timed_and_the_total_adds_them():
    cfg = load_config(["tiny"], ["model.variant=full", "train.trunk=finetune", "train.batch_size=8"])
    torch.manual_seed(0)
    model = build_model(cfg.model, SCHEMA_3)
    plan = model_class(cfg.model.kind).training_plan(cfg.model)
    inputs = sample(16)
    rng = torch.get_rng_state()
    found = estimate(cfg, plan, model, inputs, images=1000)
    assert torch.equal(torch.get_rng_state(), rng)  # a training seeded before it draws what it would have drawn
    assert [e.stage.name for e in found] == ["stage1", "stage2"]  # the memory stage and stage 3 are left out
    for e in found:
        assert e.images == 1000 and e.epochs == getattr(cfg.train, e.stage.section).epochs
        assert e.images_per_s > 0 and e.validation_s > 0
        assert e.seconds == pytest.approx(1000 * e.epochs / e.images_per_s + e.epochs * e.validation_s)
    lines = estimate_lines(found, cfg.train.workers)
    assert lines[0].startswith(f"estimate: stage 1, 1,000 images x {found[0].epochs} epochs at ~")
    assert f"validation ~{duration(found[0].validation_s)} each" in lines[0]
    assert lines[-1].startswith(f"estimate: ~{duration(sum(e.seconds for e in found))} for the stages on images")


def test_a_stage_without_epochs_is_not_estimated():
    cfg = load_config(["tiny"], ["train.stage2.epochs=0", "train.trunk=finetune"])
    model = build_model(cfg.model, SCHEMA_3)
    plan = model_class(cfg.model.kind).training_plan(cfg.model)
    assert [e.stage.name for e in estimate(cfg, plan, model, sample(8), images=10)] == ["stage1"]


def test_durations_read_as_people_say_them():
    assert [duration(s) for s in (42, 90, 3599, 3600, 5 * 3600 + 7 * 60)] == [
        "42 s",
        "2 min",
        "1 h 00 min",
        "1 h 00 min",
        "5 h 07 min",
    ]
    assert duration(0.31) == "0.3 s"  # a small catalog's validation
    assert estimate_lines([], 2) == []
    stage = model_class("fsn").training_plan(load_config(["tiny"]).model)[0]
    assert StageEstimate(stage, 600, 2, 10.0).seconds == 120.0
    assert StageEstimate(stage, 600, 2, 10.0, validation_s=5.0).seconds == 130.0


def test_a_frozen_trunk_is_timed_on_its_cached_float16_maps():
    cfg = load_config(["tiny"], ["train.trunk=frozen", "train.batch_size=8"])
    model = build_model(cfg.model, SCHEMA_3)
    maps = np.random.default_rng(0).standard_normal((8, 64, 4, 4)).astype(np.float16)  # the tiny trunk's output
    y = labels_with_pairs(8, list(SCHEMA_3.num_values)).numpy().astype(np.int16)
    plan = model_class(cfg.model.kind).training_plan(cfg.model)
    found = estimate(cfg, plan, model, ValidationSet(maps, y, maps, y, from_trunk=True), images=100)
    assert [e.stage.name for e in found] == ["stage1", "stage2"] and all(e.images_per_s > 0 for e in found)
