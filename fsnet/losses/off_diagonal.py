"""The penalty that makes the ADDE-style memory block-diagonal in effect: the L1 norm of its off-diagonal blocks
(a value's prototype outside its own attribute's chunk), per value column, averaged over the columns."""

from __future__ import annotations

import torch


def off_diagonal_penalty(off_diagonal: torch.Tensor) -> torch.Tensor:
    """off_diagonal (A * D, C), M with its diagonal blocks zeroed -> scalar."""
    return off_diagonal.abs().sum(dim=0).mean()
