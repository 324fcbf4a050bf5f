"""ROI Align as a product: each box's pooled cells are fixed bilinear weights over the conv5 map, so the pooling of
every (image, attribute) box is one batched matrix product, and so is its gradient.

Why not ``torchvision.ops.roi_align``: the same numbers (aligned=True, a fixed sampling ratio), but its CPU
backward is a loop over every sample point and channel; in stage 2 on fashion-product-small's cached maps it was a
third of the backward pass and a fifth of the whole step (py-spy, 2 cores). The maps here are small (6x6 to 14x14
cells), so the weights, (B, A * P * Q, H * W), are small too, and the product runs on BLAS on any device.

The weights are torchvision's (csrc/ops/cpu/roi_align_kernel.cpp): with ``aligned`` a box (x1, y1, x2, y2) in
cells starts at x1 - 0.5; each of its P x Q bins averages ``sampling_ratio``^2 points at the bin's regular
sub-grid; a point outside [-1, H] x [-1, W] adds zero, one inside is clamped to [0, H - 1] and read bilinearly. A
point's weight is a product of a row weight and a column weight, and so is the sum over a bin's points, so the
weights of a box are an outer product of a (P, H) and a (Q, W) matrix."""

from __future__ import annotations

import torch


def axis_weights(start: torch.Tensor, end: torch.Tensor, bins: int, size: int, sampling_ratio: int) -> torch.Tensor:
    """Along one axis: box starts and ends (...,) in cells (already shifted by -0.5) -> (..., bins, size), the
    summed bilinear weight of each bin's sample points on each cell."""
    bin_size = (end - start) / bins  # (...,)
    steps = (
        torch.arange(bins, dtype=start.dtype, device=start.device)[:, None]
        + (torch.arange(sampling_ratio, dtype=start.dtype, device=start.device)[None, :] + 0.5) / sampling_ratio
    ).reshape(-1)  # (bins * s,) positions in units of a bin
    points = start[..., None] + steps * bin_size[..., None]  # (..., bins * s)
    inside = (points >= -1.0) & (points <= size)
    points = points.clamp(min=0.0)
    low = points.floor().clamp(max=size - 1)
    points = torch.where(low >= size - 1, low, points)  # past the last cell: read the last cell
    frac = points - low  # 0 where clamped to the last cell
    high = (low + 1).clamp(max=size - 1)
    cells = torch.arange(size, dtype=start.dtype, device=start.device)
    weights = (1.0 - frac)[..., None] * (low[..., None] == cells) + frac[..., None] * (high[..., None] == cells)
    weights = weights * inside[..., None]  # (..., bins * s, size)
    return weights.unflatten(-2, (bins, sampling_ratio)).sum(-2)  # (..., bins, size)


def roi_align(conv5: torch.Tensor, boxes: torch.Tensor, output_size: int, sampling_ratio: int = 2) -> torch.Tensor:
    """conv5 (B, C, H, W), boxes (B, A, 4) as (x1, y1, x2, y2) in conv5 cells -> (B, A, C * P * P) with P =
    ``output_size``: torchvision's ``roi_align(conv5, rois, P, 1.0, sampling_ratio, aligned=True)`` of every box of
    every image, each box's (C, P, P) flattened."""
    b, c, h, w = conv5.shape
    a, p = boxes.shape[1], output_size
    boxes = boxes.to(conv5.dtype) - 0.5  # aligned: pixel centres at half cells
    rows = axis_weights(boxes[..., 1], boxes[..., 3], p, h, sampling_ratio)  # (B, A, P, H)
    cols = axis_weights(boxes[..., 0], boxes[..., 2], p, w, sampling_ratio)  # (B, A, P, W)
    weights = torch.einsum("baph,baqw->bapqhw", rows, cols) / sampling_ratio**2  # (B, A, P, P, H, W)
    pooled = torch.bmm(weights.reshape(b, a * p * p, h * w), conv5.reshape(b, c, h * w).transpose(1, 2))
    return pooled.reshape(b, a, p * p, c).transpose(2, 3).reshape(b, a, c * p * p)  # (B, A, C * P * P)
