"""The fused ranking (eval/fused_logp.py): weight 0 is the model's own exact Top-K; any weight ranks by
distance + weight x attr_logp's -log P(target), checked against a float64 reference; choose_weight picks a
weight where the classifiers know what the distance does not, and 0 where they know nothing; model.pt keeps it."""

import io

import numpy as np
import torch

from eval.brute_force import brute_force_topk
from eval.fused_logp import GRID, FusedLogp, choose_weight, one_standard_error, standard_error
from eval.linear_global import LinearGlobal
from eval.protocol import build_manipulations
from eval.validation_ranking import QUERIES
from fsnet.model import build_model
from fsnet.model.checkpoint import model_bytes, model_from_bytes
from tests.model.helpers import SCHEMA_3, model_config

NUM_VALUES = [4, 3, 5]
NAMES = ["a", "b", "c"]


def case(seed: int, n: int = 240, q: int = 25, d: int = 6, r: int = 10):
    """(algebra, query reps, query labels, gallery reps, gallery labels) around a few product families."""
    rng = np.random.default_rng(seed)
    a = len(NUM_VALUES)
    algebra = LinearGlobal(
        rng.uniform(0.5, 2.0, a), rng.normal(size=(a, d, r)), rng.normal(size=(sum(NUM_VALUES), d)), NUM_VALUES
    )
    families = np.stack([rng.integers(0, v, 5) for v in NUM_VALUES], 1)

    def labels(count):
        out = families[rng.integers(0, len(families), count)].copy()
        fresh = np.stack([rng.integers(0, v, count) for v in NUM_VALUES], 1)
        return np.where(rng.random(out.shape) < 0.3, fresh, out)

    return algebra, rng.normal(size=(q, a, d)), labels(q), rng.normal(size=(n, a, d)), labels(n)


def one_hot_probabilities(labels: np.ndarray, sure: float) -> np.ndarray:
    """(N, C) per-attribute softmax putting ``sure`` on each image's label and the rest spread evenly."""
    columns = []
    for a, v in enumerate(NUM_VALUES):
        p = np.full((len(labels), v), (1 - sure) / (v - 1))
        p[np.arange(len(labels)), labels[:, a]] = sure
        columns.append(p)
    return np.concatenate(columns, axis=1).astype(np.float32)


def test_weight_zero_is_the_model_and_any_weight_the_fused_score_in_float64():
    algebra, reps, q_labels, g_reps, g_labels = case(0)
    gallery = algebra.global_of(g_reps).astype(np.float32)
    rng = np.random.default_rng(1)
    probabilities = np.concatenate([rng.dirichlet(np.ones(v), len(g_labels)) for v in NUM_VALUES], 1)
    query_probabilities = np.concatenate([rng.dirichlet(np.ones(v), len(q_labels)) for v in NUM_VALUES], 1)
    m = build_manipulations(q_labels, g_labels, NAMES, NUM_VALUES)
    fused = FusedLogp(algebra, reps, q_labels, query_probabilities, gallery, probabilities, NUM_VALUES)

    model_alone = brute_force_topk(algebra, reps, gallery, m, 10, values=q_labels).positions
    np.testing.assert_array_equal(fused.topk(m, 10, 0.0), model_alone)

    f = algebra.manipulated(algebra.global_of(reps)[m.query], algebra.slots(reps, q_labels)[m.query], m.change)
    distance = ((f[:, None, :] - gallery.astype(np.float64)[None]) ** 2).sum(2)  # (M, N)
    p = probabilities.astype(np.float32).astype(np.float64)  # (N, C) as the index stores them
    bounds = np.cumsum([0, *NUM_VALUES])
    nlogp = np.zeros_like(distance)  # (M, N): -log p_n(new value), or -log sum_v p_q(v) p_n(v) unchanged
    for a, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        changed = m.change[:, a] >= 0
        new = -np.log(p[:, lo + np.maximum(m.change[:, a], 0)]).T  # (M, N)
        shared = -np.log(query_probabilities[m.query, lo:hi] @ p[:, lo:hi].T)  # (M, N)
        nlogp += np.where(changed[:, None], new, shared)
    score = distance + 3.0 * nlogp
    reference = np.stack([np.lexsort((np.arange(len(gallery)), row))[:10] for row in score])
    np.testing.assert_array_equal(fused.topk(m, 10, 3.0), reference)
    assert not np.array_equal(reference, model_alone)  # the classifiers' term changed the ranking


