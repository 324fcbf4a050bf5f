"""fold_batch_norms (the trunk pass's frozen trunk): no batch norm left, the same maps as the trunk it came from."""

import pytest
import torch

from fsnet.config import load_config
from fsnet.trunk_features import fold_batch_norms, frozen_trunk


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet18", "tiny"])
def test_folded_trunk_computes_the_same_maps(backbone):
    trunk = frozen_trunk(load_config([], [f"model.backbone={backbone}", "model.weights=none"]).model)
    generator = torch.Generator().manual_seed(0)
    for norm in (m for m in trunk.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # statistics that matter
        norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator) * 0.1)
        norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
        norm.weight.data.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
    x = torch.randn(2, 3, 64, 64, generator=generator)
    with torch.inference_mode():
        expected = trunk(x)
        folded = fold_batch_norms(trunk)
        got = folded.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
