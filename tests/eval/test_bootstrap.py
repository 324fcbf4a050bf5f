"""The bootstrap over queries: the vectorised resampling against a slow loop, intervals that narrow with more
queries, paired differences of a ranking with itself exactly zero."""

import numpy as np
import pytest

from eval.bootstrap import QueryBootstrap, paired_difference, query_rows, unpaired_difference
from eval.metrics import curve_bands, summarize
from eval.protocol import Manipulations, build_manipulations


def _protocol(rng, queries, groups=3, per_query=(1, 6)):
    """Manipulations of ``queries`` queries in ``groups`` groups, a varying number each; hits (M, k)."""
    query, group = [], []
    for q in range(queries):
        for g in range(groups):
            n = rng.integers(*per_query)
            query += [q] * n
            group += [g] * n
    query, group = np.array(query), np.array(group)
    ability = rng.random(queries)  # queries differ in difficulty: their manipulations are not independent
    rank = rng.geometric(0.05 + 0.5 * ability[query]) - 1  # (M,) first-hit rank
    hits = (rank[:, None] < np.arange(1, 11)[None, :]).astype(float)  # (M, 10)
    return query, group, hits


def _slow_group_means(weights, values, query, group, groups):
    """The same resampled means, one resample and one group at a time, by repeating drawn queries' rows."""
    out = np.full((len(weights), groups, values.shape[1]), np.nan)
    for b, counts in enumerate(weights.astype(int)):
        rows = np.concatenate([np.repeat(np.flatnonzero(query == q), c) for q, c in enumerate(counts) if c])
        for g in range(groups):
            mine = rows[group[rows] == g]
            if len(mine):
                out[b, g] = values[mine].mean(axis=0)
    return out


def test_vectorised_resampling_equals_a_slow_loop():
    rng = np.random.default_rng(0)
    query, group, hits = _protocol(rng, 40)
    boot = QueryBootstrap.draw(40, resamples=60, seed=3)
    fast = boot.group_means(hits, query, group, 3)
    slow = _slow_group_means(boot.weights, hits, query, group, 3)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
    average = boot.averages(hits, query, group, 3)
    np.testing.assert_allclose(average, np.nanmean(slow, axis=1), rtol=1e-5, atol=1e-6)


def test_draws_are_seeded_and_resample_queries():
    a, b = QueryBootstrap.draw(50, 20, seed=1), QueryBootstrap.draw(50, 20, seed=1)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert (a.weights.sum(axis=1) == 50).all()  # each resample draws Q queries
    assert not np.array_equal(a.weights, QueryBootstrap.draw(50, 20, seed=2).weights)


def test_the_interval_narrows_as_queries_grow():
    widths = []
    for queries in (30, 300, 3000):
        rng = np.random.default_rng(queries)
        query, group, hits = _protocol(rng, queries)
        boot = QueryBootstrap.draw(queries, resamples=400, seed=0)
        low, high = boot.interval(boot.averages(hits[:, 4:5], query, group, 3))
        point = np.mean([hits[group == g, 4].mean() for g in range(3)])
        assert low[0] <= point <= high[0]
        widths.append(high[0] - low[0])
    assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0  # about 1 / sqrt(Q): sqrt(10) each step


def test_a_ranking_against_itself_differs_by_exactly_zero():
    rng = np.random.default_rng(1)
    query, group, hits = _protocol(rng, 100)
    boot = QueryBootstrap.draw(100, resamples=200)
    total, per_group = paired_difference(boot, hits[:, 9], hits[:, 9], query, group, 3)
    assert (total.value, total.low, total.high, total.share_not_above) == (0.0, 0.0, 0.0, 1.0)
    assert all((g.value, g.low, g.high) == (0.0, 0.0, 0.0) for g in per_group)


def test_a_clearly_better_ranking_is_told_apart_and_pairing_narrows_the_interval():
    rng = np.random.default_rng(2)
    query, group, hits = _protocol(rng, 400)
    old = hits[:, 2]
    new = np.maximum(old, (rng.random(len(old)) < 0.1).astype(float))  # the old hits and 10% more
    boot = QueryBootstrap.draw(400, resamples=500)
    paired, _ = paired_difference(boot, new, old, query, group, 3)
    assert 0 < paired.low < paired.value < paired.high and paired.share_not_above == 0.0
    unpaired = unpaired_difference((new, query, group), (old, query, group), 3, resamples=500)
    assert unpaired.value == pytest.approx(paired.value)
    assert unpaired.high - unpaired.low > 2 * (paired.high - paired.low)  # what the two share cancels when paired


def test_query_rows_number_only_queries_with_manipulations():
    q, rows = query_rows(np.array([7, 7, 3, 9, 3]))
    assert q == 3 and rows.tolist() == [1, 1, 0, 2, 0]


def test_summarize_puts_an_interval_around_every_curve():
    rng = np.random.default_rng(4)
    query_labels = rng.integers(0, 3, (60, 2))
    gallery_labels = rng.integers(0, 3, (200, 2))
    manipulations = build_manipulations(query_labels, gallery_labels, ["a", "b"], [3, 3])
    positions = np.stack([rng.permutation(200)[:10] for _ in range(len(manipulations))])
    q, _ = query_rows(manipulations.query)
    out = summarize(manipulations, positions, gallery_labels, 10, bootstrap=QueryBootstrap.draw(q, 300))
    for curves in [*out["groups"].values(), out["average"]]:
        for name in ("top_k", "ndcg_full", "ndcg_attribute"):
            band = curves["interval"][name]
            assert len(band["low"]) == len(band["high"]) == 10
            assert all(lo - 1e-9 <= x <= hi + 1e-9 for lo, x, hi in zip(band["low"], curves[name], band["high"]))
    assert out["average"]["interval"]["top_k"]["high"][9] > out["average"]["interval"]["top_k"]["low"][9]


def test_a_group_without_manipulations_has_no_interval_and_no_warning(recwarn):
    query, group = np.repeat(np.arange(10), 3), np.tile([0, 2, 0], 10)
    manipulations = Manipulations(query, np.zeros((30, 2), np.int16), np.zeros((30, 2), np.int16), group, list("abc"))
    bands = curve_bands(QueryBootstrap.draw(10, 50), manipulations, {"top_k": np.random.default_rng(0).random((30, 4))})
    assert [b is None for b in bands["groups"]["top_k"]] == [False, True, False]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
