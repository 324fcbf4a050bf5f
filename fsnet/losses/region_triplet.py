"""L_T: the soft-triplet loss on triplets of regions (paper section 3.4): for each attribute a, triplets of the
attribute representations fc10_a (anchor, a positive with the same value of a, a negative with another),
independent of the other attributes. Per attribute the mean over its triplets; summed over attributes."""

from __future__ import annotations

import torch

from fsnet.losses.soft_triplet import soft_triplet_loss
from fsnet.sampling import RegionTriplets


def region_triplet_loss(reps: torch.Tensor, triplets: RegionTriplets) -> torch.Tensor:
    """reps (B, A, D) -> scalar."""
    total = reps.new_zeros(())
    for a in torch.unique(triplets.attribute).tolist():
        pick = triplets.attribute == a
        total = total + soft_triplet_loss(
            reps[triplets.anchor[pick], a], reps[triplets.positive[pick], a], reps[triplets.negative[pick], a]
        )
    if triplets.attribute.numel() == 0:
        total = total + reps.sum() * 0.0  # no triplet: zero, still in the graph
    return total
