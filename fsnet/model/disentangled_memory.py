"""The memory block of the ADDE-style model (Hou et al. 2021, "ADDE-M"): a bias-free linear map M from the
concatenated one-hot attribute values (C values in all) to the whole disentangled embedding (A chunks of D).
Column c, value v of attribute a, is that value's prototype; it belongs in chunk a, which a penalty on the
off-diagonal blocks enforces in effect (not by construction: the blocks exist and are trained).

A manipulation is an indicator vector i over the C values: -1 on the query's old value, +1 on the new one, per
changed attribute (several at once: several pairs; an old value that is unknown has only its +1). The manipulated
feature is f + M i. Unlike FashionSearchNet's memory, which replaces a slot, this adds a difference of prototypes,
so it needs the query's current values (the evaluation uses the query's labels, as ADDE's protocol does; a search
of an unlabelled image uses the predicted values)."""

from __future__ import annotations

import torch
from torch import nn

from fsnet.catalog.schema import value_offsets
from fsnet.model.memory import KEEP


def one_hot(labels: torch.Tensor, num_values: list[int]) -> torch.Tensor:
    """labels (B, A) value indexes, -1 unknown -> (B, C) float, concatenated one-hot blocks (all zero when unknown)."""
    offsets = torch.tensor(value_offsets(num_values), device=labels.device)  # (A,)
    out = torch.zeros(labels.shape[0], sum(num_values), device=labels.device)
    known = labels >= 0
    rows, attrs = known.nonzero(as_tuple=True)
    out[rows, labels[rows, attrs].long() + offsets[attrs]] = 1.0
    return out


class DisentangledMemory(nn.Module):
    def __init__(self, num_values: list[int], embed_dim: int):
        super().__init__()
        self.num_values, self.embed_dim = list(num_values), embed_dim
        attributes, total = len(num_values), sum(num_values)
        self.weight = nn.Parameter(torch.zeros(attributes * embed_dim, total))  # M: (A * D, C)
        self.owner = torch.repeat_interleave(
            torch.arange(attributes), torch.tensor(num_values)
        ).tolist()  # (C,) attribute of each column
        chunk = torch.arange(attributes).repeat_interleave(embed_dim)  # (A * D,) attribute of each row
        self.register_buffer(
            "off_mask", (chunk[:, None] != torch.tensor(self.owner)[None, :]).float(), persistent=False
        )  # (A * D, C)
        self.register_buffer("counts", torch.zeros(total, dtype=torch.long))  # training images per value

    @property
    def table(self) -> torch.Tensor:
        """(C, A * D) one full-width prototype per value (M's columns), rows in schema order."""
        return self.weight.t()

    def set_means(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Stage 2: column (a, v) = the mean chunk a of the training images with value v, in chunk a only; sums
        (C, D) and counts (C,) as ``memory.value_sums`` gives them. A value no image has keeps a zero column."""
        means = sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype)  # (C, D)
        weight = torch.zeros_like(self.weight)
        d = self.embed_dim
        for c, a in enumerate(self.owner):
            weight[a * d : (a + 1) * d, c] = means[c].to(weight.dtype)
        with torch.no_grad():
            self.weight.copy_(weight)
            self.counts.copy_(counts)

    def indicator(self, values: torch.Tensor, manipulation: torch.Tensor) -> torch.Tensor:
        """values (B, A) the query's current values (-1 unknown), manipulation (B, A) new value or -1 to keep ->
        (B, C): +1 on each new value, -1 on the old value of each changed attribute."""
        change = manipulation != KEEP
        new = one_hot(torch.where(change, manipulation, KEEP), self.num_values)
        old = one_hot(torch.where(change, values, KEEP), self.num_values)
        return new - old

    def manipulate(self, features: torch.Tensor, indicator: torch.Tensor) -> torch.Tensor:
        """features (B, A * D) + M i -> (B, A * D)."""
        return features + indicator.to(self.weight.dtype) @ self.weight.t().to(features.dtype)

    def compose(self, labels: torch.Tensor) -> torch.Tensor:
        """M onehot(labels): (B, A) -> (B, A * D), the feature the prototypes of an image's values predict."""
        return one_hot(labels, self.num_values).to(self.weight.dtype) @ self.weight.t()

    def off_diagonal(self) -> torch.Tensor:
        """(A * D, C) M outside the blocks where a value's column meets its own attribute's chunk."""
        return self.weight * self.off_mask
