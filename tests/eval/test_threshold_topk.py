"""The threshold path (eval/threshold_topk.py) gives the same Top-k lists, hence the same first-match ranks and
curves, as the faiss brute-force reference (eval/brute_force.py), for every algebra, on random data with
planted ties: exact duplicates in the gallery under other labels (the rank of the first exact match then depends on
the tie rule: gallery position) and a block of copies that straddles any k + MARGIN."""

import numpy as np
import pytest

from eval.additive_memory import AdditiveMemory
from eval.brute_force import brute_force_topk
from eval.linear_global import LinearGlobal
from eval.metrics import hit_ranks, summarize
from eval.protocol import Manipulations, build_manipulations
from eval.threshold_topk import threshold_topk
from eval.topk import MARGIN

NUM_VALUES = [4, 3, 5]
NAMES = ["a", "b", "c"]


def labelled(rng: np.random.Generator, n: int, families: np.ndarray) -> np.ndarray:
    """(n, A) labels around a few product families (random labels would leave few targets in the gallery)."""
    out = families[rng.integers(0, len(families), n)].copy()
    fresh = np.stack([rng.integers(0, v, n) for v in NUM_VALUES], 1)
    return np.where(rng.random(out.shape) < 0.3, fresh, out)


def tied_case(seed: int, algebra: str, n: int = 300, q: int = 30, d: int = 6, r: int = 10, at_once: int = 1):
    """(model, reps, gallery, gallery_labels, manipulations, values) with planted ties."""
    rng = np.random.default_rng(seed)
    a = len(NUM_VALUES)
    if algebra == "additive":
        model = AdditiveMemory(rng.normal(size=(sum(NUM_VALUES), a * d)), NUM_VALUES, d)
    else:
        blocks = rng.normal(size=(a, d, r)) if algebra == "replace" else None  # "concat": F = [s_1, ..., s_A]
        model = LinearGlobal(rng.uniform(0.5, 2.0, a), blocks, rng.normal(size=(sum(NUM_VALUES), d)), NUM_VALUES)
    families = np.stack([rng.integers(0, v, 6) for v in NUM_VALUES], 1)
    query_labels, gallery_labels = labelled(rng, q, families), labelled(rng, n, families)
    reps = rng.normal(size=(q, a, d))
    gallery = model.global_of(rng.normal(size=(n, a, d))).astype(np.float32)
    copies = rng.choice(n, 60, replace=False)
    gallery[copies[30:]] = gallery[copies[:30]]  # exact duplicates, each under its own labels
    m = build_manipulations(query_labels, gallery_labels, NAMES, NUM_VALUES, at_once)
    first = model.manipulated(
        model.global_of(reps[m.query[:1]]), model.slots(reps, query_labels)[m.query[:1]], m.change[:1]
    )
    gallery[100 : 100 + MARGIN + 20] = (first[0] + 0.25).astype(np.float32)  # straddles any k + MARGIN
    return model, reps, gallery, gallery_labels, m, query_labels


@pytest.mark.parametrize("algebra", ["replace", "concat", "additive"])
@pytest.mark.parametrize("k", [1, 10, 50])
@pytest.mark.parametrize("prune", [20, 150, 10_000])
def test_same_lists_ranks_and_curves_as_brute_force(algebra, k, prune):
    model, reps, gallery, labels, m, values = tied_case(k + prune, algebra)
    new = threshold_topk(model, reps, gallery, m, k, query_chunk=7, prune=prune, values=values)
    reference = brute_force_topk(model, reps, gallery, m, k, batch=50, values=values)
    np.testing.assert_array_equal(
        hit_ranks(new.positions, labels, m.target), hit_ranks(reference.positions, labels, m.target)
    )
    np.testing.assert_array_equal(new.positions, reference.positions)
    np.testing.assert_allclose(new.distances, reference.distances, rtol=1e-5, atol=1e-5)
    assert summarize(m, new.positions, labels, k) == summarize(m, reference.positions, labels, k)
    tied = new.positions[0][np.isin(new.positions[0], np.arange(100, 100 + MARGIN + 20))]
    assert len(tied) == min(k, MARGIN + 20) and (np.diff(tied) > 0).all()  # the copies come in gallery order
    if prune == 20:
        assert new.full_rows > 0  # candidates too few for the bound: rows scored over the whole gallery
    if prune == 150:
        assert new.full_rows < len(m)  # the threshold settles rows: the candidate path ran


