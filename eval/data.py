"""What an evaluation ranks: the gallery and query arrays, their labels in the model's codes, and what was left out.
``jobs/evaluate.py`` loads it from the index and the catalog; every scorer (eval/scorer.py) reads it. The probe
baselines' arrays (the frozen trunk's features and a linear probe's predictions) ride along when they are asked for."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eval.linear_probe import LinearProbe
from fsnet.schema_match import SchemaMatch


@dataclass
class ProbeInputs:
    """What the probe baselines (eval/probe.py) rank with, at the same query and gallery positions as the model's
    arrays. An image the trunk feature cache rejected (undecodable) has found False: a gallery one is ranked last by
    the probe baselines, a query one gets the fit images' mean features (what the probe knows without the image)."""

    probe: LinearProbe
    query_features: np.ndarray  # (Q, F) pooled trunk features
    query_found: np.ndarray  # (Q,) bool
    query_predicted: np.ndarray  # (Q, A) the probe's values
    query_probabilities: np.ndarray  # (Q, C) the probe's per-attribute softmax, concatenated
    gallery_features: np.ndarray  # (N, F), zeros where not found
    gallery_found: np.ndarray  # (N,) bool
    gallery_predicted: np.ndarray  # (N, A), -1 where not found
    gallery_probabilities: np.ndarray  # (N, C) per-attribute softmax, concatenated; zeros where not found
    fit_reused: bool = False  # the probe was read back from an earlier identical fit (eval/probe_memo.py)


@dataclass
class EvalData:
    query_ids: np.ndarray  # (Q,)
    query_labels: np.ndarray  # (Q, A)
    query_reps: np.ndarray  # (Q, A, D)
    query_predicted: np.ndarray  # (Q, A) the model's predicted values
    query_probabilities: np.ndarray  # (Q, C) per-attribute softmax, concatenated
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
    probe: ProbeInputs | None = None  # None: no probe baseline asked for, or it could not be built

    @property
    def num_values(self) -> list[int]:
        """Values per attribute, in the model's codes (the labels' and predictions' layout)."""
        return list(self.match.model.num_values)
