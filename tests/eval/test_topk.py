"""The Top-K core (eval/topk.py) and the reference (eval/brute_force.py): known answers, ties in gallery order
across the candidates' edge, the ADDE-style algebra, the device choice; the evaluator fsnet evaluate runs
(eval/threshold_topk.py) gives the same lists (its own cases: tests/eval/test_threshold_topk.py)."""

import numpy as np
import pytest
import torch

from eval.brute_force import brute_force_topk
from eval.linear_global import LinearGlobal
from eval.protocol import Manipulations, build_manipulations
from eval.threshold_topk import threshold_topk
from eval.topk import MARGIN, compute_device, smallest_k

NUM_VALUES = [4, 3, 2]
NAMES = ["a", "b", "c"]


def random_case(seed: int, learned: bool, ties: int, d: int = 6, r: int = 10):
    rng = np.random.default_rng(seed)
    a = len(NUM_VALUES)
    model = LinearGlobal(
        lambdas=rng.uniform(0.5, 2.0, a),
        blocks=rng.normal(size=(a, d, r)) if learned else None,
        memory=rng.normal(size=(sum(NUM_VALUES), d)),
        num_values=NUM_VALUES,
    )
    queries = np.stack([rng.integers(0, v, 25) for v in NUM_VALUES], 1)
    gallery_labels = np.stack([rng.integers(0, v, 200) for v in NUM_VALUES], 1)
    reps = rng.normal(size=(25, a, d)).astype(np.float32)
    gallery = model.global_of(rng.normal(size=(200, a, d))).astype(np.float32)
    # ties: many gallery rows equal to the manipulated query of manipulation 0, so they straddle any k
    m = build_manipulations(queries, gallery_labels, NAMES, NUM_VALUES)
    first = model.manipulated(model.global_of(reps[m.query[:1]].astype(np.float64)), reps[m.query[:1]], m.change[:1])
    gallery[50 : 50 + ties] = (first[0] + 0.25).astype(np.float32)
    return model, reps, gallery, m


@pytest.mark.parametrize("learned", [True, False])
@pytest.mark.parametrize("k", [1, 5, 20, 200])
@pytest.mark.parametrize("prune", [40, 512])
def test_the_evaluator_equals_the_reference_across_a_tied_block(learned, k, prune):
    model, reps, gallery, m = random_case(k, learned, ties=MARGIN + 20)
    fast = threshold_topk(model, reps, gallery, m, k, query_chunk=4, prune=prune)
    slow = brute_force_topk(model, reps, gallery, m, k, batch=33)
    np.testing.assert_array_equal(fast.positions, slow.positions)
    np.testing.assert_allclose(fast.distances, slow.distances, rtol=1e-5, atol=1e-5)
    if 1 < k < 200:  # the tied block straddles the k + MARGIN candidates: those rows were redone over the gallery
        assert slow.exact_rows > 0
    tied_rows = fast.positions[0][np.isin(fast.positions[0], np.arange(50, 50 + MARGIN + 20))]
    assert (np.diff(tied_rows) > 0).all()  # ties come in gallery order


def test_several_attributes_at_once():
    rng = np.random.default_rng(3)
    model = LinearGlobal(rng.uniform(0.5, 2, 3), rng.normal(size=(3, 4, 7)), rng.normal(size=(9, 4)), NUM_VALUES)
    queries = np.stack([rng.integers(0, v, 20) for v in NUM_VALUES], 1)
    labels = np.stack([rng.integers(0, v, 150) for v in NUM_VALUES], 1)
    m = build_manipulations(queries, labels, NAMES, NUM_VALUES, at_once=2)
    reps = rng.normal(size=(20, 3, 4))
    gallery = rng.normal(size=(150, 7)).astype(np.float32)
    fast = threshold_topk(model, reps, gallery, m, 10, query_chunk=3, prune=30)
    slow = brute_force_topk(model, reps, gallery, m, 10)
    np.testing.assert_array_equal(fast.positions, slow.positions)


