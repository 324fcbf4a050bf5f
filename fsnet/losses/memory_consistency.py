"""L1 consistency between memory prototypes and image features (the ADDE-style model's stage 3): the feature the
prototypes of an image's values compose, M onehot(y), should be the image's feature f. Per image, the mean
absolute difference over the chunks of the attributes whose value is known; averaged over images with at least one."""

from __future__ import annotations

import torch


def memory_consistency_loss(composed: torch.Tensor, features: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """composed, features (B, A, D); known (B, A) bool -> scalar (zero, still in the graph, when nothing is known)."""
    mask = known.unsqueeze(-1).to(features.dtype)  # (B, A, 1)
    per_image = ((composed - features).abs() * mask).sum(dim=(1, 2))  # (B,)
    cells = mask.sum(dim=(1, 2)) * features.shape[2]  # (B,) known chunk entries
    some = cells > 0
    if not some.any():
        return features.sum() * 0.0
    return (per_image[some] / cells[some]).mean()
