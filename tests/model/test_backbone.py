import os

import pytest
import torch
import torchvision

from fsnet.errors import ModelError
from fsnet.model.backbone import BACKBONES, STRIDE, build_backbone

MOBILENET_FILE = os.path.join(torch.hub.get_dir(), "checkpoints", "mobilenet_v2-b0353104.pth")


@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_gives_conv5_and_conv7_at_stride_16(name):
    backbone = build_backbone(name, "none", 24, 40).eval()
    with torch.no_grad():
        conv5, conv7 = backbone(torch.randn(2, 3, 96, 128))
    assert conv5.shape[:2] == (2, 24) and conv7.shape[:2] == (2, 40)
    assert conv5.shape[2:] == conv7.shape[2:]
    h, w = conv5.shape[2:]
    assert abs(h - 96 / STRIDE) <= 1 and abs(w - 128 / STRIDE) <= 1, (name, h, w)


def test_alexnet_is_the_papers_layout():
    backbone = build_backbone("alexnet", "none", 384, 512)
    convs = [m for m in backbone.trunk if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 192, 384, 256]  # torchvision's conv1-conv4
    assert backbone.conv5[0].in_channels == 256 and backbone.conv5[0].out_channels == 384
    assert backbone.conv6[0].out_channels == 512 and backbone.conv7[0].out_channels == 512
    with torch.no_grad():
        conv5, _ = backbone(torch.randn(1, 3, 224, 224))
    assert conv5.shape == (1, 384, 13, 13)


@pytest.mark.skipif(
    not os.path.exists(MOBILENET_FILE), reason=f"{MOBILENET_FILE} is absent (copy ../shared/weights there)"
)
def test_mobilenet_imagenet_weights_load_offline():
    backbone = build_backbone("mobilenet_v2", "imagenet", 32, 32)
    reference = torchvision.models.mobilenet_v2(weights=None)
    reference.load_state_dict(torch.load(MOBILENET_FILE, weights_only=True))
    assert torch.equal(backbone.trunk[0][0].weight, reference.features[0][0].weight)
    assert torch.equal(backbone.trunk[17].conv[2].weight, reference.features[17].conv[2].weight)


def test_missing_imagenet_weights_without_network_name_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(url, *args, **kwargs):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(ModelError) as err:
        build_backbone("resnet18", "imagenet", 32, 32)
    message = str(err.value)
    assert str(tmp_path / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message and "model.weights=none" in message


def test_weights_from_a_path(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    backbone = build_backbone("resnet18", str(tmp_path / "r18.pth"), 32, 32)
    assert torch.equal(backbone.trunk[0].weight, reference.conv1.weight)
    torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="not a torchvision resnet18 state dict"):
        build_backbone("resnet18", str(tmp_path / "bad.pth"), 32, 32)
    with pytest.raises(ModelError, match="tiny backbone has no pretrained weights"):
        build_backbone("tiny", "imagenet", 32, 32)