def test_known_answers():
    """A = 2 attributes, D = 1, F = [s_1, s_2]: the manipulated query and its distances are known by hand."""
    model = LinearGlobal(
        lambdas=np.ones(2), blocks=None, memory=np.array([[0.0], [10.0], [0.0], [5.0]]), num_values=[2, 2]
    )
    reps = np.zeros((1, 2, 1))  # the query: F = (0, 0)
    gallery = np.array([[10, 0], [10, 1], [0, 0], [9, 0], [10, 0], [10, 5]], dtype=np.float32)
    m = Manipulations(
        query=np.array([0, 0]),
        change=np.array([[1, -1], [1, 1]]),
        target=np.array([[1, 0], [1, 1]]),
        group=np.array([0, 1]),
        groups=["x", "x+y"],
    )
    for top in (threshold_topk(model, reps, gallery, m, 4), brute_force_topk(model, reps, gallery, m, 4)):
        # a -> 1: F' = (10, 0): distances 0, 1, 100, 1, 0, 25 -> 0 and 4 tie (position order), then 1 and 3 tie
        assert top.positions[0].tolist() == [0, 4, 1, 3]
        np.testing.assert_allclose(top.distances[0], [0, 0, 1, 1])
        # both change: F' = (10, 5): 25, 16, 125, 26, 25, 0
        assert top.positions[1].tolist() == [5, 1, 0, 4]
        np.testing.assert_allclose(top.distances[1], [0, 16, 25, 25])


@pytest.mark.parametrize("k", [1, 10, 120])
def test_additive_memory_evaluator_equals_brute_force_and_the_model(k):
    """The ADDE-style algebra: F' = F + M i; the evaluator, faiss on the explicit F' and the torch
    memory agree, with several attributes at once and queries whose old value is their label."""
    from eval.additive_memory import AdditiveMemory
    from fsnet.model.disentangled_memory import DisentangledMemory

    rng = np.random.default_rng(k)
    d, a = 3, len(NUM_VALUES)
    memory = DisentangledMemory(NUM_VALUES, d).double()
    with torch.no_grad():
        memory.weight.copy_(torch.from_numpy(rng.normal(size=(a * d, sum(NUM_VALUES)))))
    model = AdditiveMemory(memory.table.detach().numpy(), NUM_VALUES, d)
    queries = np.stack([rng.integers(0, v, 30) for v in NUM_VALUES], 1)
    gallery_labels = np.stack([rng.integers(0, v, 120) for v in NUM_VALUES], 1)
    m = build_manipulations(queries, gallery_labels, NAMES, NUM_VALUES, at_once=1 if k < 10 else 2)
    reps = rng.normal(size=(30, a, d))
    gallery = rng.normal(size=(120, a * d)).astype(np.float32)
    fast = threshold_topk(model, reps, gallery, m, k, query_chunk=7, prune=40, values=queries)
    slow = brute_force_topk(model, reps, gallery, m, k, values=queries)
    np.testing.assert_array_equal(fast.positions, slow.positions)
    with torch.no_grad():
        torch_f = memory.manipulate(
            torch.from_numpy(reps[m.query].reshape(len(m), -1)),
            memory.indicator(torch.from_numpy(queries[m.query]), torch.from_numpy(m.change.astype(np.int64))),
        )
    np.testing.assert_allclose(
        model.long_way(reps[m.query], queries[m.query], m.change), torch_f.numpy(), rtol=1e-12, atol=1e-12
    )
    slots = model.slots(reps, queries)
    np.testing.assert_allclose(
        model.manipulated(model.global_of(reps[m.query]), slots[m.query], m.change),
        torch_f.numpy(),
        rtol=1e-10,
        atol=1e-10,
    )
    with pytest.raises(ValueError, match="current values"):
        threshold_topk(model, reps, gallery, m, k)


def test_smallest_k_orders_ties_by_position_past_the_candidates():
    score = torch.zeros(2, 60)
    score[1, :5] = 1.0  # row 1: 55 zeros from position 5 on, more than k + MARGIN
    assert smallest_k(score, 3).tolist() == [[0, 1, 2], [5, 6, 7]]
    score[0, 40] = -1.0
    assert smallest_k(score, 2).tolist()[0] == [40, 0]


def test_the_device_is_the_one_asked_for_else_cuda_where_there_is_one():
    assert compute_device("cpu") == torch.device("cpu")
    assert compute_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
