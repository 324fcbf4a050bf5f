"""Losses only compute: tensors in, a tensor out. Weighting them by stage happens in ``stage_loss``."""

from fsnet.losses.attribute_cross_entropy import attribute_cross_entropy
from fsnet.losses.memory_consistency import memory_consistency_loss
from fsnet.losses.off_diagonal import off_diagonal_penalty
from fsnet.losses.region_triplet import region_triplet_loss
from fsnet.losses.soft_triplet import soft_triplet_loss
from fsnet.losses.stage_loss import StageLoss

__all__ = [
    "StageLoss",
    "attribute_cross_entropy",
    "memory_consistency_loss",
    "off_diagonal_penalty",
    "region_triplet_loss",
    "soft_triplet_loss",
]
