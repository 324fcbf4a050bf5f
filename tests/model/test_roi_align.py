"""fsnet/model/roi_align.py against torchvision's roi_align (aligned=True): the same pooled values and the same
gradient on conv5, for boxes inside, on the edges of and partly outside the map."""

import pytest
import torch
import torchvision

from fsnet.model.roi_align import roi_align


def boxes_of(b: int, a: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """(B, A, 4) boxes (x1, y1, x2, y2) in cells: random ones, the whole map, a single cell, and ones past the edges."""
    x = torch.rand(b, a, 2, generator=generator) * w
    y = torch.rand(b, a, 2, generator=generator) * h
    boxes = torch.stack([x.min(-1).values, y.min(-1).values, x.max(-1).values, y.max(-1).values], dim=-1)
    boxes[0, 0] = torch.tensor([0.0, 0.0, w, h])  # the whole map (variants without localization)
    boxes[0, 1] = torch.tensor([2.0, 1.0, 3.0, 2.0])  # one cell
    boxes[1, 0] = torch.tensor([-2.5, -1.7, w + 1.5, h + 2.0])  # past every edge: points outside add zero
    boxes[1, 1] = torch.tensor([w - 0.2, h - 0.3, w, h])  # a sliver at the far corner
    return boxes


@pytest.mark.parametrize("size,h,w,p", [(6, 6, 6, 4), (13, 13, 13, 6), (8, 10, 7, 3)])
def test_same_values_and_gradient_as_torchvision(size, h, w, p):
    g = torch.Generator().manual_seed(size)
    b, a, c = 3, 5, 4
    conv5 = torch.randn(b, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    boxes = boxes_of(b, a, h, w, g).double()
    rois = torch.cat([torch.arange(b).repeat_interleave(a)[:, None].double(), boxes.reshape(b * a, 4)], dim=1)
    reference = torchvision.ops.roi_align(conv5, rois, p, 1.0, 2, aligned=True).reshape(b, a, -1)
    ours = roi_align(conv5, boxes, p, sampling_ratio=2)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    upstream = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    (grad_ref,) = torch.autograd.grad(reference, conv5, upstream)
    (grad_ours,) = torch.autograd.grad(ours, conv5, upstream)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-10, atol=1e-12)
    assert grad_ours.abs().sum() > 0


def test_float32_as_the_heads_run_it():
    g = torch.Generator().manual_seed(0)
    conv5 = torch.randn(4, 16, 6, 6, generator=g)
    boxes = boxes_of(4, 7, 6, 6, g)
    rois = torch.cat([torch.arange(4).repeat_interleave(7)[:, None].float(), boxes.reshape(-1, 4)], dim=1)
    reference = torchvision.ops.roi_align(conv5, rois, 4, 1.0, 2, aligned=True).reshape(4, 7, -1)
    torch.testing.assert_close(roi_align(conv5, boxes, 4), reference, rtol=1e-5, atol=1e-5)