def test_duplicates_decide_the_first_match_by_position():
    """Two copies of the nearest image: the first (by position) without the target labels, the second with them,
    so the first exact match is at rank 1, not 0, in both paths."""
    model, reps, gallery, labels, m, values = tied_case(5, "replace")
    row = 3
    f_prime = model.manipulated(
        model.global_of(reps[m.query[row : row + 1]]), reps[m.query[row : row + 1]], m.change[row : row + 1]
    )
    gallery[[10, 11]] = f_prime[0].astype(np.float32)
    labels = labels.copy()
    labels[10] = (m.target[row] + 1) % np.array(NUM_VALUES)  # not the target
    labels[11] = m.target[row]
    for top in (
        threshold_topk(model, reps, gallery, m, 5, query_chunk=4, prune=40),
        brute_force_topk(model, reps, gallery, m, 5),
    ):
        assert top.positions[row, :2].tolist() == [10, 11]
        assert hit_ranks(top.positions, labels, m.target)[row] == 1


def test_several_attributes_at_once_and_a_stored_list_out_of_query_order():
    model, reps, gallery, labels, m, values = tied_case(11, "replace", at_once=2)
    shuffled = np.random.default_rng(0).permutation(len(m))  # a stored list (ADDE's files) in its own order
    s = Manipulations(m.query[shuffled], m.change[shuffled], m.target[shuffled], m.group[shuffled], m.groups)
    new = threshold_topk(model, reps, gallery, s, 10, query_chunk=4, prune=40)
    np.testing.assert_array_equal(new.positions, brute_force_topk(model, reps, gallery, s, 10).positions)
    in_order = threshold_topk(model, reps, gallery, m, 10, query_chunk=4, prune=40)  # the same list, unshuffled
    np.testing.assert_array_equal(new.positions, in_order.positions[shuffled])


def test_a_gallery_of_one_vector_is_all_ties():
    """Every bound equal: no threshold separates anything, every row is scored over the whole gallery, and the
    lists are the first k positions."""
    model, reps, gallery, labels, m, values = tied_case(2, "additive")
    gallery[:] = gallery[0]
    new = threshold_topk(model, reps, gallery, m, 8, prune=40, values=values)
    assert new.full_rows == len(m)
    assert (new.positions == np.arange(8)[None, :]).all()
    np.testing.assert_array_equal(new.positions, brute_force_topk(model, reps, gallery, m, 8, values=values).positions)


@pytest.mark.parametrize("algebra", ["replace", "additive"])
def test_a_stored_list_that_keeps_a_value_or_has_unknown_ones(algebra):
    """The bound leaves out each query's own value only where none of its manipulations takes it: a stored list
    (ADDE's files) may 'change' an attribute to the value the query has, and its queries may have unknown values."""
    model, reps, gallery, labels, m, values = tied_case(4, algebra)
    values = values.copy()
    values[::3, 1] = -1  # unknown
    change = m.change.copy()
    keep = np.flatnonzero(m.group == 0)[::2]
    change[keep, 0] = values[m.query[keep], 0]  # the query's own value
    s = Manipulations(m.query, change, np.where(change >= 0, change, values[m.query]), m.group, m.groups)
    new = threshold_topk(model, reps, gallery, s, 10, query_chunk=8, prune=40, values=values)
    np.testing.assert_array_equal(new.positions, brute_force_topk(model, reps, gallery, s, 10, values=values).positions)


def test_the_evaluator_takes_the_cheaper_exact_path_for_the_protocols_shape():
    """exact_topk: a protocol with few manipulations per (query, changed attribute) goes to faiss brute force, a
    dense one to the threshold path; the lists are the same either way."""
    from eval.threshold_topk import cheaper_path, exact_topk, factorized_rows

    def protocol(query: list[int], change: list[list[int]]) -> Manipulations:
        change_ = np.array(change, dtype=np.int16)
        group = np.array([int(np.flatnonzero(row >= 0)[0]) for row in change_])  # one attribute changed at a time
        return Manipulations(
            query=np.array(query), change=change_, target=np.zeros_like(change_), group=group, groups=NAMES
        )

    # 2 queries, one manipulation of attribute a each: 2 rows of manipulations against 2 + 2 x 2 x 1 gallery-wide
    sparse = protocol([0, 1], [[1, -1, -1], [2, -1, -1]])
    assert factorized_rows(sparse) == 2 + 2 * 2 and cheaper_path(sparse) == "brute force"
    # 1 query, every other value of a and of c: 3 + 4 manipulations against 1 + 2 x (1 + 1) rows
    dense = protocol(
        [0] * 7, [[1, -1, -1], [2, -1, -1], [3, -1, -1], [-1, -1, 1], [-1, -1, 2], [-1, -1, 3], [-1, -1, 4]]
    )
    assert factorized_rows(dense) == 1 + 2 * 2 and cheaper_path(dense) == "threshold"

    model, reps, gallery, labels, m, values = tied_case(3, "replace")
    reference = brute_force_topk(model, reps, gallery, m, 10, batch=50, values=values)
    np.testing.assert_array_equal(exact_topk(model, reps, gallery, m, 10, values=values).positions, reference.positions)
