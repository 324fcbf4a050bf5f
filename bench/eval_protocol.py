"""The evaluation benchmarks' protocol data (bench/eval_bench.py, the GPU check's evaluation part): Shopping100k's
12 attributes with 16,17,19,14,10,15,2,11,16,7,9,15 values. Random labels would leave no manipulation a target in the
gallery, so images come in product families, as catalogs do: random prototypes, each image a prototype with every
attribute redrawn with some probability. Representations: s_a = mu_{a, value} + noise (unit Gaussians, so features
cluster by value as a trained model's do); the memory block is the mean of 30,000 training representations per
value; lambda_a in [0.5, 2]; w_r a random projection (A*D -> r), or none (F = [s_1, ..., s_A]) with r = 0."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.linear_global import LinearGlobal
from eval.protocol import Manipulations, build_manipulations

NUM_VALUES = [16, 17, 19, 14, 10, 15, 2, 11, 16, 7, 9, 15]
NAMES = [f"attr{i}" for i in range(len(NUM_VALUES))]
SETTINGS = {"sparse": (300, 0.15), "dense": (30, 0.05)}  # (families, redraw): ~4 and ~62 manipulations per query
TRAINING_IMAGES = 30_000  # the representations the memory block is the mean of


@dataclass
class ProtocolData:
    model: LinearGlobal
    query_reps: np.ndarray  # (Q, A, D) float32
    gallery: np.ndarray  # (N, r) float32 global representations
    query_labels: np.ndarray  # (Q, A)
    gallery_labels: np.ndarray  # (N, A)

    def manipulations(self) -> Manipulations:
        """Every manipulation of every query whose target is in the gallery."""
        return build_manipulations(self.query_labels, self.gallery_labels, NAMES, NUM_VALUES)


def labels(rng: np.random.Generator, prototypes: np.ndarray, n: int, redraw: float) -> np.ndarray:
    out = prototypes[rng.integers(0, len(prototypes), n)].copy()
    fresh = np.stack([rng.integers(0, v, n) for v in NUM_VALUES], 1)
    return np.where(rng.random(out.shape) < redraw, fresh, out)


def representations(rng: np.random.Generator, centres: list[np.ndarray], labels_: np.ndarray) -> np.ndarray:
    d = centres[0].shape[1]
    reps = rng.standard_normal((len(labels_), len(NUM_VALUES), d)).astype(np.float32)  # (n, A, D)
    for a, c in enumerate(centres):
        reps[:, a] += c[labels_[:, a]]
    return reps


def protocol_data(queries: int, gallery: int, families: int, redraw: float, d: int, r: int) -> ProtocolData:
    """The protocol's model, representations and labels, seeded (the same on every run)."""
    rng = np.random.default_rng(0)
    prototypes = np.stack([rng.integers(0, v, families) for v in NUM_VALUES], 1)
    query_labels, gallery_labels = (
        labels(rng, prototypes, queries, redraw),
        labels(rng, prototypes, gallery, redraw),
    )
    centres = [rng.standard_normal((v, d)).astype(np.float32) for v in NUM_VALUES]
    train_labels = labels(rng, prototypes, TRAINING_IMAGES, redraw)
    train = representations(rng, centres, train_labels)
    memory = np.concatenate(
        [np.stack([train[train_labels[:, a] == v, a].mean(0) for v in range(nv)]) for a, nv in enumerate(NUM_VALUES)]
    )
    a = len(NUM_VALUES)
    model = LinearGlobal(
        rng.uniform(0.5, 2.0, a),
        (rng.standard_normal((a, d, r)) / np.sqrt(a * d)) if r else None,
        memory.astype(np.float64),
        NUM_VALUES,
    )
    query_reps = representations(rng, centres, query_labels)
    gallery_f = model.global_of(representations(rng, centres, gallery_labels).astype(np.float64)).astype(np.float32)
    return ProtocolData(model, query_reps, gallery_f, query_labels, gallery_labels)
