"""The ``attr_logp`` baseline: the attribute classifiers alone. For a query q and manipulation a -> v, gallery image
n is ranked by the log-probability that it has the target's values under the classifiers (no labels at query time),
highest first, ties by gallery position:

    log p_n(v)  +  sum_{b != a} log sum_u p_q(u) p_n(u)

the manipulated attribute's new value, and for every other attribute the probability that q and n share its value
(both under the classifiers). Why the shared value and not q's predicted one: where the classifiers are unsure of the
query (a colour between two), the predicted value is a coin toss and a wrong one sends the whole ranking to the
wrong colour; the expectation keeps both. With a sure query (one-hot p_q) the two are the same. No triplet training,
no memory block: p comes from the per-attribute classifiers every fsnet model has (the index stores them).

``TargetNlogp`` is the term (its negative), shared with the fused ranking (eval/fused_logp.py) and the probe
(eval/probe.py)."""

from __future__ import annotations

import numpy as np
import torch

from eval.data import EvalData
from eval.protocol import Manipulations
from eval.topk import SCORE_BYTES, smallest_k
from fsnet.catalog.schema import value_offsets

FLOOR = 1e-12  # probabilities are float32 softmax outputs; log(0) would make every such image tie at -inf


class TargetNlogp:
    """-log P(gallery image n has the target's values), per manipulation and image, for a gallery's per-attribute
    softmax outputs (N, C), concatenated."""

    def __init__(self, gallery_probabilities: np.ndarray, num_values: list[int]):
        p = np.ascontiguousarray(gallery_probabilities.T, dtype=np.float32)  # (C, N): a value's row is contiguous
        self.p = torch.from_numpy(p)
        self.nlogp = torch.from_numpy(-np.log(np.maximum(p, FLOOR)))  # (C, N)
        starts = value_offsets(num_values)
        self.bounds = list(zip(starts, [*starts[1:], sum(num_values)]))  # each attribute's columns [lo, hi)
        self.offsets = np.asarray(starts, dtype=np.int64)  # (A,)

    def rows(self, query_probabilities: np.ndarray, query: np.ndarray, change: np.ndarray) -> torch.Tensor:
        """(R, N) for R manipulations: ``query`` (R,) rows of ``query_probabilities`` (Q, C), ``change`` (R, A) the new
        value per attribute, -1 unchanged."""
        queries, row_of = np.unique(query, return_inverse=True)  # manipulations come by query: few per block
        q = torch.from_numpy(np.ascontiguousarray(query_probabilities[queries], dtype=np.float32))  # (U, C)
        shared = torch.stack(  # (U, A, N) -log sum_u p_q(u) p_n(u)
            [torch.mm(q[:, lo:hi], self.p[lo:hi]).clamp_(min=FLOOR).log_().neg_() for lo, hi in self.bounds], dim=1
        )
        row_of = torch.from_numpy(row_of)
        out = shared.sum(dim=1)[row_of]  # (R, N) as if every attribute kept the query's value
        r, a = np.nonzero(change >= 0)  # the manipulated attributes: their shared term out, -log p_n(v) in
        values = torch.from_numpy(change[r, a].astype(np.int64) + self.offsets[a])  # rows of nlogp
        r, a = torch.from_numpy(r), torch.from_numpy(a)
        return out.index_add_(0, r, self.nlogp[values] - shared[row_of[r], a])  # (R, N)

    @staticmethod
    def block_rows(n: int, attributes: int) -> int:
        """Manipulations per block that keep ``rows``'s (U, A, N) terms and its (R, N) sums in SCORE_BYTES (with
        room for a caller's (R, N) of its own: the budget of an (R, 2A + 1, N) block)."""
        return max(1, SCORE_BYTES // (4 * n * (2 * attributes + 1)))


def attr_logp_topk(
    query_probabilities: np.ndarray,
    gallery_probabilities: np.ndarray,
    num_values: list[int],
    manipulations: Manipulations,
    k: int,
) -> np.ndarray:
    """query_probabilities (Q, C), gallery_probabilities (N, C), softmax per attribute, concatenated -> (M, k)
    positions, the most probable target first."""
    n = len(gallery_probabilities)
    k = min(k, n)
    term = TargetNlogp(gallery_probabilities, num_values)
    out = np.zeros((len(manipulations), k), dtype=np.int64)
    block = TargetNlogp.block_rows(n, len(num_values))
    for lo in range(0, len(manipulations), block):
        rows = slice(lo, lo + block)
        nlogp = term.rows(query_probabilities, manipulations.query[rows], manipulations.change[rows])  # (R, N)
        out[lo : lo + len(nlogp)] = smallest_k(nlogp, k)
    return out


class AttrLogp:
    """The baseline as a scorer (eval/scorer.py): the query's and the gallery's probabilities."""

    name = "attr_logp"
    role = "baseline"

    def __init__(self, data: EvalData, algebra=None):  # the classifiers alone: no manipulation algebra
        self.data = data

    def topk(self, manipulations: Manipulations, k: int) -> np.ndarray:
        d = self.data
        return attr_logp_topk(d.query_probabilities, d.gallery_probabilities, d.num_values, manipulations, k)