def test_choose_weight_uses_classifiers_that_know_and_ignores_ones_that_do_not():
    algebra, _, _, reps, labels = case(2, n=300)  # reps are noise: the distance knows nothing of the labels
    knowing = choose_weight(algebra, reps, one_hot_probabilities(labels, 0.9), labels, NUM_VALUES, NAMES, seed=0)
    assert knowing["factor"] > 0 and [g["factor"] for g in knowing["grid"]] == list(GRID)
    by_factor = {g["factor"]: g["top20"] for g in knowing["grid"]}
    assert by_factor[knowing["factor"]] > by_factor[0.0] + 0.2

    uniform = np.concatenate([np.full((len(labels), v), 1 / v) for v in NUM_VALUES], 1).astype(np.float32)
    blind = choose_weight(algebra, reps, uniform, labels, NUM_VALUES, NAMES, seed=0)
    assert blind["factor"] == 0.0 and blind["weight"] == 0.0  # every grid point ties: the model alone

    no_complete = np.full_like(labels, -1)
    assert choose_weight(algebra, reps, uniform, no_complete, NUM_VALUES, NAMES) is None


def test_the_weight_is_chosen_on_every_validation_image_not_the_epochs_draw():
    algebra, _, _, reps, labels = case(3, n=QUERIES + 100)
    labels[:7, 0] = -1  # an unknown value: not a query, still in the gallery
    chosen = choose_weight(algebra, reps, one_hot_probabilities(labels, 0.9), labels, NUM_VALUES, NAMES)
    assert chosen["queries"] == QUERIES + 93


def test_the_smallest_weight_within_one_standard_error_of_the_best():
    # a curve that rises, then is flat within noise: the best point (factor 8) is not the one taken
    figures = [
        {"factor": f, "top20": t, "standard_error": 0.012}
        for f, t in [(0.0, 0.70), (1.0, 0.760), (2.0, 0.764), (4.0, 0.772), (8.0, 0.775), (16.0, 0.774)]
    ]
    picked, best = one_standard_error(figures, "top20")
    assert (picked["factor"], best["factor"]) == (2.0, 8.0)  # 0.764 >= 0.775 - 0.012 > 0.760
    sharp = [{**f, "standard_error": 0.0} for f in figures]  # no noise: the best itself
    assert one_standard_error(sharp, "top20")[0]["factor"] == 8.0
    tied = [{"factor": f, "top20": 0.5, "standard_error": 0.0} for f in (0.0, 1.0)]
    assert one_standard_error(tied, "top20")[0]["factor"] == 0.0


def test_standard_error_of_the_mean_of_groups():
    groups = {"a": {"count": 100, "top_k": [0.2, 0.5]}, "b": {"count": 25, "top_k": [0.1, 0.8]}}
    expected = np.sqrt(0.5 * 0.5 / 100 + 0.8 * 0.2 / 25) / 2  # at the last K
    assert abs(standard_error(groups) - expected) < 1e-12 and standard_error({}) == 0.0


def test_model_pt_keeps_the_weight_and_an_older_file_loads_without_one():
    model = build_model(model_config(), SCHEMA_3, pretrained=False)
    model.logp_weight = 0.125
    assert model_from_bytes(model_bytes(model)).logp_weight == 0.125
    older = torch.load(io.BytesIO(model_bytes(model)), weights_only=True)
    del older["logp_weight"]  # a model.pt written before the fusion
    buf = io.BytesIO()
    torch.save(older, buf)
    assert model_from_bytes(buf.getvalue()).logp_weight is None
