"""Small schemas and batches for model tests."""

from __future__ import annotations

import torch

from fsnet.catalog.schema import Attribute, AttributeSchema
from fsnet.config import load_config


def schema_of(num_values: list[int]) -> AttributeSchema:
    return AttributeSchema(
        attributes=[Attribute(name=f"attr{i}", values=[f"v{j}" for j in range(n)]) for i, n in enumerate(num_values)]
    )


SCHEMA_3 = schema_of([3, 5, 2])
SCHEMA_5 = schema_of([4, 2, 6, 3, 5])


def model_config(*sets: str):
    return load_config(["tiny"], list(sets)).model


def labels_with_pairs(batch: int, num_values: list[int], seed: int = 0) -> torch.Tensor:
    """(B, A) labels where every attribute has repeated values (positives) and several values (negatives),
    and a few unknowns."""
    g = torch.Generator().manual_seed(seed)
    cols = []
    for v in num_values:
        col = torch.arange(batch) % min(v, 2)  # at least two values, each repeated
        cols.append(col[torch.randperm(batch, generator=g)])
    labels = torch.stack(cols, dim=1)
    labels[0, 0] = -1
    return labels


def labels_with_manipulations(batch: int, num_values: list[int]) -> torch.Tensor:
    """(B, A) complete labels where rows 2k and 2k+1 differ in exactly one attribute, so every query has a
    manipulation whose target vector exists."""
    rows = []
    for k in range(batch // 2):
        base = torch.tensor([k % v for v in num_values])
        other = base.clone()
        a = k % len(num_values)
        other[a] = (base[a] + 1) % num_values[a]
        rows += [base, other]
    return torch.stack(rows)
