import numpy as np
import pytest
import torch

from fsnet.sampling import GlobalTripletSampler, choose_negatives


def brute_force_candidates(labels, query, num_values):
    q = labels[query]
    complete = {tuple(r) for r in labels if (r >= 0).all()}
    out = []
    for a, count in enumerate(num_values):
        for v in range(count):
            if v != q[a]:
                t = q.copy()
                t[a] = v
                if tuple(t) in complete:
                    out.append((a, v))
    return out


def test_global_triplets_obey_the_protocol():
    rng = np.random.default_rng(0)
    num_values = [3, 4, 2]
    labels = np.stack([rng.integers(0, v, 200) for v in num_values], axis=1).astype(np.int16)
    labels[:10, 1] = -1
    sampler = GlobalTripletSampler(labels, num_values)
    for q in range(30):
        expected = brute_force_candidates(labels, q, num_values) if (labels[q] >= 0).all() else []
        assert sampler.candidates(q) == expected
    t = sampler.sample(np.arange(200), rng)
    assert len(t) > 150 and not set(t.query.tolist()) & set(range(10))  # incomplete queries skipped
    for q, m, p, n in zip(t.query, t.manipulation, t.positive, t.negative):
        changed = np.flatnonzero(m >= 0)
        assert len(changed) == 1
        target = labels[q].copy()
        target[changed[0]] = m[changed[0]]
        assert m[changed[0]] != labels[q, changed[0]]
        assert np.array_equal(labels[p], target)  # positive: exactly the target vector
        assert not np.array_equal(labels[n], target)


def test_no_manipulation_available():
    labels = np.array([[0, 0], [1, 1]], dtype=np.int16)  # they differ in two attributes
    t = GlobalTripletSampler(labels, [2, 2]).sample(np.arange(2), np.random.default_rng(0))
    assert len(t) == 0 and t.manipulation.shape == (0, 2)


def small_labels():
    """16 images, 3 attributes with 2, 3 and 2 values, one unknown."""
    rng = np.random.default_rng(1)
    labels = np.stack([rng.integers(0, v, 16) for v in [2, 3, 2]], axis=1).astype(np.int16)
    labels[3, 1] = -1
    return labels


def test_one_candidate_draws_what_the_random_sampler_drew():
    """train.negatives random: the triplets (and so the training) of the sampler before negatives were mined,
    recorded from it for this seed."""
    t = GlobalTripletSampler(small_labels(), [2, 3, 2]).sample(np.arange(16), np.random.default_rng(7))
    assert t.query.tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    changed = [(int(a), int(m[a])) for m in t.manipulation for a in np.flatnonzero(m >= 0)]  # (attribute, value)
    recorded = [(1, 2), (1, 0), (1, 1), (0, 1), (1, 0), (0, 0), (1, 0), (2, 1), (2, 0), (1, 0), (1, 0), (2, 1)]
    assert changed == [*recorded, (0, 0), (1, 2), (1, 2)]
    assert t.positive.tolist() == [4, 13, 10, 6, 14, 4, 2, 4, 12, 2, 12, 9, 14, 11, 4]
    assert t.negative.tolist() == [10, 10, 12, 0, 4, 14, 0, 2, 1, 4, 11, 7, 8, 15, 11]
    assert t.candidates.shape == (15, 1)


def test_several_candidate_negatives_all_have_another_vector():
    labels = small_labels()
    t = GlobalTripletSampler(labels, [2, 3, 2]).sample(np.arange(16), np.random.default_rng(7), negatives=8)
    assert t.candidates.shape == (len(t), 8) and len(t) == 15
    assert (t.negative == t.candidates[:, 0]).all()
    assert len(np.unique(t.candidates)) > 8  # drawn, not one image repeated
    for q, m, row in zip(t.query, t.manipulation, t.candidates):
        target = np.where(m >= 0, m, labels[q])
        assert not any(np.array_equal(labels[c], target) for c in row)


def test_choose_negatives_by_rule():
    d_positive = torch.tensor([1.0, 1.0, 5.0, 2.0])
    d_candidates = torch.tensor(
        [
            [3.0, 0.5, 2.0, 4.0],  # closest 0.5 (nearer than the positive); closest farther: 2.0
            [0.2, 0.9, 0.1, 0.3],  # none farther: semihard falls back to the closest
            [1.0, 2.0, 3.0, 4.0],  # none farther
            [2.0, 7.0, 2.5, 1.5],  # 2.0 ties the positive: not farther, so 2.5
        ]
    )
    assert choose_negatives(d_positive, d_candidates, "random").tolist() == [0, 0, 0, 0]
    assert choose_negatives(d_positive, d_candidates, "hardest").tolist() == [1, 2, 0, 3]
    assert choose_negatives(d_positive, d_candidates, "semihard").tolist() == [2, 2, 0, 2]
    with pytest.raises(ValueError, match="negatives 'easiest': choose one of random, semihard, hardest"):
        choose_negatives(d_positive, d_candidates, "easiest")
