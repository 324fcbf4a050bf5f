"""The soft-triplet ranking loss (paper Eq. 4-6):

    d+ = exp(|h(a) - h(p)|) / (exp(|h(a) - h(p)|) + exp(|h(a) - h(n)|)),   d- likewise with |h(a) - h(n)|,
    loss = |(d+, d- - 1)|^2 = (d+)^2 + (d- - 1)^2,

averaged over triplets; zero (still part of the graph) when there is none. L_G is this loss on global
representations (F_{I,t}, F_{I+}, F_{I-})."""

from __future__ import annotations

import torch

EPS = 1e-12  # inside the square root: the distance's gradient stays finite when two embeddings coincide


def soft_triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """anchor, positive, negative: (T, D) -> scalar."""
    if anchor.shape[0] == 0:
        return anchor.sum() * 0.0
    d_pos = ((anchor - positive).pow(2).sum(dim=1) + EPS).sqrt()
    d_neg = ((anchor - negative).pow(2).sum(dim=1) + EPS).sqrt()
    soft = torch.softmax(torch.stack([d_pos, d_neg], dim=1), dim=1)  # (T, 2): (d+, d-), stable for large distances
    return (soft[:, 0].pow(2) + (soft[:, 1] - 1).pow(2)).mean()
