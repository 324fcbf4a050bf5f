"""The probe baselines on hand-made features: the fit keeps the strength that is best on the validation images
(recomputed by refitting each strength alone), and ``probe`` / ``probe_attributes`` rank as their definitions say
(recomputed in plain loops), an image without trunk features ranked last."""

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from eval.attr_logp import FLOOR
from eval.data import EvalData
from eval.linear_probe import LinearProbe, ProbeUnavailable, fit_linear_probe
from eval.probe import ProbeAttributes, ProbeLogp, held_out_accuracy, probe_inputs, rejected_last
from eval.protocol import Manipulations
from fsnet.catalog.schema import Attribute, AttributeSchema
from fsnet.schema_match import SchemaMatch

STRENGTHS = [1e-4, 1.0, 10.0]


def separable(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) features, feature 0 positive exactly for the 30% of images of value 1; (n,) those values."""
    y = (np.arange(n) % 10 < 3).astype(np.int64)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    x[:, 0] = np.where(y == 1, 1.0, -1.0) + 0.1 * x[:, 0]
    return x, y


def test_the_fit_keeps_the_strength_best_on_the_validation_images():
    rng = np.random.default_rng(0)
    x, y = separable(60, rng)
    xv, yv = separable(30, rng)
    # "follows": validation values follow feature 0 as in the fit (weak regularisation separates them, the strongest
    # predicts the majority: 0.7); "majority": every validation value is 0 (only the strongest gets them all)
    labels = np.stack([y, y], axis=1)
    labels[::9, 0] = -1  # unknown: skipped (a class -1 would make the probe predict it)
    validation = np.stack([yv, np.zeros_like(yv)], axis=1)
    probe = fit_linear_probe(x, labels, xv, validation, ["follows", "majority"], [3, 2], STRENGTHS)

    for a in range(2):  # plain loop: each strength fitted alone, its validation accuracy; a tie keeps the stronger
        known = labels[:, a] >= 0
        scores = [
            (
                LogisticRegression(C=c, max_iter=1000).fit(x[known], labels[known, a]).predict(xv) == validation[:, a]
            ).mean()
            for c in STRENGTHS
        ]
        assert probe.strengths[a] == STRENGTHS[int(np.argmax(scores))]
        assert probe.validation_accuracy[a] == pytest.approx(max(scores))
    assert probe.strengths == [1.0, 1e-4]  # ties at 1.0 for "follows" keep 1 over 10
    assert probe.validation_accuracy == [1.0, 1.0]
    predicted = probe.predict(xv)
    np.testing.assert_array_equal(predicted[:, 0], yv)  # kept as fitted: its validation accuracy is what it scores
    np.testing.assert_array_equal(predicted[:, 1], 0)

    p = probe.probabilities(xv)  # (30, 3 + 2): value 2 of "follows" is in no fit image: probability 0
    np.testing.assert_allclose(p[:, :3].sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(p[:, 3:].sum(axis=1), 1, rtol=1e-5)
    assert (p[:, 2] == 0).all() and probe.fit_images == 60 and probe.validation_images == 30


def test_one_value_is_a_constant_and_no_label_is_one_line():
    rng = np.random.default_rng(1)
    x, y = separable(20, rng)
    one = np.stack([y, np.full(20, 2)], axis=1)  # "kind" has only value 2 in the fit images
    probe = fit_linear_probe(x, one, x[:4], one[:4], ["follows", "kind"], [2, 3], STRENGTHS)
    assert probe.strengths[1] is None and (probe.predict(x)[:, 1] == 2).all()
    none = np.stack([y, np.full(20, -1)], axis=1)
    with pytest.raises(ProbeUnavailable, match=r"^probe: no training image has a label for 'kind': nothing to fit"):
        fit_linear_probe(x, none, x[:4], none[:4], ["follows", "kind"], [2, 3], STRENGTHS)


def hand_made() -> tuple[EvalData, Manipulations]:
    """Two attributes, color (2 values, feature 0's sign) and size (3 values, feature 1's); 6 gallery images, the
    fifth without trunk features; 3 queries, the third without."""
    schema = AttributeSchema(
        attributes=[Attribute(name="color", values=["a", "b"]), Attribute(name="size", values=["s", "m", "l"])]
    )
    probe = LinearProbe(
        names=schema.names,
        mean=np.zeros(2, np.float32),
        scale=np.ones(2, np.float32),
        weights=[np.array([[-3.0, 0], [3.0, 0]], np.float32), np.array([[0, -3.0], [0, 0], [0, 3.0]], np.float32)],
        biases=[np.zeros(2, np.float32), np.zeros(3, np.float32)],
        strengths=[1.0, 1.0],
        validation_accuracy=[1.0, 1.0],
        fit_images=10,
        validation_images=2,
        seconds=0.0,
    )
    gallery = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [0.2, 0.1], [9.0, 9.0], [1.5, 2.0]], np.float32)
    gallery_found = np.array([True, True, True, True, False, True])
    queries = np.array([[-1.0, -1.0], [0.9, 1.1], [5.0, 5.0]], np.float32)
    query_found = np.array([True, True, False])
    inputs = probe_inputs(probe, query_found, queries[query_found], gallery_found, gallery[gallery_found], [2, 3])
    labels = np.array([[1, 2], [0, 2], [1, 0], [1, 1], [0, 0], [1, 2]])
    data = EvalData(
        query_ids=np.array(["q0", "q1", "q2"]),
        query_labels=np.array([[0, 0], [1, 2], [1, 1]]),
        query_reps=np.zeros((3, 2, 4), np.float32),
        query_predicted=np.zeros((3, 2), np.int64),
        query_probabilities=np.zeros((3, 5), np.float32),
        gallery_ids=np.array([f"g{n}" for n in range(6)]),
        gallery_labels=labels,
        gallery_global=np.zeros((6, 4), np.float32),
        gallery_predicted=np.zeros((6, 2), np.int64),
        gallery_probabilities=np.zeros((6, 5), np.float32),
        gallery_missing=[],
        queries_rejected=[],
        match=SchemaMatch.of(schema, schema, "model.pt", "catalog"),
        probe=inputs,
    )
    change = np.array([[1, -1], [-1, 0], [0, -1], [-1, 2]])
    query = np.array([0, 1, 1, 2])
    target = np.where(change >= 0, change, data.query_labels[query])
    return data, Manipulations(
        query=query, change=change, target=target, group=np.array([0, 1, 0, 1]), groups=["color", "size"]
    )


def test_probe_ranks_by_the_probes_log_probability_of_the_target_rejected_last():
    data, m = hand_made()
    p = data.probe
    assert p.query_predicted.tolist() == [[0, 0], [1, 2], [0, 0]]  # q2 has no features: the fit's mean, all zero logits
    assert p.gallery_predicted[4].tolist() == [-1, -1] and p.gallery_predicted[:4].tolist() == [
        [1, 2],
        [0, 2],
        [1, 0],
        [1, 2],
    ]
    top = ProbeLogp(data).topk(m, k=6)
    spans = [(0, 2), (2, 5)]  # each attribute's columns
    for row, q, change in zip(top, m.query, m.change):  # plain loop over the gallery images with features
        score = {}
        for n in np.flatnonzero(p.gallery_found):
            g, s = p.gallery_probabilities[n], 0.0
            for a, (lo, hi) in enumerate(spans):  # the new value, or the chance that query and image share one
                shared = sum(p.query_probabilities[q, v] * g[v] for v in range(lo, hi))
                s += math.log(max(g[lo + change[a]] if change[a] >= 0 else shared, FLOOR))
            score[n] = s
        assert row.tolist() == [*sorted(score, key=lambda n: (-round(score[n], 9), n)), 4]
    assert top[0, 0] == 2  # q0 predicted (a, s), color -> b: g2 (feature 0 positive, feature 1 negative)


def test_probe_attributes_counts_predicted_matches_then_trunk_distance_rejected_last():
    data, m = hand_made()
    p = data.probe
    top = ProbeAttributes(data).topk(m, k=6)
    held = np.flatnonzero(p.gallery_found)
    for row, q, target in zip(top, m.query, m.target):  # plain loop: matches first, then distance, then position
        missed = {n: int((p.gallery_predicted[n] != target).sum()) for n in held}
        dist = {n: float(((p.query_features[q] - p.gallery_features[n]) ** 2).sum()) for n in held}
        assert row.tolist() == [*sorted(held, key=lambda n: (missed[n], dist[n], n)), 4]
    # q1 (0.9, 1.1), size -> s: target (b, s) by its labels; g2 is predicted (b, s), then g0, g3, g5 (b, l) by distance
    assert top[1].tolist() == [2, 0, 5, 3, 1, 4]


def test_images_without_trunk_features():
    data, m = hand_made()
    p = data.probe
    np.testing.assert_array_equal(p.query_features[2], p.probe.mean)  # what the probe knows without the image
    assert (p.gallery_probabilities[4] == 0).all()
    # a rejected image is never before a found one, whatever k
    found = np.array([True, False, True, False, True])
    np.testing.assert_array_equal(rejected_last(np.array([[2, 0, 1]]), found, 5), [[4, 0, 2, 1, 3]])
    np.testing.assert_array_equal(rejected_last(np.array([[2, 0]]), found, 2), [[4, 0]])
    np.testing.assert_array_equal(rejected_last(np.array([[2, 0, 1]]), found, 4), [[4, 0, 2, 1]])
    # held-out accuracy: the images with features only, unknown labels not counted
    data.gallery_labels[3] = [-1, 1]
    accuracy = held_out_accuracy(data, p.query_predicted, p.gallery_predicted, p.query_found, p.gallery_found)
    # color: q0 0/0, q1 1/1, g0 1/1, g1 0/0, g2 1/1, g5 1/1 -> 6/6; size: q0 0/0, q1 2/2, g0 2/2, g1 2/2, g2 0/0,
    # g3 2/1 (miss), g5 2/2 -> 6/7
    assert accuracy == [1.0, pytest.approx(6 / 7)]
