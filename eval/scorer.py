"""One interface for everything evaluate ranks with: the trained model (its factorized Top-K) and each baseline.
A scorer has a ``name`` (the run's method), a ``role`` ("model" or "baseline", as results.json records it) and
``topk(manipulations, k) -> (M, k)`` gallery positions, nearest first, ties by gallery position.

Adding a baseline: a file in eval/ with a class built as ``Baseline(data, algebra)`` that has the three, and a line
in ``BASELINES`` (the name eval.baselines selects it by)."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from eval.attr_logp import AttrLogp
from eval.attribute_only import AttributeOnly
from eval.data import EvalData
from eval.fused_logp import FusedLogp
from eval.probe import ProbeAttributes, ProbeLogp
from eval.protocol import Manipulations
from eval.results import Role
from eval.threshold_topk import exact_topk
from eval.topk import TopK


class Scorer(Protocol):
    name: str
    role: Role

    def topk(self, manipulations: Manipulations, k: int) -> np.ndarray:
        """(M, k) gallery positions of each manipulation's nearest images, nearest first."""
        ...


class ModelScorer:
    """The trained model: F' of each manipulated query by the manipulation algebra, exact Top-K by the threshold
    evaluator (eval/threshold_topk.py: the factorized products, no selection over the gallery per manipulation),
    or by faiss brute force where the protocol is too sparse for the factorized form to save work (exact_topk).
    ``last`` keeps the latest TopK (its exact_rows go into results.json; --check compares its positions with the
    brute-force reference)."""

    role: Role = "model"

    def __init__(self, name: str, algebra, data: EvalData, query_chunk: int):
        self.name, self.algebra, self.data, self.query_chunk = name, algebra, data, query_chunk
        self.last: TopK | None = None

    def topk(self, manipulations: Manipulations, k: int) -> np.ndarray:
        d = self.data
        self.last = exact_topk(
            self.algebra, d.query_reps, d.gallery_global, manipulations, k, self.query_chunk, values=d.query_labels
        )
        return self.last.positions


class FusedScorer:
    """The model's distance plus ``weight`` x its classifiers' -log P(target) (eval/fused_logp.py), the
    weight training chose on the validation images; a model row of its own (``<method>+logp``) beside the model's."""

    role: Role = "model"

    def __init__(self, name: str, algebra, data: EvalData, weight: float):
        self.name, self.weight = f"{name}+logp", weight
        self.fused = FusedLogp(
            algebra,
            data.query_reps,
            data.query_labels,
            data.query_probabilities,
            data.gallery_global,
            data.gallery_probabilities,
            data.num_values,
        )

    def topk(self, manipulations: Manipulations, k: int) -> np.ndarray:
        return self.fused.topk(manipulations, k, self.weight)


# eval.baselines name -> the scorer's class, built as cls(data, algebra)
BASELINES: dict[str, Callable[[EvalData, object], Scorer]] = {
    "attribute_only": AttributeOnly,
    "attr_logp": AttrLogp,
    "probe": ProbeLogp,  # the yardstick (eval/probe.py): built only when evaluate could fit the probe
    "probe_attributes": ProbeAttributes,
}
