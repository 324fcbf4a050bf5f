"""Query / gallery / training split (paper section 4.4): seeded, deterministic, stored in the catalog.

Images with every attribute known are eligible for queries and gallery; they are ordered by a seeded hash of
their id (ties by id), the first ``n_query`` become queries, the next ``n_gallery`` the gallery, and every
other image (including those with an unknown value) trains. A catalog may have no training image at all, to
evaluate a model trained on another one; training on it is refused then (jobs/train.py). The order depends only
on (seed, id), so the same image lands in the same place whatever the row order, and adding images moves few
others."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from fsnet.config import SplitConfig
from fsnet.errors import CatalogError

SPLITS = ("train", "query", "gallery")


def resolve_count(value: int | float, eligible: int) -> int:
    """A count as given, or a fraction of the eligible images (at least 1)."""
    if isinstance(value, float):
        return max(1, int(round(value * eligible)))
    return int(value)


def hash_order(ids: Sequence[str], seed: int) -> np.ndarray:
    """Indices of ``ids`` ordered by blake2b(seed:id), ties broken by id."""
    keys = np.array(
        [int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "big") for i in ids],
        dtype=np.uint64,
    )
    return np.lexsort((np.asarray(ids, dtype=object).astype(str), keys))


def assign_splits(ids: Sequence[str], labels: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    """(N,) array of 'train' / 'query' / 'gallery' for rows with ``labels`` (N, A) (-1 = unknown)."""
    eligible = np.flatnonzero((labels >= 0).all(axis=1))
    n_query = resolve_count(cfg.n_query, len(eligible))
    n_gallery = resolve_count(cfg.n_gallery, len(eligible))
    if n_query + n_gallery > len(eligible):
        raise CatalogError(
            f"split.n_query + split.n_gallery = {n_query} + {n_gallery}, but only {len(eligible)} of {len(ids)} "
            "images have "
            "every attribute known; use fractions for small catalogs (e.g. --set split.n_query=0.1 --set "
            "split.n_gallery=0.4)"
        )
    # every image a query or gallery image is allowed: a catalog packed to evaluate a model trained on another
    order = eligible[hash_order([ids[i] for i in eligible], cfg.seed)]
    split = np.full(len(ids), "train", dtype=object)
    split[order[:n_query]] = "query"
    split[order[n_query : n_query + n_gallery]] = "gallery"
    return split
