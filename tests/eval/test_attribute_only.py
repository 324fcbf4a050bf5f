import numpy as np
import pytest

from eval.attribute_only import attribute_only_topk
from eval.protocol import Manipulations


def reference(query_global, gallery, predicted, m: Manipulations, k: int) -> list[list[int]]:
    """A plain loop: most target values matched first, then the squared distance between the query's and the
    image's global representations, then gallery position."""
    out = []
    for q, target in zip(m.query, m.target):
        d = ((gallery - query_global[q]) ** 2).sum(axis=1)
        matched = ((predicted == target) & (target >= 0)).sum(axis=1)
        out.append(sorted(range(len(gallery)), key=lambda n: (-matched[n], d[n], n))[:k])
    return out


@pytest.mark.parametrize("k", [5, 40])
def test_attribute_only_ranks_by_matched_values_then_distance_then_position(k):
    rng = np.random.default_rng(0)
    num_values = [2, 3, 4]
    gallery = rng.normal(size=(40, 6))
    gallery[7] = gallery[3]  # the same image twice: a tie in both counts, broken by position
    predicted = np.stack([rng.integers(0, v, 40) for v in num_values], axis=1)
    predicted[7] = predicted[3]
    query_global = rng.normal(size=(5, 6))
    query_global[2] = gallery[3]  # a query at distance 0 from two gallery images
    # every query, several manipulations each (as the protocol gives them: grouped by query), one target unknown
    query = np.repeat(np.arange(5), 4)
    target = np.stack([rng.integers(0, v, len(query)) for v in num_values], axis=1)
    target[5, 1] = -1
    m = Manipulations(query=query, change=target.copy(), target=target, group=np.zeros(len(query), int), groups=["x"])
    top = attribute_only_topk(query_global, gallery, predicted, num_values, m, k)
    assert top.shape == (len(query), k)
    assert top.tolist() == reference(query_global, gallery, predicted, m, k)
