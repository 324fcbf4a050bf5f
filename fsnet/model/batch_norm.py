"""BatchNorm statistics: which BatchNorm layers a training stage lets update their running statistics, and those
statistics re-estimated after the stage on plain (un-augmented) training images.

Why: in train mode a BatchNorm layer normalises with the batch's own statistics and keeps a running average
(momentum 0.1: about the last 20 batches) for eval mode, which every representation, the memory block and the
index use. The training batches come a shard or two at a time in the table's order, so the average describes
whatever the last shards hold: on a catalog grouped by category, one category, and eval mode then normalises every
image with it. Held-out accuracy then falls far below the accuracy on training batches, and re-estimated statistics
bring it back (docs/experiments.md, "BatchNorm statistics and the catalog's order").

- A pretrained trunk keeps its ImageNet statistics (``train.batch_norm: frozen``, eval mode; its affine
  parameters may still train) or is not trained at all (``train.trunk: frozen``).
- A trunk without pretrained weights (``tiny``), or ``train.batch_norm: train``, must update them: after each
  image stage they are reset and re-estimated as a cumulative average over un-augmented training images with the
  final weights (``reestimate_statistics``), as the embed path will feed them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from fsnet.config import TrainConfig
from fsnet.model.retrieval_model import RetrievalModel


def _batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def training_mode(model: RetrievalModel, train: TrainConfig) -> RetrievalModel:
    """``model.train()`` for a training stage, then what keeps its ImageNet statistics back in eval mode: the whole
    trunk with ``train.trunk: frozen``; every BatchNorm of a pretrained trunk (``model.weights`` other than
    ``none``) with ``train.batch_norm: frozen``. Call it on the module itself (inside DDP: the wrapped one)."""
    model.train()
    trunk = model.backbone.trunk
    if train.trunk == "frozen":
        trunk.eval()
    elif model.cfg.weights != "none" and train.batch_norm == "frozen":
        for layer in _batch_norms(trunk):
            layer.eval()
    return model


def trained_batch_norms(model: RetrievalModel, train: TrainConfig) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers whose running statistics a training stage updates (those ``training_mode`` leaves in
    train mode): the ones ``reestimate_statistics`` re-estimates. The model's modes are restored."""
    modes = {m: m.training for m in model.modules()}
    training_mode(model, train)
    layers = [m for m in _batch_norms(model) if m.training and m.track_running_stats]
    for m, mode in modes.items():
        m.training = mode
    return layers


@torch.no_grad()
def reestimate_statistics(model: RetrievalModel, batches: Iterable[torch.Tensor], train: TrainConfig) -> RetrievalModel:
    """Reset the running statistics of the BatchNorm layers that train and re-estimate them as the cumulative
    average (momentum None) of train-mode forward passes without gradient over ``batches`` (B, 3, S, S) images, as
    the embed path feeds them: un-augmented, batches drawn at random from the training split (catalog-ordered
    batches would understate the variance). Their momenta are restored; the model is left in eval mode. Does
    nothing but ``eval()`` when no BatchNorm trains."""
    layers = trained_batch_norms(model, train)
    if layers:
        momenta = [layer.momentum for layer in layers]
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None
        training_mode(model, train)
        device = next(model.parameters()).device
        seen = 0
        for images in batches:
            model(images.to(device), heads=False)  # only the backbone and the GAP classifiers: BatchNorm is there
            seen += len(images)
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        if not seen:  # reset statistics (mean 0, variance 1) would describe nothing
            raise ValueError("reestimate_statistics: no images to estimate the BatchNorm statistics from")
    return model.eval()
