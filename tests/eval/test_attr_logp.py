import math

import numpy as np

from eval.attr_logp import attr_logp_topk
from eval.protocol import Manipulations

# 2 attributes with 2 and 3 values; per image the softmax of each, concatenated (C = 5)
GALLERY = np.array(
    [
        [0.9, 0.1, 0.1, 0.1, 0.8],  # a0=0 likely, a1=2 likely: the best match for target (0, 2)
        [0.9, 0.1, 0.8, 0.1, 0.1],  # a0=0, a1=0
        [0.1, 0.9, 0.1, 0.1, 0.8],  # a0=1, a1=2
        [0.5, 0.5, 0.2, 0.2, 0.6],
        [0.9, 0.1, 0.1, 0.1, 0.8],  # the same as image 0: a tie, broken by position
    ]
)
SPANS = [(0, 2), (2, 5)]  # each attribute's columns


def manipulations(query, change) -> Manipulations:
    query, change = np.asarray(query), np.asarray(change)
    return Manipulations(
        query=query, change=change, target=np.zeros_like(change), group=np.zeros(len(query), int), groups=["x"]
    )


def reference(query_probabilities, gallery, m) -> list[list[int]]:
    """A plain loop: log p(new value) for the manipulated attribute, log sum_v p_q(v) p_n(v) for the others."""
    out = []
    for q, change in zip(m.query, m.change):
        scores = []
        for g in gallery:
            s = 0.0
            for a, (lo, hi) in enumerate(SPANS):
                shared = sum(query_probabilities[q][v] * g[v] for v in range(lo, hi))
                s += math.log(g[lo + change[a]] if change[a] >= 0 else shared)
            scores.append(s)
        out.append(sorted(range(len(gallery)), key=lambda n: (-round(scores[n], 6), n)))
    return out


def test_a_sure_query_ranks_by_the_log_probability_of_its_predicted_values_with_the_new_one():
    sure = np.array([[1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0]])  # q0 (0, 1), q1 (1, 0), one-hot
    m = manipulations([0, 1], [[-1, 2], [0, -1]])  # q0: a1 -> 2, target (0, 2); q1: a0 -> 0, target (0, 0)
    top = attr_logp_topk(sure, GALLERY, [2, 3], m, k=5)
    for row, target in zip(top, [(0, 2), (0, 0)]):
        scores = [math.log(g[target[0]]) + math.log(g[2 + target[1]]) for g in GALLERY]
        assert row.tolist() == sorted(range(5), key=lambda n: (-round(scores[n], 6), n))
    assert top[0].tolist()[:2] == [0, 4]  # the tie, in position order


def test_an_unsure_query_counts_every_value_it_may_have():
    # q0 is 0.55 / 0.45 between a1's values 0 and 1: its predicted value is 0, but an image sure of 1 fits it as well
    unsure = np.array([[1.0, 0.0, 0.55, 0.45, 0.0]])
    m = manipulations([0], [[1, -1]])  # a0 -> 1
    gallery = np.array(
        [
            [0.1, 0.9, 0.3, 0.0, 0.7],  # a1 = 2 likely, 0 possible
            [0.1, 0.9, 0.05, 0.95, 0.0],  # a1 = 1 surely
            [0.1, 0.9, 0.95, 0.05, 0.0],  # a1 = 0 surely
        ]
    )
    top = attr_logp_topk(unsure, gallery, [2, 3], m, k=3)
    assert top.tolist() == reference(unsure, gallery, m)
    assert top[0].tolist() == [2, 1, 0]  # the predicted value alone would put image 1 last (p 0.05 against 0.3)


def test_any_query_distribution_matches_the_plain_loop():
    rng = np.random.default_rng(3)
    queries = np.concatenate([rng.dirichlet(np.ones(2), 4), rng.dirichlet(np.ones(3), 4)], axis=1)
    gallery = np.concatenate([rng.dirichlet(np.ones(2), 30), rng.dirichlet(np.ones(3), 30)], axis=1)
    m = manipulations([0, 0, 1, 2, 3, 3], [[1, -1], [-1, 0], [0, -1], [-1, 2], [1, -1], [-1, 1]])
    assert attr_logp_topk(queries, gallery, [2, 3], m, k=30).tolist() == reference(queries, gallery, m)


def test_more_candidates_than_fit_are_ordered_exactly():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=300)
    gallery = np.concatenate([probs, rng.dirichlet(np.ones(2), size=300)], axis=1)
    gallery[7] = gallery[100:180] = [0.98, 0.01, 0.01, 0.99, 0.01]  # the most likely target: ties past k + margin
    sure = np.array([[1.0, 0.0, 0.0, 1.0, 0.0]])  # the query's values (0, 0)
    top = attr_logp_topk(sure, gallery, [3, 2], manipulations([0], [[-1, -1]]), k=50)[0]
    assert top.tolist() == [7, *range(100, 149)]
