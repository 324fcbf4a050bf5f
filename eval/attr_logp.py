"""The ``attr_logp`` baseline: the attribute classifiers alone. For a query q and manipulation a -> v the target is
q's *predicted* values with a replaced by v (no labels at query time), and gallery images are ranked by
sum_attributes log p(target value | image), highest first, ties by gallery position. No triplet training, no
memory block: p comes from the per-attribute classifiers every fsnet model has (the index stores them)."""

from __future__ import annotations

import numpy as np
import torch

from eval.data import EvalData
from eval.protocol import Manipulations
from eval.topk import SCORE_BYTES, smallest_k
from fsnet.catalog.schema import value_offsets

FLOOR = 1e-12  # probabilities are float32 softmax outputs; log(0) would make every such image tie at -inf


def target_of(manipulations: Manipulations, query_predicted: np.ndarray) -> np.ndarray:
    """(M, A) the query's predicted values with the manipulated attribute(s) set to the new value(s)."""
    return np.where(manipulations.change >= 0, manipulations.change, query_predicted[manipulations.query]).astype(
        np.int64
    )


def attr_logp_topk(
    query_predicted: np.ndarray,
    gallery_probabilities: np.ndarray,
    num_values: list[int],
    manipulations: Manipulations,
    k: int,
) -> np.ndarray:
    """query_predicted (Q, A), gallery_probabilities (N, C) softmax per attribute, concatenated -> (M, k) positions."""
    n = len(gallery_probabilities)
    k = min(k, n)
    offsets = np.asarray(value_offsets(num_values), dtype=np.int64)  # (A,) first column of each attribute
    logp = torch.from_numpy(np.log(np.maximum(gallery_probabilities.astype(np.float64), FLOOR)))  # (N, C)
    columns = torch.from_numpy(target_of(manipulations, query_predicted) + offsets[None, :])  # (M, A) of logp
    out = np.zeros((len(manipulations), k), dtype=np.int64)
    rows_per_block = max(1, SCORE_BYTES // (8 * n))
    for lo in range(0, len(manipulations), rows_per_block):
        cols = columns[lo : lo + rows_per_block]  # (R, A)
        score = logp[:, cols].sum(dim=2).T  # (R, N): sum over attributes of log p(target value | image)
        out[lo : lo + len(cols)] = smallest_k(-score, k)  # highest log-probability first
    return out


class AttrLogp:
    """The baseline as a scorer (eval/scorer.py): the query's predicted values and the gallery's probabilities."""

    name = "attr_logp"
    role = "baseline"

    def __init__(self, data: EvalData, algebra=None):  # the classifiers alone: no manipulation algebra
        self.data = data

    def topk(self, manipulations: Manipulations, k: int) -> np.ndarray:
        d = self.data
        return attr_logp_topk(d.query_predicted, d.gallery_probabilities, d.num_values, manipulations, k)
