"""The model registry (model.kind -> class), each model's training plan and what the RetrievalModel protocol
promises: the kinds the config accepts are the registry's, an unknown kind is one ConfigError naming it, and every
registered model offers what the jobs call."""

from typing import get_args

import pytest
import torch

from fsnet.config import ModelConfig, TrainConfig
from fsnet.errors import ConfigError
from fsnet.model import MODELS, VARIANTS, RetrievalModel, build_model, model_class
from tests.model.helpers import SCHEMA_3, model_config


def test_config_kinds_are_the_registry():
    assert set(get_args(ModelConfig.model_fields["kind"].annotation)) == set(MODELS)
    assert all(cls.kind == kind for kind, cls in MODELS.items())


def test_unknown_kind_is_one_config_error():
    cfg = model_config().model_copy(update={"kind": "probe"})  # past validation, as a hand-built config could be
    with pytest.raises(ConfigError, match=r"^model.kind: unknown kind 'probe' \(kinds: fsn, adde\)$"):
        build_model(cfg, SCHEMA_3, pretrained=False)
    with pytest.raises(ConfigError, match="'probe'"):
        model_class("probe")


@pytest.mark.parametrize("kind", list(MODELS))
def test_every_model_offers_the_protocol(kind):
    model = build_model(model_config(f"model.kind={kind}"), SCHEMA_3, pretrained=False).eval()
    members = [m for m in RetrievalModel.__dict__ if not m.startswith("_")] + list(RetrievalModel.__annotations__)
    missing = [m for m in members if not hasattr(model, m)]
    assert not missing
    assert model.kind == kind and model.manipulation in ("replace", "additive")
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    shown = model.attention(images, 1)
    if kind == "adde":  # no localization: the explanation draws no map
        assert shown is None
        assert set(model.summary_figures()) == {"memory_off_diagonal_share"}
    else:
        attention, box = shown
        assert attention.ndim == 2 and len(box) == 4
        assert model.summary_figures() == {}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fashionsearchnet_plan(variant):
    cfg = model_config("model.kind=fsn", f"model.variant={variant}")
    plan = model_class("fsn").training_plan(cfg)
    expected = ["stage1", "stage2", "memory"] + (["stage3"] if VARIANTS[variant].global_learning else [])
    assert [s.name for s in plan] == expected
    assert [(s.data, s.section, s.step) for s in plan] == [
        ("images", "stage1", "local"),
        ("images", "stage2", "local"),
        ("memory", None, None),
        ("features", "stage3", "global"),
    ][: len(plan)]


def test_adde_plan():
    plan = model_class("adde").training_plan(model_config("model.kind=adde"))
    assert [(s.name, s.number, s.data, s.section, s.step) for s in plan] == [
        ("stage1", 1, "images", "stage1", "local"),
        ("memory", 0, "memory", None, None),
        ("stage3", 3, "images", "adde", "manipulation"),
    ]


@pytest.mark.parametrize("kind", list(MODELS))
def test_plan_stages_name_config_sections_and_parameters(kind):
    """Every trained stage's section is a train.<section> and its number one the model's stage_parameters know."""
    cfg = model_config(f"model.kind={kind}", "model.variant=full")
    model = build_model(cfg, SCHEMA_3, pretrained=False)
    for stage in model_class(kind).training_plan(cfg):
        assert stage.name == ("memory" if stage.data == "memory" else f"stage{stage.number}")
        if stage.data != "memory":
            assert stage.section in TrainConfig.model_fields
            assert model.stage_parameters(stage.number)
