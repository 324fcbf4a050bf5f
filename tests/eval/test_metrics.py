import math

import numpy as np
import pytest

from eval.metrics import IdealLists, hit_ranks, ndcg_attribute, ndcg_full, summarize
from eval.protocol import Manipulations


def dcg(rels):
    return sum(r / math.log2(i + 2) for i, r in enumerate(rels))


def test_against_a_plain_loop():
    rng = np.random.default_rng(0)
    gallery = rng.integers(0, 3, size=(40, 3))
    target = rng.integers(0, 3, size=(12, 3))
    change = np.where(rng.random((12, 3)) < 0.5, target, -1)
    change[:, 0] = target[:, 0]  # at least one attribute changed
    positions = np.stack([rng.permutation(40)[:7] for _ in range(12)])
    full, attr = ndcg_full(positions, gallery, target), ndcg_attribute(positions, gallery, change)
    ranks = hit_ranks(positions, gallery, target)
    for m in range(12):
        rel = [(gallery[p] == target[m]).sum() / 3 for p in positions[m]]
        best = sorted(((g == target[m]).sum() / 3 for g in gallery), reverse=True)
        has = [all(gallery[p][a] == change[m][a] for a in range(3) if change[m][a] >= 0) for p in positions[m]]
        n_rel = sum(all(g[a] == change[m][a] for a in range(3) if change[m][a] >= 0) for g in gallery)
        exact = [bool((gallery[p] == target[m]).all()) for p in positions[m]]
        assert ranks[m] == (exact.index(True) if True in exact else 7)
        for k in range(1, 8):
            np.testing.assert_allclose(full[m, k - 1], dcg(rel[:k]) / dcg(best[:k]))
            want = dcg([float(h) for h in has[:k]]) / dcg([1.0] * min(k, n_rel)) if n_rel else 0.0
            np.testing.assert_allclose(attr[m, k - 1], want)


def test_summary_groups_and_average():
    gallery = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    m = Manipulations(
        query=np.array([0, 0, 1]),
        change=np.array([[1, -1], [-1, 1], [1, -1]]),
        target=np.array([[1, 0], [0, 1], [1, 1]]),
        group=np.array([0, 1, 0]),
        groups=["x", "y"],
    )
    positions = np.array([[1, 0, 2], [2, 3, 0], [0, 1, 2]])  # hits at rank 1, 2 and 3
    s = summarize(m, positions, gallery, k_max=3)
    assert s["k"] == [1, 2, 3]
    assert s["groups"]["x"]["count"] == 2 and s["groups"]["y"]["count"] == 1
    assert s["groups"]["x"]["top_k"] == [0.5, 0.5, 1.0]
    assert s["groups"]["y"]["top_k"] == [0.0, 1.0, 1.0]
    assert s["average"]["top_k"] == [0.25, 0.75, 1.0]  # each attribute counts once


def test_unknown_target_values_match_only_unknown_gallery_values():
    """ADDE compares one-hot vectors: an all-zero block (unknown, -1 here) equals only an all-zero block."""
    gallery = np.array([[0, 0], [0, 1], [0, -1], [1, -1]])
    m = Manipulations(
        query=np.array([0, 0]),
        change=np.array([[-1, 1], [1, -1]]),
        target=np.array([[0, -1], [1, -1]]),
        group=np.array([0, 1]),
        groups=["y", "x"],
    )
    positions = np.array([[0, 1, 2, 3], [1, 0, 3, 2]])
    # target (0, unknown): rows 0 and 1 have a value there, row 2 is unknown there too -> hit at rank 3
    # target (1, unknown): row 3 at rank 3
    assert hit_ranks(positions, gallery, m.target).tolist() == [2, 2]
    s = summarize(m, positions, gallery, k_max=4)
    assert s["groups"]["y"]["top_k"] == [0.0, 0.0, 1.0, 1.0] and s["groups"]["x"]["top_k"] == [0.0, 0.0, 1.0, 1.0]
    # graded relevance counts an unknown-unknown agreement as a matching attribute, as ADDE's NDCG does
    np.testing.assert_allclose(ndcg_full(positions[:1], gallery, m.target[:1])[0, 0], 0.5 / 1.0)


def test_ideal_lists_computed_once_give_the_same_summaries():
    """evaluate hands every ranking of the same manipulations one IdealLists: the summaries must not change."""
    rng = np.random.default_rng(1)
    gallery = rng.integers(0, 3, size=(30, 3))
    target = rng.integers(0, 3, size=(10, 3))
    change = np.where(rng.random((10, 3)) < 0.5, target, -1)
    change[:, 1] = target[:, 1]
    m = Manipulations(query=np.arange(10), change=change, target=target, group=np.arange(10) % 2, groups=["a", "b"])
    ideals = IdealLists.of(m, gallery, 6)
    for _ in range(3):  # several rankings, one IdealLists
        positions = np.stack([rng.permutation(30)[:6] for _ in range(10)])
        assert summarize(m, positions, gallery, 6, ideals) == summarize(m, positions, gallery, 6)
    with pytest.raises(ValueError, match="ideal lists of shape"):
        summarize(m, positions[:, :4], gallery, 4, ideals)
