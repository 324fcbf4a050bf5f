"""Cross-entropy summed over attributes, unknown labels (-1) ignored.

L_C (paper Eq. 1-2) applies it to the GAP classifier logits; L_TC to the classifiers on fc10_a. Per attribute the
mean over the images whose label is known; an attribute with no known label in the batch adds nothing.

``label_smoothing`` (torch's): the target is 1 - s on the label and s spread evenly over all of the attribute's
values; 0 is the plain cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attribute_cross_entropy(
    logits: list[torch.Tensor], labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """logits: (B, V_a) per attribute; labels (B, A) value indices, -1 unknown -> scalar."""
    total = logits[0].new_zeros(())
    for a, lg in enumerate(logits):
        target = labels[:, a]
        known = target >= 0
        if known.any():
            total = total + F.cross_entropy(lg[known], target[known].long(), label_smoothing=label_smoothing)
    return total
