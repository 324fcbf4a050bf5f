"""The memory block M (paper section 3.3): one row per attribute value, the mean attribute representation of
the training images with that value. A manipulation (a -> v) replaces attribute a's representation of the query
by M[a, v]; several attributes may change at once (beyond the paper). M is a parameter when the variant updates
it in stage 3 ("Full"), a buffer otherwise."""

from __future__ import annotations

import torch
from torch import nn

from fsnet.catalog.schema import value_offsets

KEEP = -1  # a manipulation entry that leaves the attribute as it is


def value_sums(reps: torch.Tensor, labels: torch.Tensor, num_values: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per value: the sum of the representations (C, D) and the count (C,) over images with that value known.
    reps (N, A, D), labels (N, A) with -1 unknown. Sums and counts add up across batches and workers."""
    n, a, d = reps.shape
    offsets = torch.tensor(value_offsets(num_values), device=labels.device)  # (A,)
    known = labels >= 0
    rows = (labels + offsets).masked_select(known)  # (K,) row of M per known (image, attribute)
    vectors = reps[known]  # (K, D)
    total = sum(num_values)
    sums = torch.zeros(total, d, dtype=reps.dtype, device=reps.device).index_add_(0, rows, vectors)
    counts = torch.zeros(total, dtype=torch.long, device=reps.device).index_add_(0, rows, torch.ones_like(rows))
    return sums, counts


class MemoryBlock(nn.Module):
    def __init__(self, num_values: list[int], embed_dim: int, updatable: bool):
        super().__init__()
        self.num_values = list(num_values)
        self.register_buffer("offsets", torch.tensor(value_offsets(num_values)), persistent=False)
        table = torch.zeros(sum(num_values), embed_dim)
        if updatable:
            self.table = nn.Parameter(table)
        else:
            self.register_buffer("table", table)
        self.register_buffer("counts", torch.zeros(sum(num_values), dtype=torch.long))  # training images per value

    def set_means(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """M = sums / counts; a value no training image has keeps a zero row (and count 0)."""
        with torch.no_grad():
            self.table.copy_(sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype))
            self.counts.copy_(counts)

    def row(self, attribute: int, value: int) -> torch.Tensor:
        return self.table[self.offsets[attribute] + value]

    def rows(self, attribute: int) -> torch.Tensor:
        """(V_a, D) the rows of one attribute."""
        start = int(self.offsets[attribute])
        return self.table[start : start + self.num_values[attribute]]

    def manipulate(self, reps: torch.Tensor, manipulation: torch.Tensor) -> torch.Tensor:
        """reps (B, A, D); manipulation (B, A) target value per attribute, -1 keeps it -> manipulated reps."""
        change = manipulation >= 0
        rows = (manipulation.clamp(min=0) + self.offsets.to(manipulation.device)).long()  # (B, A)
        replaced = self.table[rows]  # (B, A, D)
        return torch.where(change.unsqueeze(-1), replaced.to(reps.dtype), reps)
