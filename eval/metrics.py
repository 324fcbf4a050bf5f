"""Top-K accuracy and NDCG@K of ranked gallery lists (definitions also in the README).

- Top-K accuracy (paper 4.5): a manipulation is a hit at K when one of its K nearest gallery images has exactly
  the target attribute vector. Per group of manipulations (the attribute changed) the fraction of hits, and the
  average over groups (each attribute counts once, as in the paper's Table 1).
- NDCG@K, full target: relevance of a gallery image = the fraction of the A target attributes it has;
  DCG@K = sum_{i=1..K} rel_i / log2(i + 1), divided by the DCG of the best K images the gallery holds.
- NDCG@K, manipulated attribute: relevance 1 when the image has the new value(s) of the changed attribute(s)
  (as ADDE reports), 0 otherwise; the ideal list puts every such image first.
Curves hold K = 1..k_max."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.bootstrap import QueryBootstrap, query_rows
from eval.protocol import Manipulations

TARGET_CHUNK = 512  # targets compared with the whole gallery at once (rows x gallery x attributes int8)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))  # (k,) 1 / log2(i + 1), i = 1..k


def hit_ranks(positions: np.ndarray, gallery_labels: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(M,) 0-based rank of the first exact target match in each ranked list (M, k); k when none."""
    exact = (gallery_labels[positions] == target[:, None, :]).all(axis=2)  # (M, k)
    return np.where(exact.any(axis=1), exact.argmax(axis=1), positions.shape[1])


def _ideal(relevance_of, rows: np.ndarray, k: int) -> np.ndarray:
    """(len(rows), k) the best k relevances the gallery holds per distinct row (computed once per distinct row):
    relevance_of(unique rows (u, ...)) -> (u, N) relevances."""
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    best = np.zeros((len(unique), k))
    for lo in range(0, len(unique), TARGET_CHUNK):
        rel = relevance_of(unique[lo : lo + TARGET_CHUNK])  # (u, N)
        top = -np.partition(-rel, min(k, rel.shape[1]) - 1, axis=1)[:, :k] if rel.shape[1] > k else rel
        best[lo : lo + len(rel), : top.shape[1]] = -np.sort(-top, axis=1)
    return best[inverse.reshape(-1)]


