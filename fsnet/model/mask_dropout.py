"""Dropout whose mask is uniform numbers compared with the rate: on a CPU, torch's own dropout draws its mask with a
Bernoulli sampler that takes several times as long, a visible part of a stage-2 step on the heads' wide inputs
(bench/step_bench.py).

The same computation as ``nn.Dropout``: in training mode each value is zeroed with probability p and the rest scaled
by 1 / (1 - p), from torch's global generator as ``nn.Dropout`` draws; in eval mode the input as it is. On other
devices torch's own fused dropout, which is fast there."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        keep = torch.rand_like(x) >= self.p  # (same shape as x) True with probability 1 - p
        return x * keep.to(x.dtype) * (1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
