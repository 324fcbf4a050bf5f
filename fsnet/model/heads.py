"""Per-attribute heads: ROI pooling of conv5 by each attribute's box -> fc9 -> fc10 (the attribute
representation), with optional feature fusion (whole-map pooled conv5 concatenated before fc9)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fsnet.model.mask_dropout import MaskDropout
from fsnet.model.roi_align import roi_align


class GroupedLinear(nn.Module):
    """A separate linear layer per attribute, applied in one einsum: (B, A, I) -> (B, A, O)."""

    def __init__(self, groups: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(groups, out_features))
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default initialisation, per group
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bai,aio->bao", x, self.weight) + self.bias


class AttributeHeads(nn.Module):
    def __init__(
        self,
        attributes: int,
        conv5_channels: int,
        roi_size: int,
        fc_dim: int,
        embed_dim: int,
        dropout: float,
        fusion: bool,
    ):
        super().__init__()
        self.roi_size = roi_size
        self.fusion = fusion
        in_features = conv5_channels * roi_size * roi_size + (conv5_channels if fusion else 0)
        self.dropout = MaskDropout(dropout)
        self.fc9 = GroupedLinear(attributes, in_features, fc_dim)
        self.fc10 = GroupedLinear(attributes, fc_dim, embed_dim)

    def forward(self, conv5: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """conv5 (B, C, H, W), boxes (B, A, 4) in conv5 cells -> attribute representations (B, A, D)."""
        b, a = boxes.shape[:2]
        x = roi_align(conv5, boxes, self.roi_size, sampling_ratio=2)  # (B, A, C * r * r)
        if self.fusion:
            whole = F.adaptive_avg_pool2d(conv5, 1).flatten(1)  # (B, C)
            x = torch.cat([x, whole.unsqueeze(1).expand(b, a, whole.shape[1])], dim=2)
        x = F.relu(self.fc9(self.dropout(x)))  # (B, A, fc_dim)
        return self.fc10(self.dropout(x))  # (B, A, D)
