"""Attribute activation maps and their boxes (paper section 3.2, Eq. 3).

The map of attribute a is the class activation map of its highest-scoring value c:
    M_a(i, j) = sum_k w_a(k, c) * conv7_k(i, j).
Its region: the pixels strictly above ``threshold`` (the paper's 20%) of the map's maximum; the box is the
tightest box around the largest 8-connected region of those pixels (diagonal neighbours join a region; a tie
between equal-sized regions goes to the one whose last pixel in row-major order comes last). A map that is not
finite everywhere, or whose maximum is not positive (no evidence anywhere), gives the whole-map box.

Boxes are (x0, y0, x1, y1) in conv5 cells with exclusive ends: cell (i, j) spans [j, j+1) x [i, i+1), the
convention of ``roi_align(..., aligned=True)``; multiply by the stride (or image / map size) to draw them.
Everything is batched over (B, A) on the maps' device: no Python loop over images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attribute_maps(conv7: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """conv7 (B, C, H, W) and the chosen classes' weight rows (B, A, C) -> maps (B, A, H, W)."""
    return torch.einsum("bac,bchw->bahw", class_weights, conv7)


def whole_boxes(
    batch: int, attributes: int, height: int, width: int, device: torch.device | None = None
) -> torch.Tensor:
    """(B, A, 4) boxes covering the whole map."""
    box = torch.tensor([0.0, 0.0, float(width), float(height)], device=device)
    return box.expand(batch, attributes, 4).clone()


def connected_labels(mask: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, H, W) int64 labels of 8-connected regions (0 = background; a region's label is
    1 + the largest flat index among its pixels). Label propagation by 3x3 max-pooling until nothing changes:
    at most one step per pixel of the longest path inside a region."""
    n, h, w = mask.shape
    index = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).view(1, h, w).expand(n, h, w)
    labels = torch.where(mask, index, torch.zeros_like(index))
    fg = mask.float()
    for _ in range(h * w):
        grown = F.max_pool2d(labels.unsqueeze(1), 3, stride=1, padding=1).squeeze(1) * fg
        if torch.equal(grown, labels):
            break
        labels = grown
    return labels.long()


def boxes_from_maps(maps: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, A, H, W) maps -> (B, A, 4) boxes around each map's largest region above ``threshold`` x max."""
    b, a, h, w = maps.shape
    flat = maps.reshape(b * a, h, w).float()
    finite = torch.isfinite(flat).flatten(1).all(dim=1)
    safe = torch.where(torch.isfinite(flat), flat, torch.zeros_like(flat))
    peak = safe.flatten(1).max(dim=1).values  # (N,)
    valid = finite & (peak > 0)
    mask = (safe > threshold * peak.view(-1, 1, 1)) & valid.view(-1, 1, 1)  # (N, H, W)

    labels = connected_labels(mask).flatten(1)  # (N, H*W), 0 = background
    sizes = torch.zeros(b * a, h * w + 1, device=maps.device).scatter_add_(
        1, labels, torch.ones_like(labels, dtype=torch.float32)
    )
    sizes[:, 0] = 0
    largest = sizes.flip(1).argmax(dim=1)  # ties: the highest label (flip makes argmax's first hit the last one)
    largest = h * w - largest  # undo the flip: label value
    keep = (labels == largest.view(-1, 1)).view(-1, h, w)  # (N, H, W) the chosen region

    rows = torch.arange(h, device=maps.device).view(1, h, 1).expand_as(keep)
    cols = torch.arange(w, device=maps.device).view(1, 1, w).expand_as(keep)
    big = h + w
    y0 = torch.where(keep, rows, big).flatten(1).min(dim=1).values
    y1 = torch.where(keep, rows, -1).flatten(1).max(dim=1).values + 1
    x0 = torch.where(keep, cols, big).flatten(1).min(dim=1).values
    x1 = torch.where(keep, cols, -1).flatten(1).max(dim=1).values + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()  # (N, 4) in cells
    whole = torch.tensor([0.0, 0.0, float(w), float(h)], device=maps.device).expand_as(boxes)
    boxes = torch.where(valid.view(-1, 1), boxes, whole)
    return boxes.view(b, a, 4)


def boxes_to_pixels(boxes: torch.Tensor, map_size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """Boxes in map cells -> image pixels (x0, y0, x1, y1), given (H, W) of the map and of the image."""
    sy, sx = image_size[0] / map_size[0], image_size[1] / map_size[1]
    return boxes * torch.tensor([sx, sy, sx, sy], device=boxes.device, dtype=boxes.dtype)
