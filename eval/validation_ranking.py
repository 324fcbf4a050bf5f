"""Validation Top-K during training: the evaluation's protocol on the validation images carved from the training
split (fsnet/validation.py), so that a stage keeps its best epoch without ever looking at the query or gallery split.

The validation images are both the gallery and, those with every attribute known (up to ``queries`` of them, a
seeded choice), the queries; every single-attribute manipulation whose target exists among them is ranked by the
model's own algebra and the threshold evaluator, exactly as ``fsnet evaluate`` ranks. The figure is the Top-K hit
rate averaged over attributes (the report's headline).
"""

from __future__ import annotations

import numpy as np

from eval.algebra import algebra_of
from eval.metrics import summarize
from eval.protocol import Manipulations, build_manipulations
from eval.threshold_topk import threshold_topk
from fsnet.model.retrieval_model import RetrievalModel

QUERIES = 400  # validation images with every attribute known that serve as queries, a seeded choice


def validation_manipulations(
    labels: np.ndarray, names: list[str], num_values: list[int], queries: int = QUERIES, seed: int = 0
) -> tuple[np.ndarray, Manipulations] | None:
    """labels (V, A) of the validation images -> (the query rows among them, every manipulation of those queries
    whose target is some validation image's); None when there is none (too few validation images)."""
    complete = np.flatnonzero((labels >= 0).all(axis=1))
    if not len(complete):
        return None
    chosen = np.sort(np.random.default_rng(seed).permutation(complete)[:queries])
    manipulations = build_manipulations(labels[chosen], labels, names, num_values)
    return (chosen, manipulations) if len(manipulations) else None


def validation_top_k(
    model: RetrievalModel, reps: np.ndarray, labels: np.ndarray, k: int = 20, queries: int = QUERIES, seed: int = 0
) -> float | None:
    """reps (V, A, D) and labels (V, A) of the validation images -> Top-``k`` average, or None when no manipulation
    has its target among them (too few validation images)."""
    found = validation_manipulations(labels, model.schema.names, list(model.schema.num_values), queries, seed)
    if found is None:
        return None
    chosen, manipulations = found
    algebra = algebra_of(model)
    gallery = algebra.global_of(reps.astype(np.float64))  # (V, r)
    top = threshold_topk(algebra, reps[chosen], gallery, manipulations, k, values=labels[chosen])
    curve = summarize(manipulations, top.positions, labels, k)["average"]["top_k"]
    return float(curve[min(k, len(curve)) - 1])  # a gallery smaller than k: the hit rate at its size
