"""Backbones: every one returns the same pair, a conv5-like map for ROI pooling and a conv7-like map for the
attribute activation maps, both at stride 16 of the input and of the same size.

Layout (paper Fig. 2): a pretrained trunk -> conv5 (new, ``conv5_channels`` maps, the paper's 384) -> conv6 and
conv7 (new, ``conv67_channels`` maps, the paper's 512), 3x3 convolutions with ReLU that keep the spatial size.

- ``alexnet``: torchvision's AlexNet conv1-conv4 with ImageNet weights ("up to conv4"), then the new conv5.
  torchvision ships the single-GPU "one weird trick" AlexNet (conv1-conv5 = 64, 192, 384, 256, 256 maps, not the
  original 96, 256, 384, 384, 256), so its conv4 gives 256 maps; our conv5 takes those 256 and gives 384, which is
  how the paper's conv5 = 384 is realised. Its last max-pool is dropped: conv5 stays at stride 16 (13x13 at 224 px).
- ``mobilenet_v2``: torchvision's features up to the 320-map block; the last stride-2 stage runs at stride 1 with
  dilation 2 (as torchvision's DeepLab backbones do), so the whole pretrained depth is kept at stride 16.
- ``resnet18`` / ``resnet50``: conv1 .. layer4 with layer4 dilated the same way.
- ``tiny``: four stride-2 convolutions with batch norm (it trains from scratch), for tests and seconds-scale runs.

Tuned blocks (``train.tuned_blocks``, a frozen trunk): the trunk's last blocks (children of its Sequential:
MobileNetV2's inverted residual blocks, ResNet's layers) train with the new layers; the maps cached for such a run
stop before them, and ``forward(from_trunk=True)`` runs them on those maps.

A backbone is one entry of ``BACKBONES`` (its network, ImageNet weights, where its trunk ends, the trunk's width).

``weights``: ``none``; ``imagenet`` (torchvision's weights enum: the file is looked up in
``$TORCH_HOME/hub/checkpoints/`` and downloaded there when absent and the network allows); or a path / URL of a
state dict for the torchvision architecture (a fine-tuned torchvision model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torchvision
from torch import nn
from torchvision.models import AlexNet_Weights, MobileNet_V2_Weights, ResNet18_Weights, ResNet50_Weights

from fsnet.errors import ModelError

STRIDE = 16


@dataclass(frozen=True)
class BackboneKind:
    """One backbone: its network, its ImageNet weights, where its trunk ends, and the trunk's width."""

    network: Callable[..., nn.Module]  # torchvision's constructor (called with weights=None), or fsnet's own
    imagenet: torchvision.models.WeightsEnum | None  # torchvision's weights enum; None: it has no pretrained weights
    trunk: Callable[[nn.Module], nn.Sequential]  # the network -> its trunk, a Sequential of blocks at stride 16
    channels: int  # maps the trunk gives


def _alexnet_trunk(net: nn.Module) -> nn.Sequential:
    return nn.Sequential(*list(net.features.children())[:10])  # conv1 .. conv4 + ReLU, stride 16


def _mobilenet_v2_trunk(net: nn.Module) -> nn.Sequential:
    features = list(net.features.children())[:18]  # up to the 320-map block; drop the 1x1 to 1280
    for block in features[14:18]:  # the last stride-32 stage, dilated instead
        depthwise = block.conv[1][0]
        depthwise.stride, depthwise.dilation, depthwise.padding = (1, 1), (2, 2), (2, 2)
    return nn.Sequential(*features)


def _resnet_trunk(net: nn.Module) -> nn.Sequential:
    _dilate_layer4(net)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)


def _tiny(weights=None) -> nn.Sequential:
    """Four stride-2 convolutions with batch norm: the trunk itself."""
    return nn.Sequential(*(conv_relu(i, o, 2, batch_norm=True) for i, o in [(3, 16), (16, 32), (32, 48), (48, 64)]))


BACKBONES: dict[str, BackboneKind] = {
    "alexnet": BackboneKind(torchvision.models.alexnet, AlexNet_Weights.IMAGENET1K_V1, _alexnet_trunk, 256),
    "mobilenet_v2": BackboneKind(
        torchvision.models.mobilenet_v2, MobileNet_V2_Weights.IMAGENET1K_V1, _mobilenet_v2_trunk, 320
    ),
    "resnet18": BackboneKind(torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1, _resnet_trunk, 512),
    "resnet50": BackboneKind(torchvision.models.resnet50, ResNet50_Weights.IMAGENET1K_V1, _resnet_trunk, 2048),
    "tiny": BackboneKind(_tiny, None, lambda net: net, 64),
}


