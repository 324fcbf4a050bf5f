"""What an evaluation ranks: the gallery and query arrays, their labels in the model's codes, and what was left out.
``jobs/evaluate.py`` loads it from the index and the catalog; every scorer (eval/scorer.py) reads it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fsnet.schema_match import SchemaMatch


@dataclass
class EvalData:
    query_ids: np.ndarray  # (Q,)
    query_labels: np.ndarray  # (Q, A)
    query_reps: np.ndarray  # (Q, A, D)
    query_predicted: np.ndarray  # (Q, A) the model's predicted values
    gallery_ids: np.ndarray  # (N,) in id order: ties in distance are broken by this position
    gallery_labels: np.ndarray  # (N, A)
    gallery_global: np.ndarray  # (N, r)
    gallery_predicted: np.ndarray  # (N, A)
    gallery_probabilities: np.ndarray  # (N, C) per-attribute softmax, concatenated
    gallery_missing: list[str]  # gallery ids the index does not hold (rejected images)
    queries_rejected: list[str]  # query images the model could not embed (or, stored protocol: not in the index)
    protocol: str = "generated"  # "generated" (every manipulation of the query split) or "catalog" (its stored list)
    match: SchemaMatch | None = None  # model vs catalog schema: every label above is in the model's codes
    # left out: a label value new since the model was trained
    queries_unpredictable: list[str] = field(default_factory=list)

    @property
    def num_values(self) -> list[int]:
        """Values per attribute, in the model's codes (the labels' and predictions' layout)."""
        return list(self.match.model.num_values)