def _ndcg(rel: np.ndarray, ideal: np.ndarray) -> np.ndarray:
    discount = _discounts(rel.shape[1])
    dcg = np.cumsum(rel * discount, axis=1)
    idcg = np.cumsum(ideal * discount, axis=1)
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def _has_new_values(ch: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ch (u, A), labels (u or 1, n, A) -> (u, n): 1 where an image has the changed attribute(s)' new value(s)."""
    return ((labels == ch[:, None, :]) | (ch[:, None, :] < 0)).all(axis=2).astype(np.float64)


def _full_ideal(gallery_labels: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    a = gallery_labels.shape[1]
    return _ideal(lambda t: (gallery_labels[None, :, :] == t[:, None, :]).sum(axis=2) / a, target, k)


def _attribute_ideal(gallery_labels: np.ndarray, change: np.ndarray, k: int) -> np.ndarray:
    return _ideal(lambda ch: _has_new_values(ch, gallery_labels[None]), change, k)


@dataclass
class IdealLists:
    """The best k relevances the gallery holds per manipulation, for both NDCGs: the same for every ranking of the
    same manipulations, so an evaluation computes them once and hands them to each ranking's ``summarize``."""

    full: np.ndarray  # (M, k)
    attribute: np.ndarray  # (M, k)

    @classmethod
    def of(cls, manipulations: Manipulations, gallery_labels: np.ndarray, k: int) -> "IdealLists":
        k = min(k, len(gallery_labels))  # a ranked list is at most the gallery long
        return cls(
            full=_full_ideal(gallery_labels, manipulations.target, k),
            attribute=_attribute_ideal(gallery_labels, manipulations.change, k),
        )


def ndcg_full(
    positions: np.ndarray, gallery_labels: np.ndarray, target: np.ndarray, ideal: np.ndarray | None = None
) -> np.ndarray:
    """(M, k) NDCG@K for K = 1..k with graded relevance (matching target attributes / A); ``ideal`` (M, k) the
    best relevances (IdealLists.full), computed here when not given."""
    rel = (gallery_labels[positions] == target[:, None, :]).sum(axis=2) / target.shape[1]  # (M, k)
    return _ndcg(rel, _full_ideal(gallery_labels, target, positions.shape[1]) if ideal is None else ideal)


def ndcg_attribute(
    positions: np.ndarray, gallery_labels: np.ndarray, change: np.ndarray, ideal: np.ndarray | None = None
) -> np.ndarray:
    """(M, k) NDCG@K for K = 1..k with relevance 1 when an image has the changed attribute(s)' new value(s);
    ``ideal`` as for ndcg_full (IdealLists.attribute)."""
    rel = _has_new_values(change, gallery_labels[positions])  # (M, k)
    return _ndcg(rel, _attribute_ideal(gallery_labels, change, positions.shape[1]) if ideal is None else ideal)


def summarize(
    manipulations: Manipulations,
    positions: np.ndarray,
    gallery_labels: np.ndarray,
    k_max: int,
    ideals: IdealLists | None = None,
    bootstrap: QueryBootstrap | None = None,
) -> dict:
    """Curves per group and averaged over groups: top_k, ndcg_full, ndcg_attribute (lists over K = 1..k_max).
    ``ideals``: IdealLists.of(manipulations, gallery_labels, k_max), shared by several rankings; else computed.
    ``bootstrap``: drawn over the manipulations' queries (query_rows); each curve then has its ``interval``."""
    positions = positions[:, :k_max]
    if ideals is not None and ideals.full.shape != positions.shape:
        raise ValueError(f"ideal lists of shape {ideals.full.shape} for ranked lists of shape {positions.shape}")
    ranks = hit_ranks(positions, gallery_labels, manipulations.target)
    hits = ranks[:, None] < np.arange(1, positions.shape[1] + 1)[None, :]  # (M, k) hit at K
    full_ideal, attribute_ideal = (None, None) if ideals is None else (ideals.full, ideals.attribute)
    full = ndcg_full(positions, gallery_labels, manipulations.target, full_ideal)
    attribute = ndcg_attribute(positions, gallery_labels, manipulations.change, attribute_ideal)
    groups = {}
    for g, name in enumerate(manipulations.groups):
        rows = manipulations.group == g
        if not rows.any():
            continue
        groups[name] = {
            "count": int(rows.sum()),
            "top_k": hits[rows].mean(axis=0).tolist(),
            "ndcg_full": full[rows].mean(axis=0).tolist(),
            "ndcg_attribute": attribute[rows].mean(axis=0).tolist(),
        }
    average = {
        key: np.mean([groups[g][key] for g in groups], axis=0).tolist() if groups else []
        for key in ("top_k", "ndcg_full", "ndcg_attribute")
    }
    if bootstrap is not None and groups:
        bands = curve_bands(bootstrap, manipulations, {"top_k": hits, "ndcg_full": full, "ndcg_attribute": attribute})
        for g, name in enumerate(manipulations.groups):
            if name in groups:
                groups[name]["interval"] = {key: band[g] for key, band in bands["groups"].items()}
        average["interval"] = bands["average"]
    return {
        "k": list(range(1, positions.shape[1] + 1)),
        "groups": groups,
        "average": {"count": len(manipulations), **average},
    }


def curve_bands(boot: QueryBootstrap, manipulations: Manipulations, curves: dict[str, np.ndarray]) -> dict:
    """curves: name -> (M, k) per-manipulation values -> {"groups": name -> [per group {low, high}, None for a
    group without manipulations], "average": name -> {low, high}}: each curve's interval at every K
    (eval/bootstrap.py)."""
    q, rows = query_rows(manipulations.query)
    if boot.weights.shape[1] != q:
        raise ValueError(f"a bootstrap over {boot.weights.shape[1]} queries for manipulations of {q}")
    g = len(manipulations.groups)
    present = np.bincount(manipulations.group, minlength=g) > 0
    out: dict = {"groups": {}, "average": {}}
    for name, values in curves.items():
        means = boot.group_means(values, rows, manipulations.group, g)  # (B, G, k)
        low, high = boot.interval(means[:, present])  # (G', k) each: the groups with a manipulation
        bands = iter([{"low": lo.tolist(), "high": hi.tolist()} for lo, hi in zip(low, high)])
        out["groups"][name] = [next(bands) if present[i] else None for i in range(g)]
        with np.errstate(invalid="ignore"):
            average = np.nanmean(means[:, present], axis=1)  # (B, k)
        a_low, a_high = boot.interval(average)
        out["average"][name] = {"low": a_low.tolist(), "high": a_high.tolist()}
    return out
