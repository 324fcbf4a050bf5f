"""The ``attribute_only`` baseline: gallery images ranked by how many target attributes their predicted values
match (more first), ties by the visual distance between the query's and the image's global representations
(unmanipulated), then by gallery position. No memory block, no manipulated feature: what a catalog's attribute
filter plus "more like this" gives."""

from __future__ import annotations

import numpy as np
import torch

from eval.data import EvalData
from eval.protocol import Manipulations
from eval.topk import SCORE_BYTES, smallest_k
from fsnet.catalog.schema import value_offsets


def _one_hot(labels: np.ndarray, num_values: list[int]) -> np.ndarray:
    """(N, A) values (-1 unknown) -> (N, C) float32 one-hot over every attribute's values."""
    offsets = np.asarray(value_offsets(num_values), dtype=np.int64)  # (A,) first column of each attribute
    out = np.zeros((len(labels), sum(num_values)), dtype=np.float32)
    rows, cols = np.nonzero(labels >= 0)
    out[rows, offsets[cols] + labels[rows, cols]] = 1.0
    return out


def attribute_only_topk(
    query_global: np.ndarray,
    gallery: np.ndarray,
    predicted: np.ndarray,
    num_values: list[int],
    manipulations: Manipulations,
    k: int,
) -> np.ndarray:
    """query_global (Q, r), gallery (N, r), predicted (N, A) gallery predictions -> (M, k) gallery positions."""
    n = len(gallery)
    k = min(k, n)
    g = torch.from_numpy(gallery.astype(np.float64))
    gallery_hot = torch.from_numpy(_one_hot(predicted, num_values)).T.contiguous()  # (C, N)
    target_hot = torch.from_numpy(_one_hot(manipulations.target.astype(np.int64), num_values))  # (M, C)
    attributes = manipulations.target.shape[1]
    out = np.zeros((len(manipulations), k), dtype=np.int64)
    rows_per_block = max(1, SCORE_BYTES // (8 * n))
    for lo in range(0, len(manipulations), rows_per_block):
        hi = min(lo + rows_per_block, len(manipulations))
        # manipulations come by query: each query's distances once, shared by its manipulations' rows
        queries, row_of = np.unique(manipulations.query[lo:hi], return_inverse=True)
        dist = torch.cdist(torch.from_numpy(query_global[queries].astype(np.float64)), g) ** 2  # (U, N) squared
        dist = dist / (dist.max(dim=1, keepdim=True).values + 1.0)  # in [0, 1)
        # attributes not matched (R, N): whole numbers, exact in float32
        missed = torch.mm(target_hot[lo:hi], gallery_hot).neg_().add_(attributes).double()
        score = missed.add_(dist[torch.from_numpy(row_of)])  # the count orders first, the distance within a count
        out[lo:hi] = smallest_k(score, k)
    return out


class AttributeOnly:
    """The baseline as a scorer (eval/scorer.py): the queries' unmanipulated global representations (by the model's
    algebra, the long way) against the gallery's, and the gallery's predicted values."""

    name = "attribute_only"
    role = "baseline"

    def __init__(self, data: EvalData, algebra):
        self.data = data
        self.query_global = algebra.global_of(data.query_reps.astype(np.float64))  # (Q, r)

    def topk(self, manipulations: Manipulations, k: int) -> np.ndarray:
        d = self.data
        return attribute_only_topk(
            self.query_global, d.gallery_global, d.gallery_predicted, d.num_values, manipulations, k
        )
