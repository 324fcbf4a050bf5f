"""The model's distance fused with its own classifiers: for a manipulated query with global representation F',
gallery image n is ranked by

    ||F' - F_n||^2 + weight * -log P(n has the target's values)

(attr_logp's term, eval/attr_logp.py: the new value's p_n(v) for the manipulated attribute, and for the others the
probability that query and image share the value, both under the classifiers),
lowest first, ties by gallery position. Why: on real photos the classifiers know the attributes better than the
distance in F does (attr_logp beat F on fashion-product-small), while F knows the look of the query; neither alone is
the best ranking. Weight 0 is the model alone; a large weight is attr_logp with F breaking its ties.

The weight belongs to the trained model: ``choose_weight`` picks it on the validation images carved from the
training split (fsnet/validation.py), never on the query or gallery split, over a grid scaled by the two terms'
medians there, so the grid means the same on any catalog (the smallest weight within one standard error of the
best validation figure); training stores it in model.pt (``logp_weight``) and
evaluate ranks a ``<method>+logp`` row with it beside the model's own.
"""

from __future__ import annotations

import numpy as np
import torch

from eval.algebra import ManipulationAlgebra
from eval.attr_logp import TargetNlogp
from eval.metrics import IdealLists, summarize
from eval.protocol import Manipulations
from eval.topk import smallest_k
from eval.validation_ranking import validation_manipulations

# weight grid in units of median(distance) / median(-log P(target)) on the validation pairs: 0 (the model alone) and
# powers of two either side of "both terms weigh the same", far enough up that the top is attr_logp with F breaking
# ties (2^6: a grid up to 8 had a model choose its edge)
GRID = (0.0, *(2.0**e for e in range(-6, 7)))
SELECT_K = 20  # the validation Top-K the weight is chosen on (the report's headline K)


class FusedLogp:
    """Both terms for a set of queries and a gallery: ``terms`` gives them as (rows, N) blocks, ``topk`` ranks by
    their weighted sum block by block."""

    def __init__(
        self,
        algebra: ManipulationAlgebra,
        query_reps: np.ndarray,  # (Q, A, D)
        query_values: np.ndarray | None,  # (Q, A) current values (an additive memory subtracts them), -1 unknown
        query_probabilities: np.ndarray,  # (Q, C) the classifiers' softmax per attribute, concatenated
        gallery_global: np.ndarray,  # (N, r)
        gallery_probabilities: np.ndarray,  # (N, C)
        num_values: list[int],
    ):
        self.algebra, self.query_probabilities = algebra, query_probabilities
        reps = query_reps.astype(np.float64)
        self.global_ = algebra.global_of(reps)  # (Q, r) F(q)
        self.slots = algebra.slots(reps, query_values)  # (Q, A, w)
        self.gallery = torch.from_numpy(np.ascontiguousarray(gallery_global, dtype=np.float32))  # (N, r)
        self.gallery_norm = self.gallery.pow(2).sum(1)  # (N,)
        self.target = TargetNlogp(gallery_probabilities, num_values)
        self.attributes = len(num_values)

    def terms(self, manipulations: Manipulations, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance (R, N), -log P(target) (R, N)) of the manipulations ``rows``."""
        q, change = manipulations.query[rows], manipulations.change[rows]
        f = torch.from_numpy(self.algebra.manipulated(self.global_[q], self.slots[q], change).astype(np.float32))
        distance = torch.mm(f, self.gallery.T).mul_(-2).add_(self.gallery_norm).add_(f.pow(2).sum(1, keepdim=True))
        return distance, self.target.rows(self.query_probabilities, q, change)

    def topk(self, manipulations: Manipulations, k: int, weight: float) -> np.ndarray:
        """(M, k) gallery positions, lowest fused score first, ties by position."""
        n = len(self.gallery)
        k = min(k, n)
        out = np.zeros((len(manipulations), k), dtype=np.int64)
        block = TargetNlogp.block_rows(n, self.attributes + 1)  # and the (R, N) distance
        for lo in range(0, len(manipulations), block):
            distance, nlogp = self.terms(manipulations, slice(lo, lo + block))
            out[lo : lo + len(distance)] = smallest_k(distance.add_(nlogp, alpha=weight), k)
        return out


def choose_weight(
    algebra: ManipulationAlgebra,
    reps: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    num_values: list[int],
    names: list[str],
    seed: int = 0,
) -> dict | None:
    """The validation images' reps (V, A, D), probabilities (V, C) and labels (V, A) -> the fused weight: the
    smallest grid weight whose validation Top-20 is within one standard error of the best (below), with each grid
    point's figure; None when no manipulation has its target among them. Queries: every validation image with every
    attribute known, not only the draw training's per-epoch Top-K takes: the weight is chosen once, and the grid's
    points near the top lie within a standard error that more queries narrow."""
    found = validation_manipulations(labels, names, num_values, queries=len(labels), seed=seed)
    if found is None:
        return None
    chosen, manipulations = found
    gallery = algebra.global_of(reps.astype(np.float64))  # (V, r): every validation image is the gallery
    fused = FusedLogp(algebra, reps[chosen], labels[chosen], probabilities[chosen], gallery, probabilities, num_values)
    distance, nlogp = fused.terms(manipulations, slice(0, len(manipulations)))  # (M, V) each: V is small
    unit = float(distance.median()) / max(float(nlogp.median()), 1e-12)
    k = min(SELECT_K, len(labels))
    ideals = IdealLists.of(manipulations, labels, k)  # the same for every grid point
    figures = []
    for factor in GRID:
        top = smallest_k(distance + unit * factor * nlogp, k)
        summary = summarize(manipulations, top, labels, k, ideals)
        figures.append(
            {
                "factor": factor,
                "weight": unit * factor,
                f"top{k}": float(summary["average"]["top_k"][-1]),
                "standard_error": standard_error(summary["groups"]),
            }
        )
    picked, best = one_standard_error(figures, f"top{k}")
    return {
        "weight": picked["weight"],
        "factor": picked["factor"],
        "unit": unit,
        "k": k,
        "queries": len(chosen),
        "best_factor": best["factor"],
        "rule": "one standard error",
        "grid": figures,
    }


def one_standard_error(figures: list[dict], key: str) -> tuple[dict, dict]:
    """(the grid point chosen, the best one): the smallest factor whose ``key`` figure is within one standard error
    of the best figure (ties of the best: the smaller factor)."""
    # Why: near its top the validation curve is flat (on real photos several factors lie within a fraction of one
    # standard error of each other, the mean of groups as small as a dozen manipulations; docs/experiments.md), so
    # "the best point" there is the validation sample's noise: it drifted to the grid's top, where the ranking is
    # attr_logp's with F breaking ties. The rule keeps the most of the model's own distance that validation cannot
    # tell apart from the best.
    best = max(figures, key=lambda f: (f[key], -f["factor"]))
    floor = best[key] - best["standard_error"]
    return min((f for f in figures if f[key] >= floor), key=lambda f: f["factor"]), best


def standard_error(groups: dict) -> float:
    """The standard error of summarize()'s average Top-K at its last K (the mean over groups of each group's hit
    rate): sqrt(sum over groups of p (1 - p) / count) / groups, manipulations counted as independent."""
    if not groups:
        return 0.0
    variance = sum(g["top_k"][-1] * (1 - g["top_k"][-1]) / g["count"] for g in groups.values())
    return float(np.sqrt(variance) / len(groups))