def conv_relu(cin: int, cout: int, stride: int = 1, batch_norm: bool = False) -> nn.Sequential:
    """A new 3x3 conv + ReLU, He-initialised so activations keep their scale through the new layers (PyTorch's
    default initialisation shrinks them layer by layer, and the classifiers on conv7 then barely learn)."""
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not batch_norm)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers = [conv, nn.BatchNorm2d(cout)] if batch_norm else [conv]
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetNormalize(nn.Module):
    """Images (B, 3, H, W), uint8 0..255 or float 0..1 -> float, normalised with the mean and std the torchvision
    ImageNet weights were trained with (the same serves the weight-less backbones)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class Backbone(nn.Module):
    """trunk -> conv5 -> conv6 -> conv7; ``forward`` returns (conv5, conv7)."""

    def __init__(self, name: str, trunk: nn.Module, trunk_channels: int, conv5_channels: int, conv67_channels: int):
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.conv5 = conv_relu(trunk_channels, conv5_channels)
        self.conv6 = conv_relu(conv5_channels, conv67_channels)
        self.conv7 = conv_relu(conv67_channels, conv67_channels)
        self.conv5_channels = conv5_channels
        self.conv7_channels = conv67_channels
        self.tuned_blocks = 0  # the trunk's last blocks that run on cached maps (see set_tuned_blocks)

    def set_tuned_blocks(self, count: int) -> None:
        """Make the trunk's last ``count`` blocks part of what ``from_trunk`` runs: cached maps are then those of
        the blocks before them."""
        if not 0 <= count < len(self.trunk):
            raise ModelError(
                f"train.tuned_blocks={count}: the {self.name} trunk has {len(self.trunk)} blocks; "
                f"tune 0 to {len(self.trunk) - 1} of them"
            )
        self.tuned_blocks = count

    def cached(self) -> nn.Sequential:
        """The trunk's blocks before the tuned ones: those whose maps a frozen-trunk run reads from the cache."""
        return split_trunk(self.trunk, self.tuned_blocks)[0]

    def tuned(self) -> nn.Sequential:
        """The trunk's tuned blocks (an empty Sequential, the identity, when none)."""
        return split_trunk(self.trunk, self.tuned_blocks)[1]

    def forward(self, x: torch.Tensor, from_trunk: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """x: normalised images (B, 3, H, W), or with ``from_trunk`` the maps of the trunk's cached blocks
        (B, C, H/16, W/16) already computed (a frozen trunk's cached features, fsnet/trunk_features.py)."""
        conv5 = self.conv5(self.tuned()(x) if from_trunk else self.trunk(x))  # (B, C5, H/16, W/16)
        conv7 = self.conv7(self.conv6(conv5))  # (B, C7, H/16, W/16)
        return conv5, conv7


def split_trunk(trunk: nn.Sequential, tuned_blocks: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(the blocks before the last ``tuned_blocks``, those last blocks): the whole trunk and an empty Sequential
    (the identity) for 0. The parts share the trunk's modules."""
    if not tuned_blocks:
        return trunk, nn.Sequential()
    return trunk[: len(trunk) - tuned_blocks], trunk[len(trunk) - tuned_blocks :]


def build_backbone(name: str, weights: str, conv5_channels: int, conv67_channels: int) -> Backbone:
    if name not in BACKBONES:
        raise ModelError(f"model.backbone={name}: unknown (backbones: {', '.join(BACKBONES)})")
    kind = BACKBONES[name]
    if kind.imagenet is None and weights != "none":
        raise ModelError(
            f"model.weights={weights}: the {name} backbone has no pretrained weights; use model.weights=none"
        )
    net = kind.network(weights=None)
    if weights == "imagenet":
        net.load_state_dict(imagenet_state_dict(name, kind.imagenet))
    elif weights != "none":
        try:
            net.load_state_dict(_state_dict_from(weights, name))
        except RuntimeError as err:  # missing / unexpected keys, shape mismatches
            raise ModelError(
                f"model.weights={weights}: not a torchvision {name} state dict: {str(err).splitlines()[0]}"
            ) from None
    return Backbone(name, kind.trunk(net), kind.channels, conv5_channels, conv67_channels)


def _dilate_layer4(net: nn.Module) -> None:
    """layer4 at stride 1 with dilation 2, as torchvision's replace_stride_with_dilation does (which BasicBlock
    refuses in its constructor; its 3x3 convs take dilation like any other)."""
    first, *rest = list(net.layer4.children())
    strided = first.conv2 if hasattr(first, "conv3") else first.conv1  # Bottleneck strides in conv2
    strided.stride = (1, 1)
    first.downsample[0].stride = (1, 1)
    for block in rest:
        for conv in (block.conv2,) if hasattr(block, "conv3") else (block.conv1, block.conv2):
            conv.dilation, conv.padding = (2, 2), (2, 2)


def imagenet_state_dict(name: str, weights: torchvision.models.WeightsEnum) -> dict:
    """torchvision's own ImageNet weights, from $TORCH_HOME/hub/checkpoints or downloaded there."""
    file = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as err:  # no network, proxy refused, disk full: one message that says what to do
        raise ModelError(
            f"model.weights=imagenet: {name}'s ImageNet weights are not at {file} and could not be downloaded "
            f"({type(err).__name__}: {err}); put {os.path.basename(weights.url)} there (from {weights.url}) "
            "or set model.weights=none"
        ) from None


def _state_dict_from(location: str, name: str) -> dict:
    try:
        if "://" in location and not location.startswith("file://"):
            return torch.hub.load_state_dict_from_url(location, progress=False, map_location="cpu", weights_only=True)
        return torch.load(location.removeprefix("file://"), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(
            f"model.weights={location}: cannot load a {name} state dict ({type(err).__name__}: {err})"
        ) from None
