import numpy as np
import pytest

from fsnet.catalog.splits import assign_splits, resolve_count
from fsnet.config import SplitConfig
from fsnet.errors import CatalogError


def labels_for(n, unknown_every=0, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, (n, 3)).astype(np.int16)
    if unknown_every:
        labels[::unknown_every, 1] = -1
    return labels


IDS = [f"img{i:04d}" for i in range(1000)]


def test_sizes_disjoint_and_deterministic():
    labels = labels_for(1000, unknown_every=5)
    cfg = SplitConfig(n_query=50, n_gallery=300, seed=7)
    split = assign_splits(IDS, labels, cfg)
    assert (split == "query").sum() == 50 and (split == "gallery").sum() == 300
    assert (split == "train").sum() == 650
    assert set(split) == {"train", "query", "gallery"}  # one split per row: disjoint by construction
    assert np.array_equal(split, assign_splits(IDS, labels, cfg))
    # every image with an unknown value trains
    assert (split[(labels < 0).any(axis=1)] == "train").all()


def test_depends_on_ids_not_row_order():
    labels = labels_for(1000)
    cfg = SplitConfig(n_query=100, n_gallery=200, seed=1)
    split = dict(zip(IDS, assign_splits(IDS, labels, cfg)))
    perm = np.random.default_rng(3).permutation(1000)
    shuffled = assign_splits([IDS[i] for i in perm], labels[perm], cfg)
    assert all(split[IDS[i]] == s for i, s in zip(perm, shuffled))


def test_seed_changes_the_split():
    labels = labels_for(1000)
    a = assign_splits(IDS, labels, SplitConfig(n_query=100, n_gallery=200, seed=1))
    b = assign_splits(IDS, labels, SplitConfig(n_query=100, n_gallery=200, seed=2))
    assert not np.array_equal(a, b)


def test_fractions_of_eligible_images():
    labels = labels_for(1000, unknown_every=4)  # 750 eligible
    split = assign_splits(IDS, labels, SplitConfig(n_query=0.1, n_gallery=0.4, seed=0))
    assert (split == "query").sum() == 75 and (split == "gallery").sum() == 300
    assert resolve_count(0.0001, 10) == 1


def test_too_few_eligible_images():
    with pytest.raises(CatalogError, match=r"split.n_query \+ split.n_gallery = 2000 \+ 18000, but only 1000 of 1000"):
        assign_splits(IDS, labels_for(1000), SplitConfig(n_query=2000, n_gallery=18000, seed=0))
    # every image a query or gallery image: a catalog to evaluate a model trained elsewhere on
    split = assign_splits(IDS[:10], labels_for(10), SplitConfig(n_query=5, n_gallery=5, seed=0))
    assert sorted(split.tolist()) == ["gallery"] * 5 + ["query"] * 5
