import math

import numpy as np

from eval.attr_logp import attr_logp_topk, target_of
from eval.protocol import Manipulations


def test_ranks_by_summed_log_probability_of_the_predicted_target():
    # 2 attributes with 2 and 3 values; per image the softmax of each, concatenated (C = 5)
    gallery = np.array(
        [
            [0.9, 0.1, 0.1, 0.1, 0.8],  # a0=0 likely, a1=2 likely: the best match for target (0, 2)
            [0.9, 0.1, 0.8, 0.1, 0.1],  # a0=0, a1=0
            [0.1, 0.9, 0.1, 0.1, 0.8],  # a0=1, a1=2
            [0.5, 0.5, 0.2, 0.2, 0.6],
            [0.9, 0.1, 0.1, 0.1, 0.8],  # the same as image 0: a tie, broken by position
        ]
    )
    query_predicted = np.array([[0, 1], [1, 0]])
    m = Manipulations(
        query=np.array([0, 1]),
        change=np.array([[-1, 2], [0, -1]]),
        target=np.array([[9, 9], [9, 9]]),  # labels unused
        group=np.array([1, 0]),
        groups=["a0", "a1"],
    )
    np.testing.assert_array_equal(target_of(m, query_predicted), [[0, 2], [0, 0]])
    top = attr_logp_topk(query_predicted, gallery, [2, 3], m, k=5)
    for row, target in zip(top, target_of(m, query_predicted)):
        scores = [math.log(g[target[0]]) + math.log(g[2 + target[1]]) for g in gallery]  # a plain loop
        expected = sorted(range(5), key=lambda n: (-round(scores[n], 12), n))
        assert row.tolist() == expected
    assert top[0].tolist()[:2] == [0, 4]


def test_more_candidates_than_fit_are_ordered_exactly():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=300)
    gallery = np.concatenate([probs, rng.dirichlet(np.ones(2), size=300)], axis=1)
    m = Manipulations(
        query=np.array([0]),
        change=np.array([[-1, -1]]),
        target=np.zeros((1, 2), int),
        group=np.array([0]),
        groups=["x"],
    )
    gallery[7] = gallery[100:180] = [0.98, 0.01, 0.01, 0.99, 0.01]  # the most likely target: ties past k + margin
    query_predicted = np.array([[0, 0]])
    top = attr_logp_topk(query_predicted, gallery, [3, 2], m, k=50)[0]
    assert top.tolist() == [7, *range(100, 149)]
