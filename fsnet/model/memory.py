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


class ExactValueSums:
    """``value_sums`` added up over batches with one result whatever order the batches, and the rows in them, come
    in: the representations are summed in 64-bit fixed point (steps of 2**-24: each value within 3e-8, float32's own
    precision at magnitude 1), whose addition is exact, where float sums round differently in each order. The memory
    job sums the rows as the embed pool returns them, in the order its actors finish; with float sums two runs at
    one seed built Ms that differed in their last bits."""

    STEP = 2.0**-24
    LIMIT = 2.0**62  # steps an int64 sum holds with room

    def __init__(self, num_values: list[int], dim: int):
        self.num_values = list(num_values)
        self.steps = torch.zeros(sum(num_values), dim, dtype=torch.int64)  # (C, D) sums in steps
        self.counts = torch.zeros(sum(num_values), dtype=torch.long)  # (C,)
        self.bound = 0.0  # no |sum| in steps exceeds it: rows so far times their largest |value|

    def add(self, reps: torch.Tensor, labels: torch.Tensor) -> None:
        """reps (N, A, D), labels (N, A) with -1 unknown, as ``value_sums`` takes them."""
        steps = torch.round(reps.double() / self.STEP)  # (N, A, D) whole steps; float64 holds them exactly
        if len(steps):
            self.bound += float(steps.abs().amax()) * len(steps)
        if self.bound >= self.LIMIT:
            raise ValueError(
                f"representations too large to sum exactly: |value| up to {float(reps.abs().amax()):.3g} "
                f"over {int(self.counts.sum()) + len(reps):,} rows"
            )
        sums, counts = value_sums(steps.long(), labels, self.num_values)
        self.steps += sums
        self.counts += counts

    def totals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, D) float64 sums and (C,) counts, as ``value_sums`` gives them (``MemoryBlock.set_means`` takes them)."""
        return self.steps.double() * self.STEP, self.counts


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
