import numpy as np

from fsnet.sampling import GlobalTripletSampler


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
