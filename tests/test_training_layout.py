"""The training layout (fsnet/training.py ``in_training_layout``, ``image_step``): a step of a channels-last model is
the plain model's step, the loss and every updated parameter the same, and the model stays channels-last; for the
tiny backbone on images and for MobileNetV2 with tuned blocks on cached trunk maps (the CPU presets' path)."""

import copy

import pytest
import torch

from fsnet.config import load_config
from fsnet.losses import StageLoss
from fsnet.model import build_model
from fsnet.training import image_step, in_training_layout, local_step, make_optimizer, trainable
from tests.model.helpers import SCHEMA_3, labels_with_pairs

BATCH = 8


def model_and_inputs(kind: str):
    """(config, model, inputs, from_trunk): the tiny model on 64 px images, or MobileNetV2 (no weights) with two
    tuned blocks on the maps of the blocks before them."""
    if kind == "tiny":
        cfg = load_config(["tiny"], ["model.variant=full"])
        model = build_model(cfg.model, SCHEMA_3)
        size = cfg.model.image_size
        return cfg, model, torch.randint(0, 256, (BATCH, 3, size, size), dtype=torch.uint8), False
    cfg = load_config(["cpu_mobilenet96"], ["model.weights=none", "model.variant=full"])
    model = build_model(cfg.model, SCHEMA_3, pretrained=False)
    model.backbone.set_tuned_blocks(cfg.train.tuned_blocks)
    with torch.no_grad():
        maps = model.backbone.cached()(torch.rand(BATCH, 3, 96, 96))  # (B, 160, 6, 6)
    return cfg, model, maps, True


def one_step(cfg, model, inputs, from_trunk: bool, stage: int, product: bool):
    """The loss and the model after one step of ``stage``, its dropout drawn from a fixed seed: the product's
    ``image_step``, or (``product=False``) the plain NCHW computation it replaced (``local_step``, backward, SGD)."""
    settings = getattr(cfg.train, f"stage{stage}")
    params = trainable(model, stage, frozen_trunk=from_trunk)
    optimizer = make_optimizer(params, settings, cfg.train, tuned=model.backbone.tuned().parameters())
    loss_fn = StageLoss(settings, model.variant)
    model.train()
    torch.manual_seed(0)
    labels, generator = labels_with_pairs(BATCH, SCHEMA_3.num_values), torch.Generator().manual_seed(0)
    if product:
        return image_step("local", model, model, inputs, labels, loss_fn, optimizer, generator, from_trunk).loss, model
    loss, _ = local_step(model, inputs.contiguous(), labels, loss_fn, generator, from_trunk=from_trunk)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item(), model


@pytest.mark.parametrize("kind", ["tiny", "mobilenet_v2"])
@pytest.mark.parametrize("stage", [1, 2])
def test_a_channels_last_step_is_the_plain_step(kind, stage):
    torch.manual_seed(0)
    cfg, model, inputs, from_trunk = model_and_inputs(kind)
    plain_loss, plain = one_step(cfg, copy.deepcopy(model), inputs, from_trunk, stage, product=False)
    convs = [m.weight for m in plain.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
    assert all(w.is_contiguous() for w in convs)  # NCHW indeed (a depthwise weight, one map in, is both)
    assert not all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    nhwc = in_training_layout(copy.deepcopy(model))
    convs = [m.weight for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    nhwc_loss, nhwc = one_step(cfg, nhwc, inputs, from_trunk, stage, product=True)

    assert nhwc_loss == pytest.approx(plain_loss, rel=1e-5)
    moved = 0
    for (name, before), after_plain, after_nhwc in zip(
        model.state_dict().items(), plain.state_dict().values(), nhwc.state_dict().values()
    ):
        torch.testing.assert_close(after_nhwc, after_plain, rtol=1e-4, atol=1e-5, msg=name)
        moved += not torch.equal(after_plain, before)
    assert moved > 4  # the step updated the stage's parameters (and the comparison saw them)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)  # the update kept the layout
