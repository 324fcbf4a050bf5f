"""BatchNorm statistics (fsnet/model/batch_norm.py): which layers a stage trains, and the statistics re-estimated
after it. A trunk without pretrained weights trains every BatchNorm; a frozen trunk and a pretrained trunk with
train.batch_norm=frozen keep theirs (eval mode); re-estimation is the plain average of per-batch statistics."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from fsnet.config import load_config
from fsnet.losses import StageLoss
from fsnet.model import build_model
from fsnet.model.batch_norm import reestimate_statistics, trained_batch_norms, training_mode
from fsnet.training import local_step, make_optimizer, trainable
from tests.model.helpers import schema_of

SIZE = 32
SCHEMA = schema_of([2, 3])


def tiny(*sets: str):
    cfg = load_config(["tiny"], [f"model.image_size={SIZE}", *sets])
    torch.manual_seed(0)
    return build_model(cfg.model, SCHEMA), cfg.train


def pretrained(tmp_path, *sets: str):
    """A MobileNetV2 trunk from a torchvision state dict file: ``model.weights`` other than none, as a pretrained
    (or fine-tuned) trunk is, without downloading anything."""
    path = tmp_path / "mobilenet_v2.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), path)
    return tiny("model.backbone=mobilenet_v2", f"model.weights={path}", *sets)


def trunk_norms(model) -> list[nn.BatchNorm2d]:
    return [m for m in model.backbone.trunk.modules() if isinstance(m, nn.BatchNorm2d)]


def statistics(layers) -> list[torch.Tensor]:
    return [t.clone() for m in layers for t in (m.running_mean, m.running_var)]


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def one_step(model, train) -> None:
    """One stage-1 step (L_C, SGD) in the stage's training mode."""
    optimizer = make_optimizer(trainable(model, 1), train.stage1, train)
    training_mode(model, train)
    labels = torch.stack([torch.arange(8) % 2, torch.arange(8) % 3], dim=1)
    loss, _ = local_step(model, images(8), labels, StageLoss(train.stage1, model.variant))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_a_trunk_without_pretrained_weights_trains_every_batch_norm():
    model, train = tiny("train.batch_norm=frozen")  # frozen concerns pretrained trunks only
    assert train.batch_norm == "frozen" and train.trunk == "finetune"
    training_mode(model, train)
    norms = trunk_norms(model)
    assert len(norms) == 4 and all(m.training for m in norms)
    assert trained_batch_norms(model, train) == norms
    before = statistics(norms)
    one_step(model, train)
    assert all(not torch.equal(a, b) for a, b in zip(before, statistics(norms)))


def test_a_frozen_trunk_stays_in_eval_mode_and_keeps_its_statistics():
    model, train = tiny("train.trunk=frozen")
    training_mode(model, train)
    assert not any(m.training for m in model.backbone.trunk.modules())
    assert model.backbone.conv5.training and model.classifiers.training  # the layers after it train
    assert trained_batch_norms(model, train) == []
    before = statistics(trunk_norms(model))
    one_step(model, train)
    reestimate_statistics(model, [images(8)], train)  # nothing to re-estimate: statistics untouched
    assert all(torch.equal(a, b) for a, b in zip(before, statistics(trunk_norms(model))))
    assert not model.training


def test_a_pretrained_trunk_keeps_its_statistics_unless_batch_norm_trains(tmp_path):
    model, train = pretrained(tmp_path, "train.batch_norm=frozen")
    norms = trunk_norms(model)
    training_mode(model, train)
    assert len(norms) > 30 and not any(m.training for m in norms)
    assert model.backbone.conv5.training  # everything else trains
    assert trained_batch_norms(model, train) == []
    before, scales = statistics(norms), [m.weight.detach().clone() for m in norms]
    one_step(model, train)
    assert all(torch.equal(a, b) for a, b in zip(before, statistics(norms)))  # its ImageNet statistics kept
    assert any(not torch.equal(s, m.weight) for s, m in zip(scales, norms))  # its affine parameters train

    model, train = pretrained(tmp_path)  # the default: train, re-estimated after each stage
    assert train.batch_norm == "train"
    training_mode(model, train)
    assert all(m.training for m in trunk_norms(model)) and trained_batch_norms(model, train) == trunk_norms(model)


def test_reestimated_statistics_are_the_average_of_the_batch_statistics():
    """Against a plain loop: each BatchNorm's input captured batch by batch, its mean and unbiased variance per
    channel averaged over the batches."""
    model, train = tiny()
    one_step(model, train)
    batches = [images(8, seed) for seed in (1, 2, 3)]
    inputs: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in trunk_norms(model)}
    probe = copy.deepcopy(model).train()
    hooks = [
        m.register_forward_hook(lambda m, args, out, key=key: inputs[key].append(args[0].detach()))
        for key, m in zip(inputs, trunk_norms(probe))
    ]
    with torch.no_grad():
        for b in batches:
            probe(b, heads=False)
    for h in hooks:
        h.remove()

    assert reestimate_statistics(model, batches, train) is model
    assert not model.training and not any(m.training for m in model.modules())
    for m, seen in inputs.items():
        mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen]).mean(0)
        var = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1) for x in seen]).mean(0)  # unbiased, per channel
        torch.testing.assert_close(m.running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.running_var, var, rtol=1e-4, atol=1e-5)
        assert m.momentum == 0.1 and int(m.num_batches_tracked) == 3
    with pytest.raises(ValueError, match="no images"):
        reestimate_statistics(model, [], train)


def test_class_ordered_batches_leave_the_last_class_statistics_and_reestimation_restores_the_whole_set():
    """The catalog in its table order: 24 batches of red products, then 24 of blue ones. Momentum 0.1 keeps about
    the last 20 batches, so the first BatchNorm's running mean describes the blue products, not the set the
    index embeds; re-estimated over mixed batches of the same images it describes the whole set."""
    g = torch.Generator().manual_seed(0)
    red = torch.arange(384) < 192  # catalog order
    colour = torch.where(red[:, None], torch.tensor([170.0, 90, 90]), torch.tensor([90.0, 90, 170]))
    shade = 20 * torch.randn(384, 1, generator=g)
    x = ((colour + shade)[:, :, None, None] + 25 * torch.randn(384, 3, SIZE, SIZE, generator=g)).clamp(0, 255)
    x = x.to(torch.uint8)
    labels = torch.stack([(~red).long(), torch.randint(0, 3, (384,), generator=g)], dim=1)
    model, train = tiny()
    optimizer = make_optimizer(trainable(model, 1), train.stage1, train)
    loss_fn = StageLoss(train.stage1, model.variant)
    for batch in torch.arange(384).split(8):  # in catalog order
        training_mode(model, train)
        loss, _ = local_step(model, x[batch], labels[batch], loss_fn)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    first = model.backbone.trunk[0]  # conv -> BatchNorm -> ReLU
    with torch.no_grad():
        maps = first[0](model.normalize(x))  # (N, 16, S/2, S/2): the first BatchNorm's input, final weights
    whole, blue, sd = maps.mean(dim=(0, 2, 3)), maps[~red].mean(dim=(0, 2, 3)), maps.std(dim=(0, 2, 3))

    def distance(a, b) -> float:  # mean over channels, in standard deviations of the whole set
        return float(((a - b).abs() / sd).mean())

    assert distance(blue, whole) > 0.3
    assert distance(first[1].running_mean, blue) < 0.4 * distance(first[1].running_mean, whole)
    mixed = list(x[torch.randperm(384, generator=g)].split(8))
    reestimate_statistics(model, mixed, train)
    assert distance(first[1].running_mean, whole) < 1e-4
